"""One suite, every storage kind (see conftest.py): real servers for s3, azure and gs."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from storage_helpers import Remote, make_tree, read_tree

from osmo.storage import (
    AccessDeniedError,
    BucketNotFoundError,
    NotFoundError,
    ObjectChangedError,
    Progress,
    StorageError,
    TransferOptions,
    UnsafeKeyError,
    open_store,
)

MiB = 1024 * 1024
# Small multipart settings so that "large" files are quick: 5 MiB parts (and ranges) above
# 6 MiB.
MP = {"multipart_threshold": 6 * MiB, "part_size": 5 * MiB, "range_size": 5 * MiB}


def _blob(n: int, seed: int = 0) -> bytes:
    block = hashlib.sha256(f"{seed}".encode()).digest() * 2048  # 64 KiB, not compressible-ish
    return (block * (n // len(block) + 1))[:n]


FILES = {
    "a.txt": b"alpha",
    "empty.bin": b"",
    "sub/b.csv": b"x,y\n1,2\n",
    "sub/deeper/c.csv": b"3,4\n",
    "sub/deeper/d.json": b"{}",
    "name with spaces.txt": b"spaces",
}


def test_round_trip_upload_dir_download_dir_list(remote: Remote, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", FILES)
    store = remote.store()
    url = remote.url("run/out")
    res = store.upload_dir(src, url)
    assert (res.files, res.bytes) == (len(FILES), sum(map(len, FILES.values())))
    listed = {o.key: o.size for o in store.list(url)}
    assert listed == {k: len(v) for k, v in FILES.items()}
    assert [o.key for o in store.list(url)] == sorted(FILES)
    back = tmp_path / "back"
    res = store.download_dir(url, back)
    assert res.files == len(FILES)
    assert read_tree(back) == FILES
    assert not [p for p in back.rglob("*") if ".osmo-" in p.name]


def test_multipart_round_trip_and_checksums(remote: Remote, tmp_path: Path) -> None:
    big = _blob(13 * MiB + 123, seed=1)  # 3 parts of 5 MiB
    src = make_tree(tmp_path / "src", {"big.bin": big, "small.txt": b"s"})
    store = remote.store()
    res = store.upload([str(src) + "/"], remote.url("mp"), TransferOptions(**MP))
    parts = 0 if remote.kind == "file" else 3
    assert (res.files, res.parts_sent) == (2, parts)
    dl = tmp_path / "dl"
    res = store.download(remote.url("mp"), dl, TransferOptions(**MP))
    assert (res.files, res.parts_sent) == (2, parts)
    assert (dl / "big.bin").read_bytes() == big
    # ranges spanning several parts: each part's MD5 still checks against the ETag
    wide = {"multipart_threshold": 6 * MiB, "part_size": 5 * MiB, "range_size": 32 * MiB}
    res = store.download(remote.url("mp/big.bin"), tmp_path / "dl2", TransferOptions(**wide))
    assert res.files == 1 and (tmp_path / "dl2" / "big.bin").read_bytes() == big


def test_regex_filters_upload_download_list_delete(remote: Remote, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", FILES)
    store = remote.store()
    url = remote.url("rx")
    up = store.upload([str(src) + "/"], url, TransferOptions(regex=r"^sub/"))
    assert up.files == 3
    assert sorted(o.key for o in store.list(url)) == [
        "sub/b.csv",
        "sub/deeper/c.csv",
        "sub/deeper/d.json",
    ]
    dl = tmp_path / "dl"
    store.download(url, dl, TransferOptions(regex=r"\.csv$"))
    assert read_tree(dl) == {
        "sub/b.csv": FILES["sub/b.csv"],
        "sub/deeper/c.csv": FILES["sub/deeper/c.csv"],
    }
    assert [o.key for o in store.list_objects(url, regex=r"json")] == ["sub/deeper/d.json"]
    assert store.delete(url, regex=r"\.csv$") == 2
    assert [o.key for o in store.list(url)] == ["sub/deeper/d.json"]


def test_upload_paths_semantics_and_single_object_urls(remote: Remote, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "data", {"x/1.txt": b"1", "x/2.txt": b"22"})
    single = tmp_path / "single.txt"
    single.write_bytes(b"one")
    store = remote.store()
    url = remote.url("paths")
    # a folder goes below its name, a file below its name, "folder/" puts its contents directly
    store.upload([src / "x", single], url)
    store.upload([str(src / "x") + "/"], remote.url("paths/flat"))
    keys = sorted(o.key for o in store.list(url))
    assert keys == ["flat/1.txt", "flat/2.txt", "single.txt", "x/1.txt", "x/2.txt"]
    # a URL naming one object lists, downloads and reads that object
    assert [(o.key, o.size) for o in store.list(remote.url("paths/x/2.txt"))] == [("2.txt", 2)]
    dl = tmp_path / "one"
    assert store.download(remote.url("paths/single.txt"), dl).files == 1
    assert (dl / "single.txt").read_bytes() == b"one"
    # not recursive: direct children, folders with a trailing slash
    top = [(o.key, o.size) for o in store.list_objects(url, recursive=False)]
    assert top == [("flat/", 0), ("single.txt", 3), ("x/", 0)]


def test_read_write_stream(remote: Remote, tmp_path: Path) -> None:
    store = remote.store()
    url = remote.url("logs/task.log")
    data = b"".join(f"line {i}\n".encode() for i in range(5000))
    store.write_bytes(url, data)
    assert store.read_bytes(url) == data
    assert b"".join(store.stream(url, chunk_size=4096)) == data
    assert b"".join(store.stream(url, start=100, chunk_size=1000)) == data[100:]
    store.write_bytes(remote.url("logs/empty.log"), b"")
    assert store.read_bytes(remote.url("logs/empty.log")) == b""


def test_delete_everything_below_a_prefix(remote: Remote, tmp_path: Path) -> None:
    store = remote.store()
    store.upload_dir(make_tree(tmp_path / "s", FILES), remote.url("del"))
    store.write_bytes(remote.url("keep/k.txt"), b"k")
    assert store.delete(remote.url("del")) == len(FILES)
    with pytest.raises(NotFoundError):
        store.list(remote.url("del"))
    assert store.read_bytes(remote.url("keep/k.txt")) == b"k"


def test_missing_prefix_and_missing_bucket(remote: Remote, tmp_path: Path) -> None:
    store = remote.store()
    with pytest.raises(NotFoundError, match="does not exist"):
        store.download_dir(remote.url("nothing/here"), tmp_path / "dl")
    with pytest.raises(NotFoundError):
        store.read_bytes(remote.url("nothing.txt"))
    missing = open_store(remote.missing_bucket_url, remote.credentials)
    expected = NotFoundError if remote.kind == "file" else BucketNotFoundError
    with pytest.raises(expected):
        missing.download_dir(remote.missing_bucket_url, tmp_path / "dl2")
    if remote.kind != "file":
        with pytest.raises(BucketNotFoundError, match="does not exist"):
            missing.check(remote.missing_bucket_url, "READ")


def test_wrong_credentials_are_refused(remote: Remote, tmp_path: Path) -> None:
    if not remote.checks_signatures:
        pytest.skip(f"{remote.kind} does not check signatures")
    bad = remote.store(remote.bad_credentials)
    with pytest.raises(AccessDeniedError, match="access denied"):
        bad.check(remote.url("x"), "READ")
    with pytest.raises(AccessDeniedError):
        bad.upload_dir(make_tree(tmp_path / "s", {"a": b"a"}), remote.url("x"))
    with pytest.raises(AccessDeniedError):
        bad.list(remote.url())


def test_check_access_types(remote: Remote, tmp_path: Path) -> None:
    store = remote.store()
    for access in ("READ", "WRITE", "DELETE"):
        store.check(remote.url("chk"), access)  # type: ignore[arg-type]
    assert not list(store.list_objects(remote.url("chk")))  # the WRITE probe is gone
    if remote.reader_credentials is not None:
        reader = remote.store(remote.reader_credentials)
        reader.check(remote.url("chk"), "READ")
        with pytest.raises(AccessDeniedError):
            reader.check(remote.url("chk"), "WRITE")


def test_interrupted_upload_resumes_without_resending_parts(remote: Remote, tmp_path: Path) -> None:
    if remote.kind == "file":
        pytest.skip("file:// copies have no parts")
    big = _blob(26 * MiB, seed=2)  # 6 parts of 5 MiB
    src = make_tree(tmp_path / "src", {"big.bin": big})
    store = remote.store()
    url = remote.url("resume-up")
    sent: list[str] = []

    class Interrupted(Exception):
        pass

    def stop_after_two(kind: str, detail: str) -> None:
        if kind == "part":
            sent.append(detail)
            if len(sent) == 2:
                raise Interrupted

    opts = TransferOptions(**MP, threads=1, on_event=stop_after_two)
    with pytest.raises(Interrupted):
        store.upload([str(src) + "/"], url, opts)
    with pytest.raises(NotFoundError):
        store.list(url)  # nothing visible yet
    res = store.upload([str(src) + "/"], url, TransferOptions(**MP, threads=4))
    assert res.parts_sent == 6 - 2, res
    assert res.bytes_sent == len(big) - 2 * 5 * MiB
    dl = tmp_path / "dl"
    store.download(url, dl, TransferOptions(**MP))
    assert (dl / "big.bin").read_bytes() == big


def test_interrupted_download_resumes_missing_ranges_only(remote: Remote, tmp_path: Path) -> None:
    if remote.kind == "file":
        pytest.skip("file:// copies have no ranges")
    big = _blob(21 * MiB, seed=3)  # 5 ranges of 5 MiB
    store = remote.store()
    url = remote.url("resume-down")
    store.upload(
        [make_tree(tmp_path / "src", {"big.bin": big}) / "big.bin"], url, TransferOptions(**MP)
    )
    got: list[str] = []

    class Interrupted(Exception):
        pass

    def stop_after_three(kind: str, detail: str) -> None:
        if kind == "part":
            got.append(detail)
            if len(got) == 3:
                raise Interrupted

    dl = tmp_path / "dl"
    with pytest.raises(Interrupted):
        store.download(url, dl, TransferOptions(**MP, threads=1, on_event=stop_after_three))
    assert not (dl / "big.bin").exists()
    assert (dl / "big.bin.osmo-partial").exists()
    res = store.download(url, dl, TransferOptions(**MP, resume=True))
    assert res.parts_sent == 5 - 3, res
    assert (dl / "big.bin").read_bytes() == big
    assert not (dl / "big.bin.osmo-partial").exists()
    # resume again: everything is complete already, nothing is fetched
    res = store.download(url, dl, TransferOptions(**MP, resume=True))
    assert (res.skipped_existing, res.bytes_sent) == (1, 0)


def test_object_changed_mid_download_fails_loudly(remote: Remote, tmp_path: Path) -> None:
    if remote.kind == "file":
        pytest.skip("file:// reads are not ranged")
    big = _blob(16 * MiB, seed=4)  # 4 ranges
    store = remote.store()
    url = remote.url("changing")
    store.upload(
        [make_tree(tmp_path / "src", {"big.bin": big}) / "big.bin"], url, TransferOptions(**MP)
    )
    key = "changing/big.bin"
    changed: list[bool] = []

    def change_after_first(kind: str, detail: str) -> None:
        if kind == "part" and not changed:
            changed.append(True)
            remote.raw_put(key, _blob(16 * MiB, seed=5))

    dl = tmp_path / "dl"
    with pytest.raises(ObjectChangedError, match="changed"):
        store.download(url, dl, TransferOptions(**MP, threads=1, on_event=change_after_first))
    assert not (dl / "big.bin").exists()
    assert not (dl / "big.bin.osmo-partial").exists()


def test_path_traversal_in_object_keys_is_rejected(remote: Remote, tmp_path: Path) -> None:
    # A key that would escape the destination: the server may refuse it, or store it as it is;
    # then listing or downloading it fails, and nothing lands outside the download folder.
    if remote.kind == "file":
        pytest.skip("a folder cannot hold such a key")
    try:
        remote.raw_put("trav/../../evil.txt", b"evil")
    except Exception as e:  # a server that refuses such a key outright is fine too
        pytest.skip(f"{remote.kind} refuses the key: {e}")
    remote.raw_put("trav/ok.txt", b"ok")
    store = remote.store()
    dl = tmp_path / "a" / "b" / "dl"
    try:
        stored_as_is = any(".." in o.key.split("/") for o in store.list_objects(remote.url()))
    except UnsafeKeyError:
        stored_as_is = True
    if not stored_as_is:  # the server normalized the key: it names an object inside the bucket
        store.download(remote.url(), dl)
        assert not [p for p in tmp_path.rglob("evil.txt") if not p.is_relative_to(dl)]
        return
    with pytest.raises(UnsafeKeyError, match=r"\.\."):
        store.download(remote.url("trav"), dl)
    with pytest.raises(UnsafeKeyError):
        store.download(remote.url(), dl)
    assert not list(tmp_path.rglob("evil.txt"))
    assert not list(tmp_path.rglob("ok.txt"))  # refused before anything was written


def test_unsafe_keys_are_refused_before_any_io() -> None:
    from osmo.storage.base import check_key

    for bad in ["../x", "a/../../x", "/etc/passwd", "a//b", "a/./b", "a\\..\\b", ""]:
        with pytest.raises(UnsafeKeyError):
            check_key(bad)
    assert check_key("a/b..c/d") == "a/b..c/d"


def test_progress_reports_reach_the_totals(remote: Remote, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", {f"f{i}.bin": _blob(1000 + i) for i in range(40)})
    seen: list[Progress] = []
    store = remote.store()
    res = store.upload([str(src) + "/"], remote.url("prog"), TransferOptions(progress=seen.append))
    if remote.kind == "file":
        assert res.files == 40
        return
    assert seen
    last = seen[-1]
    assert (last.files_done, last.files_total) == (40, 40)
    assert last.bytes_done == last.bytes_total == sum(1000 + i for i in range(40))


def test_many_files_in_parallel_processes(remote: Remote, tmp_path: Path) -> None:
    if remote.kind in ("file", "gcs"):
        pytest.skip("one process is enough here")
    files = {f"d{i % 3}/f{i}.txt": f"{i}".encode() * (i + 1) for i in range(60)}
    src = make_tree(tmp_path / "src", files)
    store = remote.store()
    url = remote.url("procs")
    res = store.upload([str(src) + "/"], url, TransferOptions(processes=2, threads=8))
    assert res.files == 60
    dl = tmp_path / "dl"
    assert store.download(url, dl, TransferOptions(processes=2)).files == 60
    assert read_tree(dl) == files


def test_bad_urls(remote: Remote) -> None:
    scheme = remote.root.split(":", 1)[0]
    bad = {
        "s3": ["s3://", "s3://Bad_Bucket!/x", "s3://bkt/a/../b"],
        "gs": ["gs://", "gs://UPPER/x"],
        "azure": ["azure://acct", "azure://acct/x", "azure://BAD/container/x"],
        "file": ["file://host/x", "file://relative"],
    }[scheme]
    for url in bad:
        with pytest.raises(StorageError):
            open_store(url, remote.credentials).list(url)


def test_empty_files_and_many_levels(remote: Remote, tmp_path: Path) -> None:
    deep = "/".join(f"l{i}" for i in range(12)) + "/leaf.txt"
    files = {deep: b"deep", "z/empty": b""}
    store = remote.store()
    store.upload_dir(make_tree(tmp_path / "src", files), remote.url("deep"))
    dl = tmp_path / "dl"
    store.download_dir(remote.url("deep"), dl)
    assert read_tree(dl) == files
    assert os.path.getsize(dl / "z" / "empty") == 0
