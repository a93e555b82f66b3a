"""``azure://account/container/path`` through azure-storage-blob (run in a thread pool).

Credential: a connection string (``connection_string``, or ``access_key`` holding one, as in the
original), or an account key in ``access_key`` with ``override_url`` as the blob endpoint
(default ``https://ACCOUNT.blob.core.windows.net``). Checksums: every request carries
Content-MD5 (``validate_content``) and whole blobs record their MD5, checked on download.
Large files are staged as blocks whose ids encode the part number and its MD5, so an interrupted
upload resumes from the server's uncommitted block list.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

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

T = TypeVar("T")


def parse_connection_string(cs: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in cs.strip().strip(";").split(";"):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def _block_id(n: int, md5hex: str) -> str:
    return base64.b64encode(f"osmo-{n:05d}-{md5hex}".encode()).decode()


def _parse_block_id(block_id: str) -> tuple[int, str] | None:
    try:
        raw = base64.b64decode(block_id).decode()
    except ValueError:
        return None
    parts = raw.split("-")
    if len(parts) == 3 and parts[0] == "osmo" and parts[1].isdigit():
        return int(parts[1]), parts[2]
    return None


class AzureBackend(Backend):
    def __init__(self, url: StorageURL, creds: Credentials | None, threads: int = 64):
        if creds is None or not (
            creds.azure_connection_string or creds.access_key or creds.default_chain
        ):
            raise MissingCredentialsError(missing_credentials_message(url))
        self.url = url
        self.creds = creds
        self.threads = threads
        self._client: Any = None
        self._pool: ThreadPoolExecutor | None = None

    @property
    def container(self) -> Any:
        if self._client is None:
            from azure.storage.blob import BlobServiceClient

            assert self.creds is not None
            kw: dict[str, Any] = {
                "retry_total": 2,
                "connection_timeout": 10,
                "read_timeout": 300,
                "max_single_put_size": 256 * 1024 * 1024,
            }
            cs = self.creds.azure_connection_string
            if cs:
                fields = parse_connection_string(cs)
                if fields.get("AccountName", "").lower() != self.url.account:
                    raise AccessDeniedError(
                        f"the credential's connection string is for account "
                        f"{fields.get('AccountName')!r}, not {self.url.account!r} ({self.url})"
                    )
                svc = BlobServiceClient.from_connection_string(cs, **kw)
            else:
                endpoint = (
                    self.creds.override_url or f"https://{self.url.account}.blob.core.windows.net"
                )
                cred: Any = None
                if self.creds.access_key:
                    cred = {"account_name": self.url.account, "account_key": self.creds.access_key}
                else:
                    from azure.identity import DefaultAzureCredential  # type: ignore[import-untyped]

                    cred = DefaultAzureCredential()
                svc = BlobServiceClient(endpoint, credential=cred, **kw)
            self._client = svc.get_container_client(self.url.bucket)
        return self._client

    async def _run(self, what: str, key: str, fn: Callable[[], T]) -> T:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=min(max(self.threads, 4), 32))
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn)
        except Exception as e:
            raise self._err(e, what, key) from e

    async def aclose(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def _err(self, e: BaseException, what: str, key: str) -> StorageError:
        if isinstance(e, StorageError):
            return e
        where = self.describe(key)
        code = str(getattr(e, "error_code", "") or "")
        status = int(getattr(e, "status_code", 0) or 0)
        name = type(e).__name__
        text = str(e).splitlines()[0] if str(e) else name
        if code == "ContainerNotFound":
            return BucketNotFoundError(
                f"container {self.url.bucket!r} does not exist in account {self.url.account!r} "
                f"({where})"
            )
        if code in ("ConditionNotMet",) or status == 412 or name == "ResourceModifiedError":
            return ObjectChangedError(
                f"{where} changed on the server during the {what}; the partial download was "
                "removed: run it again"
            )
        if (
            code in ("AuthenticationFailed",)
            or name == "ClientAuthenticationError"
            or status == 403
        ):
            return AccessDeniedError(
                f"access denied to {where}: the server rejected the credential "
                f"({code or status}: wrong account key or no permission to {what})"
            )
        if code in ("BlobNotFound",) or status == 404 or name == "ResourceNotFoundError":
            return NotFoundError(f"{where} does not exist")
        if code == "Md5Mismatch" or ("md5" in text.lower() and "mismatch" in text.lower()):
            return ChecksumMismatchError(f"{what} {where}: MD5 mismatch ({text})")
        if name in ("ServiceRequestError", "ServiceResponseError") or status >= 500:
            return TransientError(f"{what} {where}: {text[:300]}")
        return StorageError(f"{what} {where} failed: {text[:500]}")

    @staticmethod
    def _meta(p: Any) -> RemoteObject:
        md5 = p.content_settings.content_md5 if p.content_settings else None
        return RemoteObject(
            key=p.name,
            size=int(p.size),
            etag=(p.etag or "").strip('"') or None,
            last_modified=p.last_modified,
            md5=bytes(md5) if md5 else None,
        )

    async def listing(
        self, prefix: str, delimiter: bool = False
    ) -> AsyncIterator[RemoteObject | str]:
        def page() -> list[RemoteObject | str]:
            out: list[RemoteObject | str] = []
            if delimiter:
                for item in self.container.walk_blobs(name_starts_with=prefix or None):
                    if item.__class__.__name__ == "BlobPrefix":
                        out.append(item.name)
                    else:
                        out.append(self._meta(item))
            else:
                for item in self.container.list_blobs(name_starts_with=prefix or None):
                    out.append(self._meta(item))
            return out

        for it in await self._run("list", prefix, page):
            yield it

    async def head(self, key: str) -> RemoteObject | None:
        try:
            props = await self._run(
                "read", key, lambda: self.container.get_blob_client(key).get_blob_properties()
            )
        except NotFoundError:
            return None
        except BucketNotFoundError:
            raise
        return self._meta(props)

    async def put(self, key: str, data: bytes, md5: bytes) -> None:
        from azure.storage.blob import ContentSettings

        def go() -> None:
            self.container.upload_blob(
                key,
                data,
                overwrite=True,
                validate_content=True,
                content_settings=ContentSettings(content_md5=bytearray(md5)),
            )

        await self._run("write", key, go)

    async def get(self, obj: RemoteObject, start: int = 0, end: int | None = None) -> bytes:
        from azure.core import MatchConditions

        def go() -> bytes:
            kw: dict[str, Any] = {"max_concurrency": 1}
            if obj.etag:
                kw["etag"] = f'"{obj.etag}"'
                kw["match_condition"] = MatchConditions.IfNotModified
            if start or end is not None:
                stop = obj.size if end is None else end
                kw["offset"] = start
                kw["length"] = stop - start
                # Content-MD5 per range is capped at 4 MiB by the service.
                kw["validate_content"] = stop - start <= 4 * 1024 * 1024
            else:
                kw["validate_content"] = obj.size <= 4 * 1024 * 1024
            if obj.size == 0:
                kw.pop("validate_content")
            data: bytes = self.container.download_blob(obj.key, **kw).readall()
            return data

        return await self._run("download", obj.key, go)

    async def delete(self, keys: list[str]) -> None:
        def go() -> None:
            for i in range(0, len(keys), 256):
                batch = keys[i : i + 256]
                try:
                    self.container.delete_blobs(*batch, raise_on_any_failure=False)
                except Exception:
                    for k in batch:  # the emulator may lack batch support
                        try:
                            self.container.delete_blob(k)
                        except Exception as e:
                            if type(self._err(e, "delete", k)) is not NotFoundError:
                                raise

        await self._run("delete", keys[0] if keys else "", go)

    async def check_bucket(self) -> None:
        await self._run("read", "", lambda: self.container.get_container_properties())

    async def mp_begin(
        self, key: str, size: int, part_size: int, state: dict[str, Any] | None
    ) -> tuple[dict[str, Any], dict[int, str]]:
        def blocks() -> dict[int, str]:
            bc = self.container.get_blob_client(key)
            try:
                _, uncommitted = bc.get_block_list("uncommitted")
            except Exception as e:
                if type(self._err(e, "resume", key)) is NotFoundError:
                    return {}
                raise
            done: dict[int, str] = {}
            for b in uncommitted:
                parsed = _parse_block_id(b.id)
                if parsed is not None:
                    n, md5hex = parsed
                    if int(b.size) == min(part_size, size - (n - 1) * part_size):
                        done[n] = md5hex
            return done

        done = await self._run("resume upload", key, blocks) if state is not None else {}
        return {"blocks": True}, done

    async def mp_put(
        self, key: str, state: dict[str, Any], n: int, data: bytes, md5: bytes, size: int
    ) -> str:
        block_id = _block_id(n, md5.hex())
        await self._run(
            "upload",
            key,
            lambda: self.container.get_blob_client(key).stage_block(
                block_id, data, validate_content=True
            ),
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
        from azure.storage.blob import BlobBlock

        blocks = [BlobBlock(block_id=_block_id(n, tokens[n])) for n in sorted(tokens)]
        await self._run(
            "upload", key, lambda: self.container.get_blob_client(key).commit_block_list(blocks)
        )

    async def mp_abort(self, key: str, state: dict[str, Any]) -> None:
        return None  # uncommitted blocks expire on their own
