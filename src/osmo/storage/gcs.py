"""``gs://bucket/path`` through the GCS JSON API (httpx).

Credential: ``access_key`` is an OAuth2 access token (``GOOGLE_OAUTH_ACCESS_TOKEN``), or no
token with ``override_url`` pointing at an emulator (``STORAGE_EMULATOR_HOST``). With HMAC keys
(``access_key_id`` + ``access_key``), ``gs://`` goes through the S3-interoperable API instead
(``s3.S3Backend``), as the original does. Large files use a resumable upload session (recorded
in the engine's journal, so a rerun continues where the server's committed offset ends); objects
are pinned by generation while downloading (``ifGenerationMatch``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from .base import (
    AccessDeniedError,
    BucketNotFoundError,
    ChecksumMismatchError,
    MissingCredentialsError,
    NotFoundError,
    ObjectChangedError,
    StorageError,
    TransientError,
)
from .credentials import Credentials
from .engine import Backend, RemoteObject
from .s3 import missing_credentials_message
from .url import StorageURL

GCS_URL = "https://storage.googleapis.com"


class GCSBackend(Backend):
    sequential_parts = True

    def __init__(self, url: StorageURL, creds: Credentials | None):
        if creds is None or not (creds.access_key or creds.override_url):
            raise MissingCredentialsError(missing_credentials_message(url))
        self.url = url
        self.creds = creds
        self.base = (creds.override_url or GCS_URL).rstrip("/")
        self._http: httpx.AsyncClient | None = None
        self._depth = 0

    async def open(self) -> None:
        self._depth += 1
        if self._http is None:
            headers = {"User-Agent": "osmo-storage"}
            if self.creds.access_key:
                headers["Authorization"] = f"Bearer {self.creds.access_key}"
            self._http = httpx.AsyncClient(
                headers=headers,
                timeout=httpx.Timeout(300.0, connect=10.0),
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
            )

    async def aclose(self) -> None:
        self._depth -= 1
        if self._depth <= 0 and self._http is not None:
            await self._http.aclose()
            self._http = None
            self._depth = 0

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            raise StorageError("GCS backend used outside of open()/aclose()")
        return self._http

    def _obj_url(self, key: str) -> str:
        return f"{self.base}/storage/v1/b/{self.url.bucket}/o/{quote(key, safe='')}"

    async def _req(self, what: str, key: str, method: str, url: str, **kw: Any) -> httpx.Response:
        try:
            r = await self.http.request(method, url, **kw)
        except httpx.TransportError as e:
            raise TransientError(f"{what} {self.describe(key)}: {type(e).__name__}: {e}") from e
        if r.status_code < 300 or r.status_code == 308:
            return r
        raise self._status_err(r, what, key)

    def _status_err(self, r: httpx.Response, what: str, key: str) -> StorageError:
        where = self.describe(key)
        try:
            msg = str(r.json().get("error", {}).get("message", ""))
        except (ValueError, AttributeError):
            msg = r.text[:200]
        s = r.status_code
        if s in (401, 403):
            return AccessDeniedError(f"access denied to {where} ({s}: {msg or 'forbidden'})")
        if s == 404:
            if "bucket" in msg.lower() or not key:
                return BucketNotFoundError(f"bucket {self.url.bucket!r} does not exist ({where})")
            return NotFoundError(f"{where} does not exist")
        if s == 412:
            return ObjectChangedError(
                f"{where} changed on the server during the {what} (new generation); the "
                "partial download was removed: run it again"
            )
        if s == 429 or s >= 500:
            return TransientError(f"{what} {where}: HTTP {s} {msg}")
        return StorageError(f"{what} {where} failed: HTTP {s} {msg}")

    @staticmethod
    def _meta(item: dict[str, Any]) -> RemoteObject:
        md5 = item.get("md5Hash")
        updated = item.get("updated")
        lm = None
        if isinstance(updated, str):
            try:
                lm = datetime.fromisoformat(updated.replace("Z", "+00:00"))
            except ValueError:
                lm = None
        return RemoteObject(
            key=item["name"],
            size=int(item.get("size", 0)),
            etag=str(item.get("generation") or "") or None,
            last_modified=lm,
            md5=base64.b64decode(md5) if md5 else None,
        )

    async def listing(
        self, prefix: str, delimiter: bool = False
    ) -> AsyncIterator[RemoteObject | str]:
        token: str | None = None
        while True:
            params: dict[str, str] = {"maxResults": "1000"}
            if prefix:
                params["prefix"] = prefix
            if delimiter:
                params["delimiter"] = "/"
            if token:
                params["pageToken"] = token
            r = await self._req(
                "list",
                "",  # a 404 here is the bucket's
                "GET",
                f"{self.base}/storage/v1/b/{self.url.bucket}/o",
                params=params,
            )
            data = r.json()
            items: list[RemoteObject | str] = list(data.get("prefixes", []))
            items += [self._meta(i) for i in data.get("items", [])]
            items.sort(key=lambda x: x if isinstance(x, str) else x.key)
            for it in items:
                yield it
            token = data.get("nextPageToken")
            if not token:
                return

    async def head(self, key: str) -> RemoteObject | None:
        try:
            r = await self._req("read", key, "GET", self._obj_url(key))
        except BucketNotFoundError:
            await self.check_bucket()
            return None
        except NotFoundError:
            return None
        return self._meta(r.json())

    def _check_md5(self, key: str, item: dict[str, Any], md5: bytes) -> None:
        got = item.get("md5Hash")
        if got and base64.b64decode(got) != md5:
            raise ChecksumMismatchError(
                f"upload to {self.describe(key)}: the server's MD5 differs from the sent bytes'"
            )

    async def put(self, key: str, data: bytes, md5: bytes) -> None:
        r = await self._req(
            "write",
            key,
            "POST",
            f"{self.base}/upload/storage/v1/b/{self.url.bucket}/o",
            params={"uploadType": "media", "name": key},
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        self._check_md5(key, r.json(), md5)

    async def get(self, obj: RemoteObject, start: int = 0, end: int | None = None) -> bytes:
        params = {"alt": "media"}
        if obj.etag:
            params["ifGenerationMatch"] = obj.etag
        headers = {}
        if start or end is not None:
            stop = obj.size if end is None else end
            headers["Range"] = f"bytes={start}-{stop - 1}"
        r = await self._req(
            "download", obj.key, "GET", self._obj_url(obj.key), params=params, headers=headers
        )
        gen = r.headers.get("x-goog-generation")
        if obj.etag and gen and gen != obj.etag:
            raise ObjectChangedError(
                f"{self.describe(obj.key)} changed on the server during the download (generation "
                f"{obj.etag} -> {gen}); the partial download was removed: run it again"
            )
        return r.content

    async def delete(self, keys: list[str]) -> None:
        sem = asyncio.Semaphore(16)

        async def one(k: str) -> None:
            async with sem:
                with contextlib.suppress(NotFoundError):
                    await self._req("delete", k, "DELETE", self._obj_url(k))

        await asyncio.gather(*(one(k) for k in keys))

    async def check_bucket(self) -> None:
        await self._req("read", "", "GET", f"{self.base}/storage/v1/b/{self.url.bucket}")

    # resumable upload session ------------------------------------------------------------

    async def mp_begin(
        self, key: str, size: int, part_size: int, state: dict[str, Any] | None
    ) -> tuple[dict[str, Any], dict[int, str]]:
        if state and state.get("session"):
            # The engine journals ``committed`` after every chunk the server acknowledged. (A
            # status query would tell too, but emulators finalize the object on one.)
            committed = int(state.get("committed") or 0)
            state = dict(state, committed=committed, part_size=part_size)
            nparts = (size + part_size - 1) // part_size
            done = {n: "" for n in range(1, min(committed // part_size, nparts) + 1)}
            if committed >= size:
                done = {n: "" for n in range(1, nparts + 1)}
            return state, done
        r = await self._req(
            "upload",
            key,
            "POST",
            f"{self.base}/upload/storage/v1/b/{self.url.bucket}/o",
            params={"uploadType": "resumable", "name": key},
            content=json.dumps({"name": key}).encode(),
            headers={"Content-Type": "application/json", "X-Upload-Content-Length": str(size)},
        )
        session = r.headers.get("Location")
        if not session:
            raise StorageError(f"upload to {self.describe(key)}: no resumable session returned")
        return {"session": session, "committed": 0, "part_size": part_size}, {}

    async def mp_put(
        self, key: str, state: dict[str, Any], n: int, data: bytes, md5: bytes, size: int
    ) -> str:
        offset = (n - 1) * int(state["part_size"])
        committed = int(state.get("committed") or 0)
        if committed > offset:  # the server kept part of this chunk already
            data = data[committed - offset :]
            offset = committed
        end = offset + len(data)
        r = await self._req(
            "upload",
            key,
            "PUT",
            state["session"],
            content=data,
            headers={"Content-Range": f"bytes {offset}-{end - 1}/{size}"},
        )
        if r.status_code in (200, 201):
            state["result"] = r.json()
            state["committed"] = size
        else:
            rng = r.headers.get("Range")
            state["committed"] = int(rng.split("-")[-1]) + 1 if rng else 0
            if state["committed"] < end:
                raise TransientError(
                    f"upload to {self.describe(key)}: the server kept {state['committed']} of "
                    f"{end} bytes"
                )
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
        result = state.pop("result", None)
        if result is None:
            # Completed before this run (interrupted after the last chunk): ask for the object.
            r = await self._req("upload", key, "GET", self._obj_url(key))
            result = r.json()
            if int(result.get("size", -1)) != size:
                raise StorageError(
                    f"upload to {self.describe(key)}: the session ended with "
                    f"{result.get('size')} of {size} bytes; run the upload again"
                )
        if full_md5 is not None:
            self._check_md5(key, result, full_md5)

    async def mp_abort(self, key: str, state: dict[str, Any]) -> None:
        if state.get("session"):
            with contextlib.suppress(StorageError):
                await self._req("abort upload", key, "DELETE", state["session"])
