"""The parallel transfer engine shared by every remote backend (s3, azure, gs).

One asyncio loop drives all requests; ``threads`` bounds how many are in flight (files and parts
together). Small files go in one request each; files above ``multipart_threshold`` go in parts
(S3 multipart upload, Azure blocks, GCS resumable session), and downloads of large objects are
ranged reads written in place.

- Retries: transient failures (``TransientError``) are retried with exponential backoff.
- Checksums: every upload is checked against the MD5 the server reports (S3 ETag, Azure
  Content-MD5, GCS md5Hash); downloads are checked against the same where the object has one.
- Resume: a multipart upload records its upload id / session in a journal under
  ``$OSMO_HOME/transfers``; run again, it asks the server which parts it already holds, checks
  them against the local file's MD5s and sends only the rest. A large download keeps
  ``NAME.osmo-partial`` and ``NAME.osmo-partial.json``; with ``resume`` it fetches only the
  missing ranges. Every ranged read is conditional on the object's ETag (generation on GCS): an
  object that changes mid-way fails the download loudly and the partial file is removed.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from ..settings import default_home
from .base import (
    ChecksumMismatchError,
    ObjectChangedError,
    Progress,
    StorageError,
    TransferOptions,
    TransferResult,
    TransientError,
)
from .url import StorageURL

T = TypeVar("T")

MiB = 1024 * 1024
MIN_PART = 8 * MiB
MAX_PARTS = 10_000
PARTIAL_SUFFIX = ".osmo-partial"


def part_size_for(size: int, requested: int | None = None) -> int:
    """The part size for a file of ``size`` bytes: ``requested`` or 8 MiB..., at most 10,000
    parts, a multiple of 1 MiB (and so of GCS's 256 KiB). Deterministic, so a download can
    recompute an S3 multipart ETag from ranges of the same size."""
    ps = max(requested or MIN_PART, 5 * MiB)
    while (size + ps - 1) // ps > MAX_PARTS:
        ps *= 2
    return ((ps + MiB - 1) // MiB) * MiB


@dataclass
class RemoteObject:
    """An object in a bucket: full key, size, version tag (ETag without quotes, or the GCS
    generation) and the content MD5 when the server reports one."""

    key: str
    size: int
    etag: str | None = None
    last_modified: datetime | None = None
    md5: bytes | None = None


def md5_from_etag(etag: str | None) -> bytes | None:
    """An S3-style single-part ETag is the hex MD5 of the content."""
    if etag and len(etag) == 32 and "-" not in etag:
        try:
            return bytes.fromhex(etag)
        except ValueError:
            return None
    return None


def multipart_etag_parts(etag: str | None) -> int:
    """N for an S3 multipart ETag ``<hex>-N``, else 0."""
    if etag and "-" in etag:
        head, _, n = etag.rpartition("-")
        if len(head) == 32 and n.isdigit():
            return int(n)
    return 0


class Backend(abc.ABC):
    """Primitive operations on one bucket / container (keys are full keys inside it)."""

    url: StorageURL
    sequential_parts: bool = False  # GCS resumable sessions take their chunks in order

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Called in the engine's loop before any request."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Called in the engine's loop after the last request."""

    def describe(self, key: str = "") -> str:
        return f"{self.url.root}/{key}" if key else self.url.root

    @abc.abstractmethod
    def listing(self, prefix: str, delimiter: bool = False) -> AsyncIterator[RemoteObject | str]:
        """Objects whose key starts with ``prefix`` in key order; with ``delimiter``, direct
        children only and sub-prefixes as ``str`` (ending in ``/``)."""

    @abc.abstractmethod
    async def head(self, key: str) -> RemoteObject | None: ...

    @abc.abstractmethod
    async def put(self, key: str, data: bytes, md5: bytes) -> None:
        """Create or replace ``key``; raise ``ChecksumMismatchError`` if the server's MD5 differs."""

    @abc.abstractmethod
    async def get(
        self, obj: RemoteObject, start: int = 0, end: int | None = None
    ) -> bytes | memoryview:
        """Bytes ``[start, end)`` of ``obj``, only if it still has ``obj.etag``
        (``ObjectChangedError`` otherwise)."""

    async def get_stream(
        self, obj: RemoteObject, start: int, end: int
    ) -> AsyncIterator[bytes | memoryview]:
        """Bytes ``[start, end)`` of ``obj`` as they arrive (same conditions as ``get``)."""
        yield await self.get(obj, start, end)

    @abc.abstractmethod
    async def delete(self, keys: list[str]) -> None: ...

    @abc.abstractmethod
    async def check_bucket(self) -> None:
        """Raise ``BucketNotFoundError`` / ``AccessDeniedError`` / ``MissingCredentialsError``."""

    # Multipart (parts are numbered from 1) -----------------------------------------------

    @abc.abstractmethod
    async def mp_begin(
        self, key: str, size: int, part_size: int, state: dict[str, Any] | None
    ) -> tuple[dict[str, Any], dict[int, str]]:
        """Start (``state`` None) or resume an upload. Returns the state to journal and the
        parts the server holds: number -> hex MD5 ("" when the server cannot say; then
        ``done_bytes`` semantics apply: the first parts are taken as done)."""

    @abc.abstractmethod
    async def mp_put(
        self, key: str, state: dict[str, Any], n: int, data: bytes, md5: bytes, size: int
    ) -> str:
        """Send part ``n``; returns its token for ``mp_finish`` (verifies its checksum)."""

    @abc.abstractmethod
    async def mp_finish(
        self,
        key: str,
        state: dict[str, Any],
        tokens: dict[int, str],
        part_md5s: dict[int, bytes],
        size: int,
        full_md5: bytes | None,
    ) -> None: ...

    @abc.abstractmethod
    async def mp_abort(self, key: str, state: dict[str, Any]) -> None: ...


class Engine:
    """Runs uploads and downloads for one backend with one set of options."""

    def __init__(self, backend: Backend, options: TransferOptions):
        self.b = backend
        self.o = options
        self.threads = max(1, options.threads)
        self.sem = asyncio.Semaphore(self.threads)
        self.pool = ThreadPoolExecutor(max_workers=min(self.threads, 16))
        self.result = TransferResult()
        self.files_total = 0
        self.bytes_total = 0
        self._bytes_done = 0
        self._last_progress = 0.0
        self.journal_dir = options.journal_dir or default_home() / "transfers"

    # helpers ------------------------------------------------------------------------------

    async def io(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def retry(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        delay = self.o.retry_backoff
        attempt = 0
        while True:
            try:
                return await fn()
            except TransientError as e:
                attempt += 1
                if attempt > self.o.retries:
                    raise StorageError(f"{what}: gave up after {attempt} attempts: {e}") from e
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _progress(self, nbytes: int, files: int = 0, force: bool = False) -> None:
        self._bytes_done += nbytes
        self.result.files += files
        cb = self.o.progress
        if cb is None:
            return
        now = time.monotonic()
        if force or now - self._last_progress >= 0.1:
            self._last_progress = now
            cb(Progress(self.result.files, self.files_total, self._bytes_done, self.bytes_total))

    def _event(self, kind: str, detail: str) -> None:
        if self.o.on_event is not None:
            self.o.on_event(kind, detail)

    async def gather(self, coros: list[Awaitable[None]]) -> None:
        """Run all; on the first failure cancel the rest and raise it."""
        tasks = [asyncio.ensure_future(c) for c in coros]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def run(self, coro: Awaitable[None]) -> TransferResult:
        start = time.monotonic()
        await self.b.open()
        try:
            await coro
        finally:
            await self.b.aclose()
            self.pool.shutdown(wait=False)
        self.result.seconds = time.monotonic() - start
        self._progress(0, force=True)
        return self.result

    # upload -------------------------------------------------------------------------------

    async def upload(self, items: list[tuple[Path, str, int]]) -> TransferResult:
        """Upload (local path, full key, size) items."""
        self.files_total = len(items)
        self.bytes_total = sum(s for _, _, s in items)
        jobs: list[Awaitable[None]] = []
        for path, key, size in items:
            if size > self.o.multipart_threshold:
                jobs.append(self._upload_large(path, key, size))
            else:
                jobs.append(self._upload_small(path, key))
        return await self.run(self.gather(jobs))

    async def _upload_small(self, path: Path, key: str) -> None:
        async with self.sem:
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError as e:
                raise StorageError(f"cannot read {path}: {e}") from e
            md5 = hashlib.md5(data, usedforsecurity=False).digest()
            await self.retry(
                f"upload of {path} to {self.b.describe(key)}", lambda: self.b.put(key, data, md5)
            )
        self.result.bytes += len(data)
        self.result.bytes_sent += len(data)
        self._progress(len(data), files=1)
        self._event("file", key)

    def _journal_path(self, key: str, path: Path) -> Path:
        ident = f"{self.b.describe(key)}|{path.resolve()}"
        return self.journal_dir / f"upload-{hashlib.sha256(ident.encode()).hexdigest()[:32]}.json"

    def _read_journal(self, jpath: Path) -> dict[str, Any] | None:
        try:
            data = json.loads(jpath.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _write_journal(self, jpath: Path, data: dict[str, Any]) -> None:
        jpath.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = jpath.with_name(f".{jpath.name}.{uuid.uuid4().hex[:8]}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, jpath)

    @staticmethod
    def _read_part(path: Path, offset: int, length: int) -> bytes:
        with open(path, "rb") as f:
            data = os.pread(f.fileno(), length, offset)
        if len(data) != length:
            raise StorageError(f"{path} changed size during the upload")
        return data

    async def _upload_large(self, path: Path, key: str, size: int) -> None:
        st = path.stat()
        part_size = part_size_for(size, self.o.part_size)
        nparts = (size + part_size - 1) // part_size
        jpath = self._journal_path(key, path)
        journal = self._read_journal(jpath)
        state: dict[str, Any] | None = None
        if journal is not None:
            same = (
                journal.get("size") == size
                and journal.get("mtime_ns") == st.st_mtime_ns
                and journal.get("part_size") == part_size
            )
            if same and isinstance(journal.get("state"), dict):
                state = journal["state"]
            else:
                old = journal.get("state")
                if isinstance(old, dict):
                    with contextlib.suppress(StorageError):
                        await self.b.mp_abort(key, old)
        what = f"upload of {path} to {self.b.describe(key)}"
        try:
            state, done = await self.retry(
                what, lambda: self.b.mp_begin(key, size, part_size, state)
            )
        except StorageError:
            if journal is None or state is None:
                raise
            # The recorded upload is gone (aborted, expired): start over.
            state, done = await self.retry(
                what, lambda: self.b.mp_begin(key, size, part_size, None)
            )
        journal_data: dict[str, Any] = {
            "url": self.b.describe(key),
            "path": str(path.resolve()),
            "size": size,
            "mtime_ns": st.st_mtime_ns,
            "part_size": part_size,
            "state": state,
        }
        self._write_journal(jpath, journal_data)
        tokens: dict[int, str] = {}
        md5s: dict[int, bytes] = {}
        full = hashlib.md5(usedforsecurity=False) if self.b.sequential_parts else None
        assert state is not None
        st_state: dict[str, Any] = state

        async def one(n: int) -> None:
            offset = (n - 1) * part_size
            length = min(part_size, size - offset)
            async with self.sem:
                data = await self.io(self._read_part, path, offset, length)
                md5 = await self.io(_md5, data)
                if full is not None:
                    full.update(data)
                md5s[n] = md5
                have = done.get(n)
                if have is not None and (have == "" or have == md5.hex()):
                    tokens[n] = have or md5.hex()
                    self.result.bytes += length
                    self._progress(length)
                    return
                tokens[n] = await self.retry(
                    f"{what} (part {n}/{nparts})",
                    lambda: self.b.mp_put(key, st_state, n, data, md5, size),
                )
            if self.b.sequential_parts:  # the session's offset lives in the journal
                journal_data["state"] = st_state
                await self.io(self._write_journal, jpath, journal_data)
            self.result.parts_sent += 1
            self.result.bytes_sent += length
            self.result.bytes += length
            self._progress(length)
            self._event("part", f"{key}#{n}")

        if self.b.sequential_parts:
            for n in range(1, nparts + 1):
                await one(n)
        else:
            await self.gather([one(n) for n in range(1, nparts + 1)])
        full_md5 = full.digest() if full is not None else None
        await self.retry(
            what, lambda: self.b.mp_finish(key, st_state, tokens, md5s, size, full_md5)
        )
        jpath.unlink(missing_ok=True)
        self._progress(0, files=1)
        self._event("file", key)

    # download -----------------------------------------------------------------------------

    async def _fetch_range(
        self, obj: RemoteObject, partial: Path, start: int, end: int, part: int
    ) -> list[bytes]:
        """Stream ``[start, end)`` of ``obj`` into ``partial``; the MD5 of each part in it."""
        sink = _RangeSink(partial, start, part)
        try:
            async for chunk in self.b.get_stream(obj, start, end):
                await self.io(sink.write, chunk)
                self._progress(len(chunk))
        finally:
            digests = sink.finish()
        if sink.pos != end:
            raise ObjectChangedError(
                f"download of {self.b.describe(obj.key)}: short read at {sink.pos}: the object "
                "changed; run it again"
            )
        return digests

    async def download(self, items: list[tuple[RemoteObject, Path]]) -> TransferResult:
        self.files_total = len(items)
        self.bytes_total = sum(o.size for o, _ in items)
        jobs: list[Awaitable[None]] = []
        for obj, dest in items:
            if self.o.resume and await self.io(_complete_already, obj, dest):
                self.result.skipped_existing += 1
                self.result.files += 1
                self.result.bytes += obj.size
                self._progress(obj.size)
                continue
            if obj.size > self.o.multipart_threshold:
                jobs.append(self._download_large(obj, dest))
            else:
                jobs.append(self._download_small(obj, dest))
        return await self.run(self.gather(jobs))

    async def _download_small(self, obj: RemoteObject, dest: Path) -> None:
        what = f"download of {self.b.describe(obj.key)}"
        async with self.sem:
            data = await self.retry(what, lambda: self.b.get(obj))
            if len(data) != obj.size:
                raise ObjectChangedError(
                    f"{what}: got {len(data)} bytes, the listing said {obj.size}: the object "
                    "changed during the download; run it again"
                )
            expect = obj.md5 or md5_from_etag(obj.etag)
            if expect is not None and hashlib.md5(data, usedforsecurity=False).digest() != expect:
                raise ChecksumMismatchError(f"{what}: MD5 of the received bytes does not match")
            if len(data) > MiB:
                await self.io(_write_atomic, dest, data)
            else:
                _write_atomic(dest, data)
        self.result.bytes += len(data)
        self.result.bytes_sent += len(data)
        self._progress(len(data), files=1)
        self._event("file", obj.key)

    async def _download_large(self, obj: RemoteObject, dest: Path) -> None:
        what = f"download of {self.b.describe(obj.key)}"
        nparts_etag = multipart_etag_parts(obj.etag)
        # ``part``: the upload's part size when it can be inferred (an S3 multipart ETag is the
        # MD5 of the parts' MD5s), so every part's MD5 can be taken from the ranges read.
        # ``span``: bytes per ranged request, a multiple of ``part``.
        part = part_size_for(obj.size, self.o.part_size)
        if nparts_etag and (obj.size + part - 1) // part != nparts_etag:
            part = part_size_for(obj.size, None)
        nparts = (obj.size + part - 1) // part
        per = max(1, self.o.range_size // part)
        span = part * per
        nspans = (obj.size + span - 1) // span
        partial = dest.with_name(dest.name + PARTIAL_SUFFIX)
        jpath = dest.with_name(dest.name + PARTIAL_SUFFIX + ".json")
        done: dict[int, str] = {}  # part number -> MD5 hex, for parts on disk
        if self.o.resume and partial.exists():
            j = self._read_journal(jpath)
            if (
                j
                and j.get("etag") == obj.etag
                and j.get("size") == obj.size
                and j.get("chunk") == part
            ):
                done = {int(k): str(v) for k, v in (j.get("done") or {}).items()}
        if not done:
            dest.parent.mkdir(parents=True, exist_ok=True)
            with open(partial, "wb") as f:
                f.truncate(obj.size)
        lock = asyncio.Lock()
        # A few streams per file keep its writes close together (and the server's reads).
        file_sem = asyncio.Semaphore(max(1, self.o.ranges_per_file))
        md5s: dict[int, bytes] = {int(k): bytes.fromhex(v) for k, v in done.items()}

        async def save_journal() -> None:
            async with lock:
                data = {
                    "etag": obj.etag,
                    "size": obj.size,
                    "chunk": part,
                    "done": {str(k): v.hex() for k, v in sorted(md5s.items())},
                }
                await self.io(self._write_journal, jpath, data)

        async def one(i: int) -> None:
            first = i * per + 1
            last = min(first + per - 1, nparts)
            start = (first - 1) * part
            end = min(last * part, obj.size)
            if all(n in done for n in range(first, last + 1)):
                self.result.bytes += end - start
                self._progress(end - start)
                return
            async with file_sem, self.sem:
                got = await self.retry(
                    f"{what} (range {start}-{end})",
                    lambda: self._fetch_range(obj, partial, start, end, part),
                )
                for k, digest in enumerate(got):
                    md5s[first + k] = digest
            await save_journal()
            self.result.parts_sent += last - first + 1
            self.result.bytes_sent += end - start
            self.result.bytes += end - start
            self._event("part", f"{obj.key}#{first}-{last}")

        try:
            await self.gather([one(i) for i in range(nspans)])
        except ObjectChangedError:
            partial.unlink(missing_ok=True)
            jpath.unlink(missing_ok=True)
            raise
        # Verify: an S3 multipart ETag is the MD5 of the parts' MD5s; a single-part ETag, a
        # GCS md5Hash or an Azure Content-MD5 is the MD5 of the whole content.
        if nparts_etag and nparts_etag == nparts and obj.etag:
            digest = hashlib.md5(
                b"".join(md5s[n] for n in range(1, nparts + 1)), usedforsecurity=False
            ).hexdigest()
            if f"{digest}-{nparts}" != obj.etag:
                partial.unlink(missing_ok=True)
                jpath.unlink(missing_ok=True)
                raise ChecksumMismatchError(f"{what}: the parts' MD5s do not match the ETag")
        else:
            expect = obj.md5 or md5_from_etag(obj.etag)
            if expect is not None and await self.io(_file_md5, partial) != expect:
                partial.unlink(missing_ok=True)
                jpath.unlink(missing_ok=True)
                raise ChecksumMismatchError(f"{what}: MD5 of the received bytes does not match")
        os.replace(partial, dest)
        jpath.unlink(missing_ok=True)
        self._progress(0, files=1)
        self._event("file", obj.key)


class _RangeSink:
    """Writes a streamed range at its offset and hashes it part by part."""

    def __init__(self, path: Path, start: int, part: int):
        self.fd = os.open(path, os.O_WRONLY)
        self.pos = start
        self.start = start
        self.part = part
        self.digests: list[bytes] = []
        self.h = hashlib.md5(usedforsecurity=False)
        self.in_part = 0

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        done = 0
        while done < len(view):
            done += os.pwrite(self.fd, view[done:], self.pos + done)
        off = 0
        while off < len(view):
            take = min(self.part - self.in_part, len(view) - off)
            self.h.update(view[off : off + take])
            self.in_part += take
            off += take
            if self.in_part == self.part:
                self.digests.append(self.h.digest())
                self.h = hashlib.md5(usedforsecurity=False)
                self.in_part = 0
        self.pos += len(view)

    def finish(self) -> list[bytes]:
        os.close(self.fd)
        if self.in_part:
            self.digests.append(self.h.digest())
        return self.digests


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


def _file_md5(path: Path) -> bytes:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while True:
            b = f.read(8 * MiB)
            if not b:
                break
            h.update(b)
    return h.digest()


def _pwrite_md5s(path: Path, offset: int, data: bytes | memoryview, part: int) -> list[bytes]:
    """Write ``data`` at ``offset``; the MD5 of each ``part``-sized slice of it."""
    view = memoryview(data)
    fd = os.open(path, os.O_WRONLY)
    try:
        pos = 0
        while pos < len(view):
            pos += os.pwrite(fd, view[pos:], offset + pos)
    finally:
        os.close(fd)
    return [
        hashlib.md5(view[i : i + part], usedforsecurity=False).digest()
        for i in range(0, len(view), part)
    ]


def _write_atomic(dest: Path, data: bytes | memoryview) -> None:
    tmp = dest.with_name(f".{dest.name}.osmo-tmp-{uuid.uuid4().hex[:12]}")
    try:
        try:
            f = open(tmp, "wb")  # noqa: SIM115
        except FileNotFoundError:
            dest.parent.mkdir(parents=True, exist_ok=True)
            f = open(tmp, "wb")  # noqa: SIM115
        with f:
            f.write(data)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _complete_already(obj: RemoteObject, dest: Path) -> bool:
    """For resume: ``dest`` exists with the object's size (and MD5, when the object has one and
    is small enough to check cheaply)."""
    try:
        if dest.stat().st_size != obj.size:
            return False
    except OSError:
        return False
    expect = obj.md5 or md5_from_etag(obj.etag)
    if expect is not None and obj.size <= 64 * MiB:
        return _file_md5(dest) == expect
    return True


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


__all__ = [
    "Backend",
    "Engine",
    "RemoteObject",
    "b64",
    "md5_from_etag",
    "part_size_for",
]
