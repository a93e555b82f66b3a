"""``s3://`` (AWS and any S3-compatible endpoint) and ``gs://`` through GCS's S3-interoperable
XML API with HMAC keys.

Object requests go through obstore (Rust ``object_store``: many requests in flight on one
connection pool, little Python per request). Multipart uploads go through boto3, which exposes
ListParts: what lets an interrupted upload resume without re-sending the parts the server has.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from .base import (
    AccessDeniedError,
    BucketNotFoundError,
    ChecksumMismatchError,
    MissingCredentialsError,
    NotFoundError,
    ObjectChangedError,
    StorageError,
    TransientError,
    UnsafeKeyError,
)
from .credentials import DEFAULT_REGIONS, Credentials
from .engine import Backend, RemoteObject, b64, md5_from_etag
from .url import StorageURL

GCS_INTEROP_URL = "https://storage.googleapis.com"


def _strip(etag: str | None) -> str | None:
    return etag.strip('"') if etag else etag


def missing_credentials_message(url: StorageURL) -> str:
    env = {
        "s3": "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        "gs": "STORAGE_EMULATOR_HOST or GOOGLE_OAUTH_ACCESS_TOKEN",
        "azure": "AZURE_STORAGE_CONNECTION_STRING",
    }[url.scheme]
    return (
        f"no credentials for {url.root}: run `osmo credential set NAME --type DATA --payload "
        f"access_key_id=... access_key=... endpoint={url.root}`, or set {env}"
    )


class S3Backend(Backend):
    def __init__(self, url: StorageURL, creds: Credentials | None, threads: int = 64):
        if creds is None or not ((creds.access_key_id and creds.access_key) or creds.default_chain):
            raise MissingCredentialsError(missing_credentials_message(url))
        self.url = url
        self.creds = creds
        self.threads = threads
        self.interop = url.scheme == "gs"
        self.endpoint = creds.override_url or (GCS_INTEROP_URL if self.interop else None)
        self.region = creds.region or DEFAULT_REGIONS[url.scheme]
        style = creds.addressing_style
        if style == "auto":
            style = "path" if self.endpoint else "virtual"
        self.style = style
        self._store: Any = None
        self._boto: Any = None
        self._lock = threading.Lock()

    # clients ------------------------------------------------------------------------------

    @property
    def store(self) -> Any:
        if self._store is None:
            from obstore.store import S3Store

            config: dict[str, Any] = {
                "region": self.region,
                "virtual_hosted_style_request": self.style == "virtual",
            }
            if self.endpoint:
                config["endpoint"] = self.endpoint
            if self.creds.access_key_id and self.creds.access_key:
                config["access_key_id"] = self.creds.access_key_id
                config["secret_access_key"] = self.creds.access_key
                if self.creds.session_token:
                    config["token"] = self.creds.session_token
            self._store = S3Store(
                self.url.bucket,
                config=config,  # type: ignore[arg-type]
                client_options={
                    "allow_http": bool(self.endpoint and self.endpoint.startswith("http://")),
                    "pool_max_idle_per_host": str(max(self.threads, 8)),
                    "connect_timeout": "10s",
                    "timeout": "300s",
                },
                retry_config={"max_retries": 2, "retry_timeout": timedelta(seconds=60)},
            )
        return self._store

    @property
    def boto(self) -> Any:
        with self._lock:
            if self._boto is None:
                import boto3  # type: ignore[import-untyped]
                from botocore.config import Config  # type: ignore[import-untyped]

                cfg = Config(
                    region_name=self.region,
                    signature_version="s3v4",
                    retries={"max_attempts": 3, "mode": "standard"},
                    max_pool_connections=max(self.threads, 10),
                    connect_timeout=10,
                    read_timeout=300,
                    request_checksum_calculation="when_required",
                    # Parts carry Content-MD5 (checked by the server): no SHA-256 of the body.
                    s3={"addressing_style": self.style, "payload_signing_enabled": False},
                    response_checksum_validation="when_required",
                )
                kwargs: dict[str, Any] = {"config": cfg}
                if self.endpoint:
                    kwargs["endpoint_url"] = self.endpoint
                if self.creds.access_key_id and self.creds.access_key:
                    kwargs["aws_access_key_id"] = self.creds.access_key_id
                    kwargs["aws_secret_access_key"] = self.creds.access_key
                    kwargs["aws_session_token"] = self.creds.session_token
                self._boto = boto3.session.Session().client("s3", **kwargs)
            return self._boto

    # errors -------------------------------------------------------------------------------

    def _err(self, e: BaseException, what: str, key: str = "") -> StorageError:
        """Map an obstore / botocore exception to a StorageError subclass."""
        if isinstance(e, StorageError):
            return e
        where = self.describe(key)
        text = str(e)
        code = ""
        status = 0
        resp = getattr(e, "response", None)
        if isinstance(resp, dict):
            code = str(resp.get("Error", {}).get("Code", ""))
            status = int(resp.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        name = type(e).__name__
        blob = f"{code} {text}"
        if name == "InvalidPathError":
            return UnsafeKeyError(
                f"{where}: the bucket holds an object key that is not a safe relative path "
                f"(e.g. with '..' segments), refused: {text.splitlines()[0][:300]}"
            )
        if "NoSuchBucket" in blob or "bucket does not exist" in blob.lower():
            return BucketNotFoundError(f"bucket {self.url.bucket!r} does not exist ({where})")
        if "NoSuchUpload" in blob:
            return StorageError(f"{what} {where}: the multipart upload no longer exists")
        if (
            name in ("PreconditionError", "NotModifiedError")
            or code in ("PreconditionFailed", "412")
            or status == 412
        ):
            return ObjectChangedError(
                f"{where} changed on the server during the {what} (its ETag is no longer the "
                "one listed); the partial download was removed: run it again"
            )
        if (
            "SignatureDoesNotMatch" in blob
            or "InvalidAccessKeyId" in blob
            or name in ("UnauthenticatedError",)
        ):
            return AccessDeniedError(
                f"access denied to {where}: the server rejected the credential "
                f"(access key id {self.creds.access_key_id!r}: wrong key or secret)"
            )
        if (
            name == "PermissionDeniedError"
            or "AccessDenied" in blob
            or status == 403
            or "403 Forbidden" in text
        ):
            return AccessDeniedError(
                f"access denied to {where}: the credential "
                f"({self.creds.access_key_id!r}) may not {what} here"
            )
        if (
            isinstance(e, FileNotFoundError)
            or name == "NotFoundError"
            or code in ("NoSuchKey", "404", "NotFound")
            or status == 404
        ):
            return NotFoundError(f"{where} does not exist")
        if name in ("EndpointConnectionError", "ConnectionClosedError", "ReadTimeoutError"):
            return TransientError(f"{what} {where}: {text}")
        if status >= 500 or code in ("SlowDown", "InternalError", "ServiceUnavailable"):
            return TransientError(f"{what} {where}: {code or status}: {text[:300]}")
        if name == "GenericError" and any(
            s in text
            for s in (
                "500 Internal",
                "502 Bad",
                "503 Service",
                "504 Gateway",
                "error sending request",
                "connection",
                "timed out",
            )
        ):
            return TransientError(f"{what} {where}: {text.splitlines()[0][:300]}")
        first = text.splitlines()[0] if text else name
        return StorageError(f"{what} {where} failed: {first[:500]}")

    # objects ------------------------------------------------------------------------------

    async def listing(
        self, prefix: str, delimiter: bool = False
    ) -> AsyncIterator[RemoteObject | str]:
        import obstore

        try:
            if delimiter:
                res = await obstore.list_with_delimiter_async(self.store, prefix or None)
                items: list[RemoteObject | str] = [
                    p.rstrip("/") + "/" for p in res["common_prefixes"]
                ]
                items += [self._meta(m) for m in res["objects"]]
                items.sort(key=lambda x: x if isinstance(x, str) else x.key)
                for it in items:
                    yield it
                return
            stream = obstore.list(self.store, prefix or None, chunk_size=1000)
            async for batch in stream:
                for m in batch:
                    yield self._meta(m)
        except Exception as e:
            raise self._err(e, "list", prefix) from e

    @staticmethod
    def _meta(m: Any) -> RemoteObject:
        return RemoteObject(
            key=m["path"],
            size=m["size"],
            etag=_strip(m.get("e_tag")),
            last_modified=m.get("last_modified"),
        )

    async def head(self, key: str) -> RemoteObject | None:
        import obstore

        try:
            return self._meta(await obstore.head_async(self.store, key))
        except Exception as e:
            err = self._err(e, "read", key)
            if type(err) is NotFoundError:
                return None
            raise err from e

    async def put(self, key: str, data: bytes, md5: bytes) -> None:
        import obstore

        try:
            res = await obstore.put_async(self.store, key, data, use_multipart=False)
        except Exception as e:
            raise self._err(e, "write", key) from e
        got = md5_from_etag(_strip(res.get("e_tag")))
        if got is not None and got != md5:
            raise ChecksumMismatchError(
                f"upload to {self.describe(key)}: the server's MD5 {got.hex()} differs from the "
                f"sent bytes' {md5.hex()}"
            )

    async def get(
        self, obj: RemoteObject, start: int = 0, end: int | None = None
    ) -> bytes | memoryview:
        import obstore

        opts: dict[str, Any] = {}
        if obj.etag:
            opts["if_match"] = f'"{obj.etag}"'
        if start or end is not None:
            opts["range"] = (start, obj.size if end is None else end)
        try:
            res = await obstore.get_async(self.store, obj.key, options=opts)  # type: ignore[arg-type]
            return memoryview(await res.bytes_async())  # zero-copy view of the Rust buffer
        except Exception as e:
            raise self._err(e, "download", obj.key) from e

    async def get_stream(
        self, obj: RemoteObject, start: int, end: int
    ) -> AsyncIterator[bytes | memoryview]:
        import obstore

        opts: dict[str, Any] = {"range": (start, end)}
        if obj.etag:
            opts["if_match"] = f'"{obj.etag}"'
        try:
            res = await obstore.get_async(self.store, obj.key, options=opts)  # type: ignore[arg-type]
            async for chunk in res.stream(min_chunk_size=4 * 1024 * 1024):
                yield memoryview(chunk)
        except Exception as e:
            raise self._err(e, "download", obj.key) from e

    async def delete(self, keys: list[str]) -> None:
        import obstore

        try:
            await obstore.delete_async(self.store, keys)
        except Exception as e:
            raise self._err(e, "delete", keys[0] if keys else "") from e

    async def check_bucket(self) -> None:
        import obstore

        try:
            stream = obstore.list(self.store, None, chunk_size=1)
            async for _ in stream:
                break
        except Exception as e:
            raise self._err(e, "list", "") from e

    # multipart (boto3, in threads) --------------------------------------------------------

    async def _call(self, what: str, key: str, fn: str, **kw: Any) -> Any:
        def run() -> Any:
            return getattr(self.boto, fn)(Bucket=self.url.bucket, Key=key, **kw)

        try:
            return await asyncio.to_thread(run)
        except Exception as e:
            raise self._err(e, what, key) from e

    async def mp_begin(
        self, key: str, size: int, part_size: int, state: dict[str, Any] | None
    ) -> tuple[dict[str, Any], dict[int, str]]:
        if state and state.get("upload_id"):
            done: dict[int, str] = {}
            marker = 0
            while True:
                res = await self._call(
                    "resume upload",
                    key,
                    "list_parts",
                    UploadId=state["upload_id"],
                    PartNumberMarker=marker,
                )
                for p in res.get("Parts", []):
                    if int(p["Size"]) == min(
                        part_size, size - (int(p["PartNumber"]) - 1) * part_size
                    ):
                        done[int(p["PartNumber"])] = _strip(p["ETag"]) or ""
                if not res.get("IsTruncated"):
                    break
                marker = int(res["NextPartNumberMarker"])
            # An ETag that is not an MD5 cannot be checked against the local part: resend it.
            return state, {n: e for n, e in done.items() if md5_from_etag(e) is not None}
        res = await self._call("upload", key, "create_multipart_upload")
        return {"upload_id": res["UploadId"]}, {}

    async def mp_put(
        self, key: str, state: dict[str, Any], n: int, data: bytes, md5: bytes, size: int
    ) -> str:
        res = await self._call(
            "upload",
            key,
            "upload_part",
            UploadId=state["upload_id"],
            PartNumber=n,
            Body=data,
            ContentMD5=b64(md5),
        )
        etag = _strip(res.get("ETag")) or ""
        got = md5_from_etag(etag)
        if got is not None and got != md5:
            raise ChecksumMismatchError(f"upload to {self.describe(key)}: part {n} MD5 mismatch")
        return etag

    async def mp_finish(
        self,
        key: str,
        state: dict[str, Any],
        tokens: dict[int, str],
        part_md5s: dict[int, bytes],
        size: int,
        full_md5: bytes | None,
    ) -> None:
        parts = [{"ETag": f'"{tokens[n]}"', "PartNumber": n} for n in sorted(tokens)]
        res = await self._call(
            "upload",
            key,
            "complete_multipart_upload",
            UploadId=state["upload_id"],
            MultipartUpload={"Parts": parts},
        )
        etag = _strip(res.get("ETag")) or ""
        if "-" in etag and len(part_md5s) == len(tokens):
            digest = hashlib.md5(
                b"".join(part_md5s[n] for n in sorted(part_md5s)), usedforsecurity=False
            ).hexdigest()
            if etag != f"{digest}-{len(parts)}":
                raise ChecksumMismatchError(
                    f"upload to {self.describe(key)}: the object's ETag {etag} does not match "
                    "the parts sent"
                )

    async def mp_abort(self, key: str, state: dict[str, Any]) -> None:
        if state.get("upload_id"):
            await self._call(
                "abort upload", key, "abort_multipart_upload", UploadId=state["upload_id"]
            )
