"""URL-addressed object storage: ``file://``, ``s3://``, ``gs://``, ``azure://``.

    store = open_store(url)                       # credentials resolved for the URL
    store = open_store(url, Credentials(...))     # or passed explicitly (control plane)
    store.upload_dir("/local/dir", url, regex=None)
    store.download_dir(url, "/local/dir", regex=r"\\.csv$")
    store.list(url)
    store.upload(paths, url, TransferOptions(threads=32, regex=...))
    store.download(url, dest, TransferOptions(resume=True))
    store.list_objects(url, recursive=False) / delete(url, regex) / check(url, "WRITE")
    store.read_bytes(url) / write_bytes(url, data) / stream(url, start)

Failures raise ``StorageError`` subclasses (see ``base``) whose messages name the URL and reason.
Heavy clients (obstore, boto3, azure-storage-blob, httpx) are imported only when used.
"""

from __future__ import annotations

from .base import (
    AccessDeniedError,
    AccessType,
    BucketNotFoundError,
    ChecksumMismatchError,
    InvalidURLError,
    MissingCredentialsError,
    NotFoundError,
    ObjectChangedError,
    ObjectInfo,
    Progress,
    StorageError,
    Store,
    TransferOptions,
    TransferResult,
    TransientError,
    UnsafeKeyError,
)
from .credentials import (
    Credentials,
    delete_local_credential,
    load_local_credentials,
    resolve_credentials,
    save_local_credential,
)
from .file import FileStore
from .url import StorageURL, parse_url, scheme_of

__all__ = [
    "AccessDeniedError",
    "AccessType",
    "BucketNotFoundError",
    "ChecksumMismatchError",
    "Credentials",
    "FileStore",
    "InvalidURLError",
    "MissingCredentialsError",
    "NotFoundError",
    "ObjectChangedError",
    "ObjectInfo",
    "Progress",
    "StorageError",
    "StorageURL",
    "Store",
    "TransferOptions",
    "TransferResult",
    "TransientError",
    "UnsafeKeyError",
    "delete_local_credential",
    "load_local_credentials",
    "open_store",
    "parse_url",
    "resolve_credentials",
    "save_local_credential",
]

_KNOWN_LATER = ("tos", "swift")


def open_store(url: str, credentials: Credentials | None = None, *, threads: int = 64) -> Store:
    """The store for ``url``'s scheme. Remote schemes use ``credentials``, or when ``None`` the
    one ``resolve_credentials(url)`` finds (local client config, then the environment)."""
    scheme = scheme_of(url)
    if scheme == "file":
        return FileStore()
    if scheme in ("s3", "gs", "azure"):
        from .remote import RemoteStore

        parse_url(url)  # a bad URL fails here, before any credential lookup
        if credentials is None:
            credentials = resolve_credentials(url)
        return RemoteStore(scheme, credentials, threads)
    if scheme in _KNOWN_LATER:
        raise InvalidURLError(f"storage scheme {scheme}:// is not supported yet (URL {url!r})")
    if not scheme:
        raise InvalidURLError(
            f"storage URL {url!r} has no scheme; expected e.g. s3://bucket/path or file:///abs/path"
        )
    raise InvalidURLError(f"unknown storage scheme {scheme!r} in URL {url!r}")
