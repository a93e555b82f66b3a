"""Unit tests (no server): credentials and their resolution, URL parsing, and the engine's
retries, checksums and resume bookkeeping against an in-memory backend."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from osmo.storage import (
    ChecksumMismatchError,
    Credentials,
    InvalidURLError,
    MissingCredentialsError,
    StorageError,
    TransferOptions,
    TransientError,
    delete_local_credential,
    load_local_credentials,
    open_store,
    parse_url,
    resolve_credentials,
    save_local_credential,
)
from osmo.storage.engine import Backend, Engine, RemoteObject, part_size_for
from osmo.storage.url import StorageURL

MiB = 1024 * 1024


# credentials ------------------------------------------------------------------------------


def test_local_credentials_round_trip_mode_600_and_other_keys_kept(tmp_path: Path) -> None:
    path = tmp_path / "home" / "client.yaml"
    path.parent.mkdir()
    path.write_text("url: http://server:8080\nuser: me\n")
    cred = Credentials(
        access_key_id="AK",
        access_key="SK",
        endpoint="s3://bkt",
        region="eu-west-1",
        override_url="http://127.0.0.1:9000/",
        addressing_style="path",
    )
    save_local_credential("one", cred, path=path)
    assert (path.stat().st_mode & 0o777) == 0o600
    loaded = load_local_credentials(path)
    assert loaded["one"] == cred.model_copy(update={"override_url": "http://127.0.0.1:9000"})
    assert "SK" not in repr(loaded["one"])
    text = path.read_text()
    assert "url: http://server:8080" in text and "user: me" in text
    assert delete_local_credential("one", path=path)
    assert not delete_local_credential("one", path=path)
    assert load_local_credentials(path) == {}


def test_saving_the_login_profile_keeps_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from osmo.client.profile import load_profile, save_profile

    monkeypatch.setenv("OSMO_HOME", str(tmp_path))
    monkeypatch.delenv("OSMO_URL", raising=False)
    save_local_credential("c", Credentials(access_key_id="a", access_key="b", endpoint="s3://bkt"))
    save_profile("http://127.0.0.1:1234", "me")
    assert load_local_credentials()["c"].access_key_id == "a"
    assert load_profile().url == "http://127.0.0.1:1234"


def test_resolution_longest_prefix_then_environment() -> None:
    local = {
        "bucket": Credentials(access_key_id="B", access_key="x", endpoint="s3://bkt"),
        "deeper": Credentials(access_key_id="D", access_key="x", endpoint="s3://bkt/team/a"),
        "az": Credentials(
            connection_string="AccountName=acct;AccountKey=a2V5", endpoint="azure://acct/cont"
        ),
    }
    pick = lambda url, env=None: resolve_credentials(url, local=local, env=env or {})  # noqa: E731
    assert pick("s3://bkt/x").access_key_id == "B"  # type: ignore[union-attr]
    assert pick("s3://bkt/team/a/b/c").access_key_id == "D"  # type: ignore[union-attr]
    assert pick("s3://bkt/team/ab").access_key_id == "B"  # type: ignore[union-attr]
    assert pick("s3://bkt2/x") is None
    assert pick("azure://acct/cont/p").azure_connection_string  # type: ignore[union-attr]
    env = {
        "AWS_ACCESS_KEY_ID": "E",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_REGION": "r1",
        "AWS_ENDPOINT_URL_S3": "http://h:1",
    }
    e = pick("s3://other/x", env)
    assert e is not None and (e.access_key_id, e.region, e.override_url) == (
        "E",
        "r1",
        "http://h:1",
    )
    g = pick("gs://gbk/x", {"STORAGE_EMULATOR_HOST": "127.0.0.1:4443"})
    assert g is not None and g.override_url == "http://127.0.0.1:4443"
    a = pick("azure://other/cont/x", {"AZURE_STORAGE_CONNECTION_STRING": "AccountName=other;"})
    assert a is not None and a.azure_connection_string == "AccountName=other;"


def test_invalid_credentials_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "client.yaml"
    path.write_text("credentials:\n  x:\n    access_key_id: a\n    bogus: 1\n")
    with pytest.raises(StorageError, match=r"credential 'x'.*bogus"):
        load_local_credentials(path)
    with pytest.raises(ValueError, match="override_url"):
        Credentials(override_url="ftp://x")
    with pytest.raises(StorageError, match="endpoint"):
        save_local_credential("y", Credentials(endpoint="s3://"), path=path)


def test_missing_credentials_message_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    for url, hint in [
        ("s3://bkt/x", "AWS_ACCESS_KEY_ID"),
        ("azure://acct/cont/x", "AZURE_STORAGE_CONNECTION_STRING"),
        ("gs://bkt/x", "STORAGE_EMULATOR_HOST"),
    ]:
        with pytest.raises(MissingCredentialsError) as info:
            open_store(url).list(url)
        assert "osmo credential set" in str(info.value) and hint in str(info.value)


def test_url_parsing() -> None:
    assert parse_url("s3://bkt/a/b/") == StorageURL("s3", "bkt", "a/b")
    assert parse_url("azure://acct/cont/p/q") == StorageURL("azure", "cont", "p/q", "acct")
    assert str(parse_url("gs://bkt")) == "gs://bkt"
    for bad in [
        "",
        "bkt/x",
        "s3://",
        "s3://a/../b",
        "s3://x?y=1",
        "azure://acct",
        "gs://A_B",
        "azure://acct/ab",
        "tos://x/y",
    ]:
        with pytest.raises(InvalidURLError):
            parse_url(bad)


def test_part_sizes() -> None:
    assert part_size_for(10 * MiB) == 8 * MiB
    assert part_size_for(10 * MiB, 5 * MiB) == 5 * MiB
    big = part_size_for(200 * 1024 * MiB)  # 200 GiB: at most 10,000 parts
    assert (200 * 1024 * MiB + big - 1) // big <= 10_000 and big % MiB == 0


# engine against an in-memory backend ------------------------------------------------------


class MemoryBackend(Backend):
    def __init__(self, fail_first: int = 0, corrupt: bool = False) -> None:
        self.url = StorageURL("s3", "mem", "")
        self.objects: dict[str, bytes] = {}
        self.uploads: dict[str, dict[int, bytes]] = {}
        self.fail_left = fail_first
        self.corrupt = corrupt
        self.calls = 0

    def _maybe_fail(self) -> None:
        self.calls += 1
        if self.fail_left > 0:
            self.fail_left -= 1
            raise TransientError("connection reset (simulated)")

    async def listing(
        self, prefix: str, delimiter: bool = False
    ) -> AsyncIterator[RemoteObject | str]:
        for k in sorted(self.objects):
            if k.startswith(prefix):
                d = self.objects[k]
                yield RemoteObject(k, len(d), hashlib.md5(d).hexdigest())

    async def head(self, key: str) -> RemoteObject | None:
        d = self.objects.get(key)
        return None if d is None else RemoteObject(key, len(d), hashlib.md5(d).hexdigest())

    async def put(self, key: str, data: bytes, md5: bytes) -> None:
        self._maybe_fail()
        stored = data + b"!" if self.corrupt else data
        if hashlib.md5(stored).digest() != md5:
            raise ChecksumMismatchError(f"upload to {key}: MD5 mismatch")
        self.objects[key] = stored

    async def get(self, obj: RemoteObject, start: int = 0, end: int | None = None) -> bytes:
        self._maybe_fail()
        data = self.objects[obj.key]
        return data[start : len(data) if end is None else end]

    async def delete(self, keys: list[str]) -> None:
        for k in keys:
            self.objects.pop(k, None)

    async def check_bucket(self) -> None:
        return None

    async def mp_begin(
        self, key: str, size: int, part_size: int, state: dict[str, Any] | None
    ) -> tuple[dict[str, Any], dict[int, str]]:
        if state:
            parts = self.uploads[state["id"]]
            return state, {n: hashlib.md5(d).hexdigest() for n, d in parts.items()}
        uid = f"u{len(self.uploads)}"
        self.uploads[uid] = {}
        return {"id": uid}, {}

    async def mp_put(
        self, key: str, state: dict[str, Any], n: int, data: bytes, md5: bytes, size: int
    ) -> str:
        self._maybe_fail()
        self.uploads[state["id"]][n] = data
        return md5.hex()

    async def mp_finish(
        self,
        key: str,
        state: dict[str, Any],
        tokens: dict[int, str],
        part_md5s: dict[int, bytes],
        size: int,
        full_md5: bytes | None,
    ) -> None:
        parts = self.uploads.pop(state["id"])
        self.objects[key] = b"".join(parts[n] for n in sorted(parts))

    async def mp_abort(self, key: str, state: dict[str, Any]) -> None:
        self.uploads.pop(state["id"], None)


def _upload(b: MemoryBackend, items: list[tuple[Path, str, int]], **kw: Any) -> Any:
    opts = TransferOptions(retry_backoff=0.001, **kw)
    return asyncio.run(Engine(b, opts).upload(items))


def test_transient_failures_are_retried_with_backoff(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"payload")
    b = MemoryBackend(fail_first=3)
    res = _upload(b, [(f, "k", 7)])
    assert b.objects["k"] == b"payload" and res.files == 1 and b.calls == 4
    b = MemoryBackend(fail_first=100)
    with pytest.raises(StorageError, match="gave up after 3 attempts"):
        _upload(b, [(f, "k", 7)], retries=2)


def test_checksum_mismatch_fails_the_upload(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"payload")
    with pytest.raises(ChecksumMismatchError):
        _upload(MemoryBackend(corrupt=True), [(f, "k", 7)])


def test_resumed_upload_skips_parts_and_a_changed_file_starts_over(tmp_path: Path) -> None:
    f = tmp_path / "big"
    data = bytes(range(256)) * (48 * 1024)  # 12 MiB: 3 parts of 5 MiB (last 2 MiB)
    f.write_bytes(data)
    b = MemoryBackend()
    sent: list[str] = []

    def interrupt(kind: str, detail: str) -> None:
        if kind == "part":
            sent.append(detail)
            if len(sent) == 2:
                raise KeyboardInterrupt

    kw: dict[str, Any] = {
        "multipart_threshold": 6 * MiB,
        "part_size": 5 * MiB,
        "journal_dir": tmp_path / "j",
    }
    with pytest.raises(KeyboardInterrupt):
        _upload(b, [(f, "k", len(data))], threads=1, on_event=interrupt, **kw)
    assert len(list((tmp_path / "j").iterdir())) == 1
    res = _upload(b, [(f, "k", len(data))], **kw)
    assert res.parts_sent == 1 and b.objects["k"] == data
    assert not list((tmp_path / "j").iterdir())
    # interrupted again, then the file changes: the old upload is dropped, all parts are sent
    sent.clear()
    with pytest.raises(KeyboardInterrupt):
        _upload(b, [(f, "k2", len(data))], threads=1, on_event=interrupt, **kw)
    f.write_bytes(data[::-1])
    res = _upload(b, [(f, "k2", len(data))], **kw)
    assert res.parts_sent == 3 and b.objects["k2"] == data[::-1]
