"""``RemoteStore``: the ``Store`` interface over a remote ``Backend`` and the transfer engine."""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import contextlib
import dataclasses
import multiprocessing
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .base import (
    AccessDeniedError,
    AccessType,
    NotFoundError,
    ObjectInfo,
    StorageError,
    Store,
    TransferOptions,
    TransferResult,
    check_key,
    compile_regex,
)
from .credentials import Credentials
from .engine import Backend, Engine, RemoteObject
from .file import walk_tree
from .url import StorageURL, parse_url

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from synchronous code, also when this thread already runs an
    event loop (then in a helper thread with its own loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as e:
            box["error"] = e

    t = threading.Thread(target=target, name="osmo-storage")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def make_backend(url: StorageURL, creds: Credentials | None, threads: int) -> Backend:
    if url.scheme == "s3" or (url.scheme == "gs" and creds is not None and creds.access_key_id):
        from .s3 import S3Backend

        return S3Backend(url, creds, threads)
    if url.scheme == "azure":
        from .azure import AzureBackend

        return AzureBackend(url, creds, threads)
    if url.scheme == "gs":
        from .gcs import GCSBackend

        return GCSBackend(url, creds)
    raise StorageError(f"no backend for {url.scheme}://")


def _child(
    kind: str,
    root: str,
    creds_json: str | None,
    options: TransferOptions,
    items: builtins.list[Any],
) -> TransferResult:
    """A worker process of a ``processes > 1`` transfer: its own backend, loop and engine."""
    creds = Credentials.model_validate_json(creds_json) if creds_json else None
    url = parse_url(root)
    backend = make_backend(url, creds, options.threads)
    engine = Engine(backend, options)
    if kind == "upload":
        return asyncio.run(engine.upload(items))
    return asyncio.run(engine.download(items))


class RemoteStore(Store):
    """``s3://``, ``gs://`` and ``azure://`` URLs with one credential."""

    def __init__(self, scheme: str, credentials: Credentials | None, threads: int = 64):
        self.scheme = scheme
        self.credentials = credentials
        self.threads = threads
        self._backends: dict[str, Backend] = {}

    def backend(self, url: StorageURL, threads: int | None = None) -> Backend:
        if url.scheme != self.scheme:
            raise StorageError(f"{url} is not a {self.scheme}:// URL")
        root = url.root
        if root not in self._backends:
            self._backends[root] = make_backend(url, self.credentials, threads or self.threads)
        return self._backends[root]

    def _parse(self, url: str) -> tuple[StorageURL, Backend]:
        u = parse_url(url)
        return u, self.backend(u)

    # listing ------------------------------------------------------------------------------

    async def _objects(self, b: Backend, u: StorageURL) -> builtins.list[tuple[str, RemoteObject]]:
        """(relative key, object) below ``u``; the one object ``u`` names if nothing is below."""
        out: builtins.list[tuple[str, RemoteObject]] = []
        prefix = u.prefix + "/" if u.prefix else ""
        async for o in b.listing(prefix):
            assert isinstance(o, RemoteObject)
            if not o.key.startswith(prefix):
                continue
            out.append((o.key[len(prefix) :], o))
        if not out and u.prefix:
            obj = await b.head(u.prefix)
            if obj is not None:
                out.append((u.prefix.rsplit("/", 1)[-1], obj))
        out.sort(key=lambda x: x[0])
        return out

    def list_objects(
        self, url: str, *, recursive: bool = True, regex: str | None = None
    ) -> Iterator[ObjectInfo]:
        u, b = self._parse(url)
        pattern = compile_regex(regex)

        async def collect() -> builtins.list[ObjectInfo]:
            await b.open()
            try:
                if recursive:
                    objs = await self._objects(b, u)
                    return [
                        ObjectInfo(rel, o.size, o.etag, o.last_modified)
                        for rel, o in objs
                        if pattern is None or pattern.search(rel)
                    ]
                prefix = u.prefix + "/" if u.prefix else ""
                infos: builtins.list[ObjectInfo] = []
                async for o in b.listing(prefix, delimiter=True):
                    if isinstance(o, str):
                        rel = o[len(prefix) :]
                        info = ObjectInfo(rel, 0)
                    else:
                        info = ObjectInfo(o.key[len(prefix) :], o.size, o.etag, o.last_modified)
                    if pattern is None or pattern.search(info.key):
                        infos.append(info)
                infos.sort(key=lambda i: i.key)
                if not infos and u.prefix and pattern is None:
                    obj = await b.head(u.prefix)
                    if obj is not None:
                        infos.append(ObjectInfo(u.prefix.rsplit("/", 1)[-1], obj.size, obj.etag))
                return infos
            finally:
                await b.aclose()

        yield from run_sync(collect())

    def list(self, url: str) -> builtins.list[ObjectInfo]:
        infos = builtins.list(self.list_objects(url))
        if not infos:
            run_sync(self._check_bucket(url))
            raise NotFoundError(f"{url} does not exist (no objects below it)")
        return infos

    async def _check_bucket(self, url: str) -> None:
        _, b = self._parse(url)
        await b.open()
        try:
            await b.check_bucket()
        finally:
            await b.aclose()

    # transfers ----------------------------------------------------------------------------

    def _run_engine(
        self,
        u: StorageURL,
        options: TransferOptions,
        kind: str,
        items: builtins.list[Any],
    ) -> TransferResult:
        if options.processes > 1 and len(items) > 1:
            return self._run_processes(u, options, kind, items)
        engine = Engine(self.backend(u, options.threads), options)
        if kind == "upload":
            return run_sync(engine.upload(items))
        return run_sync(engine.download(items))

    def _run_processes(
        self, u: StorageURL, options: TransferOptions, kind: str, items: builtins.list[Any]
    ) -> TransferResult:
        n = min(options.processes, len(items))
        size_of: Callable[[Any], int] = (
            (lambda it: it[2]) if kind == "upload" else (lambda it: it[0].size)
        )
        shards: builtins.list[builtins.list[Any]] = [[] for _ in range(n)]
        loads = [0] * n
        for it in sorted(items, key=size_of, reverse=True):
            i = loads.index(min(loads))
            shards[i].append(it)
            loads[i] += size_of(it) + 4096
        child_opts = dataclasses.replace(options, progress=None, on_event=None, processes=1)
        creds_json = self.credentials.model_dump_json() if self.credentials else None
        total = TransferResult()
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(n, mp_context=ctx) as ex:
            futs = [ex.submit(_child, kind, u.root, creds_json, child_opts, s) for s in shards]
            done_files = done_bytes = 0
            for f in concurrent.futures.as_completed(futs):
                r = f.result()
                total.files += r.files
                total.bytes += r.bytes
                total.bytes_sent += r.bytes_sent
                total.parts_sent += r.parts_sent
                total.skipped_existing += r.skipped_existing
                total.seconds = max(total.seconds, r.seconds)
                done_files += r.files
                done_bytes += r.bytes
                if options.progress is not None:
                    from .base import Progress

                    options.progress(
                        Progress(done_files, len(items), done_bytes, sum(map(size_of, items)))
                    )
        return total

    def _upload_items(
        self, sources: Sequence[tuple[Path, str]], u: StorageURL, regex: str | None
    ) -> tuple[builtins.list[tuple[Path, str, int]], builtins.list[str]]:
        """(local dir or file, key prefix relative to ``u``) -> upload items."""
        pattern = compile_regex(regex)
        items: builtins.list[tuple[Path, str, int]] = []
        skipped: builtins.list[str] = []
        for src, rel_prefix in sources:
            if src.is_dir():
                files, skip = walk_tree(src)
                skipped += skip
                pairs = [(rel_prefix + "/" + k if rel_prefix else k, p) for k, p in files]
            elif src.is_file():
                pairs = [(rel_prefix, src)]
            else:
                raise StorageError(f"upload source {src} does not exist")
            for rel, path in pairs:
                if pattern is not None and not pattern.search(rel):
                    continue
                try:
                    size = path.stat().st_size
                except OSError as e:
                    raise StorageError(f"cannot read {path}: {e}") from e
                items.append((path, u.key(check_key(rel)), size))
        return items, skipped

    def upload_dir(
        self, local_dir: str | Path, url: str, regex: str | None = None
    ) -> TransferResult:
        src = Path(local_dir)
        if not src.is_dir():
            raise StorageError(f"upload source {src} is not a directory")
        return self.upload([str(src) + "/"], url, TransferOptions(regex=regex))

    def upload(
        self, paths: Sequence[str | Path], url: str, options: TransferOptions | None = None
    ) -> TransferResult:
        options = options or TransferOptions(threads=self.threads)
        u = parse_url(url)
        sources: builtins.list[tuple[Path, str]] = []
        for raw in paths:
            p = Path(raw)
            if not p.exists():
                raise StorageError(f"upload source {raw} does not exist")
            if p.is_dir() and str(raw).endswith("/"):
                sources.append((p, ""))
            else:
                name = p.resolve().name
                sources.append((p, name))
        items, skipped = self._upload_items(sources, u, options.regex)
        result = self._run_engine(u, options, "upload", items)
        result.skipped = skipped + result.skipped
        return result

    def download_dir(
        self, url: str, local_dir: str | Path, regex: str | None = None
    ) -> TransferResult:
        return self.download(url, local_dir, TransferOptions(regex=regex, threads=self.threads))

    def download(
        self, url: str, local_dir: str | Path, options: TransferOptions | None = None
    ) -> TransferResult:
        options = options or TransferOptions(threads=self.threads)
        u, b = self._parse(url)
        pattern = compile_regex(options.regex)
        dest = Path(local_dir)

        async def plan() -> builtins.list[tuple[str, RemoteObject]]:
            await b.open()
            try:
                objs = await self._objects(b, u)
                if not objs:
                    await b.check_bucket()
            finally:
                await b.aclose()
            return objs

        objs = run_sync(plan())
        if not objs:
            raise NotFoundError(f"download source {url} does not exist (no objects below it)")
        items: builtins.list[tuple[RemoteObject, Path]] = []
        for rel, obj in objs:
            check_key(rel)  # every key first: nothing is written if one would escape
            if pattern is not None and not pattern.search(rel):
                continue
            items.append((obj, dest.joinpath(*rel.split("/"))))
        dest.mkdir(parents=True, exist_ok=True)
        return self._run_engine(u, options, "download", items)

    # other operations ---------------------------------------------------------------------

    def delete(self, url: str, regex: str | None = None) -> int:
        u, b = self._parse(url)
        pattern = compile_regex(regex)

        async def go() -> int:
            await b.open()
            try:
                objs = await self._objects(b, u)
                keys = [o.key for rel, o in objs if pattern is None or pattern.search(rel)]
                for i in range(0, len(keys), 1000):
                    await b.delete(keys[i : i + 1000])
                if not objs:
                    await b.check_bucket()
                return len(keys)
            finally:
                await b.aclose()

        return run_sync(go())

    def check(self, url: str, access: AccessType = "READ") -> None:
        u, b = self._parse(url)
        probe = u.key(f".osmo-check-{uuid.uuid4().hex}")

        async def go() -> None:
            await b.open()
            try:
                await b.check_bucket()
                if access == "READ":
                    async for _ in b.listing(u.prefix + "/" if u.prefix else ""):
                        break
                elif access == "WRITE":
                    await b.put(probe, b"", bytes.fromhex("d41d8cd98f00b204e9800998ecf8427e"))
                    with contextlib.suppress(AccessDeniedError):
                        await b.delete([probe])
                elif access == "DELETE":
                    await b.delete([probe])
                else:
                    raise StorageError(f"unknown access type {access!r}: READ, WRITE or DELETE")
            finally:
                await b.aclose()

        run_sync(go())

    async def _head(self, b: Backend, u: StorageURL) -> RemoteObject:
        if not u.prefix:
            raise StorageError(f"{u} names a bucket, not an object")
        obj = await b.head(u.prefix)
        if obj is None:
            await b.check_bucket()
            raise NotFoundError(f"{u} does not exist")
        return obj

    def read_bytes(self, url: str) -> bytes:
        u, b = self._parse(url)

        async def go() -> bytes:
            await b.open()
            try:
                obj = await self._head(b, u)
                return bytes(await b.get(obj)) if obj.size else b""
            finally:
                await b.aclose()

        return run_sync(go())

    def write_bytes(self, url: str, data: bytes) -> None:
        import hashlib

        u, b = self._parse(url)
        if not u.prefix:
            raise StorageError(f"{u} names a bucket, not an object")

        async def go() -> None:
            await b.open()
            try:
                await b.put(u.prefix, data, hashlib.md5(data, usedforsecurity=False).digest())
            finally:
                await b.aclose()

        run_sync(go())

    def stream(self, url: str, start: int = 0, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        u, b = self._parse(url)

        async def head() -> RemoteObject:
            await b.open()
            try:
                return await self._head(b, u)
            finally:
                await b.aclose()

        obj = run_sync(head())
        pos = start
        while pos < obj.size:
            end = min(pos + chunk_size, obj.size)

            async def chunk(s: int = pos, e: int = end) -> bytes:
                await b.open()
                try:
                    return bytes(await b.get(obj, s, e))
                finally:
                    await b.aclose()

            yield run_sync(chunk())
            pos = end

    def close(self) -> None:
        self._backends.clear()
