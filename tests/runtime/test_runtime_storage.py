from __future__ import annotations

import os
from pathlib import Path

import pytest

from osmo.storage import FileStore, StorageError, open_store


def _tree(root: Path) -> None:
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("A")
    (root / "b.bin").write_bytes(b"\x00\x01")
    (root / "sub" / "c.txt").write_text("C")


def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_upload_download_list_roundtrip(tmp_path: Path) -> None:
    src, store_dir, back = tmp_path / "src", tmp_path / "store" / "wf" / "t", tmp_path / "back"
    _tree(src)
    url = store_dir.as_uri() + "/"
    store = open_store(url)
    assert isinstance(store, FileStore)
    res = store.upload_dir(src, url)
    assert (res.files, res.bytes) == (3, 4)
    assert [(o.key, o.size) for o in store.list(url)] == [
        ("a.txt", 1),
        ("b.bin", 2),
        ("sub/c.txt", 1),
    ]
    store.download_dir(url, back)
    assert _files(back) == _files(src)
    assert not [p for p in store_dir.rglob("*") if ".osmo-tmp-" in p.name]


def test_regex_filters_relative_paths(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    _tree(src)
    res = open_store(src.as_uri()).download_dir(src.as_uri(), dst, regex=r"\.txt$")
    assert res.files == 2
    assert set(_files(dst)) == {"a.txt", "sub/c.txt"}
    up = tmp_path / "up"
    open_store(up.as_uri()).upload_dir(src, up.as_uri(), regex=r"^sub/")
    assert set(_files(up)) == {"sub/c.txt"}


def test_empty_upload_creates_prefix_so_download_succeeds(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    url = (tmp_path / "store").as_uri()
    open_store(url).upload_dir(tmp_path / "empty", url)
    assert open_store(url).download_dir(url, tmp_path / "dl").files == 0


def test_single_file_url_downloads_that_file(tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("x")
    res = open_store("file:///").download_dir((tmp_path / "f.txt").as_uri(), tmp_path / "d")
    assert res.files == 1 and (tmp_path / "d" / "f.txt").read_text() == "x"


def test_missing_source_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        open_store("file:///").download_dir((tmp_path / "nope").as_uri(), tmp_path / "d")
    with pytest.raises(StorageError, match="does not exist"):
        open_store("file:///").list((tmp_path / "nope").as_uri())


def test_upload_into_a_file_fails_cleanly(tmp_path: Path) -> None:
    _tree(tmp_path / "src")
    (tmp_path / "blocker").write_text("")
    with pytest.raises(StorageError, match="upload of"):
        open_store("file:///").upload_dir(tmp_path / "src", (tmp_path / "blocker" / "x").as_uri())


@pytest.mark.parametrize(
    "url",
    [
        "file:///a/../etc",
        "file://otherhost/a",
        "file:relative/path",
        "file:///a?x=1",
    ],
)
def test_bad_file_urls_rejected(url: str, tmp_path: Path) -> None:
    with pytest.raises(StorageError):
        open_store("file:///").download_dir(url, tmp_path)


def test_unknown_and_unimplemented_schemes(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="not supported yet"):
        open_store("tos://bucket/x")
    with pytest.raises(StorageError, match="unknown storage scheme 'ftp'"):
        open_store("ftp://host/x")
    with pytest.raises(StorageError, match="no scheme"):
        open_store(str(tmp_path))


def test_symlinks_out_of_the_tree_are_not_followed(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _tree(src)
    secret = tmp_path / "secret"
    secret.write_text("host secret")
    os.symlink(secret, src / "leak")
    os.symlink(src / "a.txt", src / "alias")  # inside the tree: copied as a file
    os.symlink(tmp_path, src / "dirlink")
    dst = tmp_path / "dst"
    res = open_store(dst.as_uri()).upload_dir(src, dst.as_uri())
    assert sorted(res.skipped) == ["dirlink", "leak"]
    assert (dst / "alias").read_text() == "A"
    assert not (dst / "leak").exists() and not (dst / "dirlink").exists()


def test_invalid_regex_is_a_storage_error(tmp_path: Path) -> None:
    _tree(tmp_path / "src")
    with pytest.raises(StorageError, match="invalid regex"):
        open_store("file:///").download_dir((tmp_path / "src").as_uri(), tmp_path / "d", "(")
