"""URL-addressed object storage. Only ``file://`` is implemented so far.

store = open_store(url)
store.upload_dir("/local/dir", url, regex=None)
store.download_dir(url, "/local/dir", regex=r"\\.csv$")
store.list(url)
"""

from __future__ import annotations

from urllib.parse import urlsplit

from .base import ObjectInfo, StorageError, Store, TransferResult
from .file import FileStore

__all__ = [
    "FileStore",
    "ObjectInfo",
    "StorageError",
    "Store",
    "TransferResult",
    "open_store",
]

_KNOWN_LATER = ("s3", "gs", "azure", "tos", "swift")


def open_store(url: str) -> Store:
    """The store for ``url``'s scheme; raises ``StorageError`` for schemes not supported."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "file":
        return FileStore()
    if scheme in _KNOWN_LATER:
        raise StorageError(f"storage scheme {scheme}:// is not supported yet (URL {url!r})")
    if not scheme:
        raise StorageError(f"storage URL {url!r} has no scheme; expected e.g. file:///abs/path")
    raise StorageError(f"unknown storage scheme {scheme!r} in URL {url!r}")
