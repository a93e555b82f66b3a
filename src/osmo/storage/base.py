"""URL-addressed object storage: the interface every backend (file, s3, azure, gs) implements.

A storage URL names a prefix (a "folder"); objects below it are addressed by their path relative
to that prefix, always with ``/`` separators. Transfers take an optional ``regex`` that is matched
with ``re.search`` against those relative paths.

Errors are ``StorageError`` subclasses whose messages name the URL and the reason, so the task
runtime (exit codes 2010/2012) and ``osmo data`` can print them as they are.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

AccessType = Literal["READ", "WRITE", "DELETE"]


class StorageError(Exception):
    """A storage operation failed; the message names the URL and the reason."""


class InvalidURLError(StorageError):
    """The storage URL is malformed or names an unsupported scheme."""


class MissingCredentialsError(StorageError):
    """No credential was found for the URL (local client config, environment)."""


class AccessDeniedError(StorageError):
    """The server refused the credential (bad key, bad signature, or no permission)."""


class NotFoundError(StorageError):
    """The object or prefix does not exist."""


class BucketNotFoundError(NotFoundError):
    """The bucket (or Azure container) does not exist."""


class ObjectChangedError(StorageError):
    """The object changed on the server while it was being downloaded."""


class ChecksumMismatchError(StorageError):
    """The bytes that arrived differ from the bytes that were sent."""


class TransientError(StorageError):
    """A failure worth retrying: connection reset, timeout, 5xx, throttling."""


class UnsafeKeyError(StorageError):
    """An object key would escape the destination folder (``..``, absolute path)."""


@dataclass(frozen=True)
class ObjectInfo:
    """One object below a URL: its ``/``-separated path relative to the URL, and its size."""

    key: str
    size: int
    etag: str | None = field(default=None, compare=False)
    last_modified: datetime | None = field(default=None, compare=False)


@dataclass
class TransferResult:
    """What a transfer moved, and what it left out on purpose (e.g. symlinks out of the tree).

    ``files``/``bytes`` count what is now at the destination by this call; ``bytes_sent`` counts
    the payload actually sent over the wire (less than ``bytes`` when a transfer resumed), and
    ``parts_sent`` the multipart parts (blocks, chunks) sent. ``skipped_existing`` are files a
    resumed transfer found complete already.
    """

    files: int = 0
    bytes: int = 0
    skipped: list[str] = field(default_factory=list)
    bytes_sent: int = 0
    parts_sent: int = 0
    skipped_existing: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "files": self.files,
            "bytes": self.bytes,
            "bytes_sent": self.bytes_sent,
            "parts_sent": self.parts_sent,
            "skipped_existing": self.skipped_existing,
            "skipped": list(self.skipped),
            "seconds": round(self.seconds, 3),
        }


@dataclass
class Progress:
    """A snapshot for progress reporting (called often; keep the callback cheap)."""

    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int


ProgressCallback = Callable[[Progress], None]


@dataclass
class TransferOptions:
    """How a transfer runs. ``threads`` is the number of concurrent requests (files and parts);
    ``processes`` splits the file list over that many worker processes."""

    regex: str | None = None
    threads: int = 64
    processes: int = 1
    resume: bool = False
    part_size: int | None = None
    multipart_threshold: int = 64 * 1024 * 1024
    range_size: int = 64 * 1024 * 1024  # bytes per ranged GET of a large object
    ranges_per_file: int = 8  # ranged GETs of one large object in flight at once
    retries: int = 5
    retry_backoff: float = 0.2
    progress: ProgressCallback | None = None
    journal_dir: Path | None = None
    # Test hook: called with an event name ("part", "file") and a detail after each success;
    # raising from it simulates an interruption at that point.
    on_event: Callable[[str, str], None] | None = None


def compile_regex(regex: str | None) -> re.Pattern[str] | None:
    if regex is None or regex == "":
        return None
    try:
        return re.compile(regex)
    except re.error as e:
        raise StorageError(f"invalid regex {regex!r}: {e}") from e


def check_key(key: str) -> str:
    """Reject relative paths that could escape the prefix (``..``, absolute, empty parts)."""
    parts = key.split("/")
    if (
        key.startswith("/")
        or "\\" in key
        or "\x00" in key
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise UnsafeKeyError(
            f"invalid object path {key!r}: must be relative, without '.', '..' or empty parts"
        )
    return key


class Store(abc.ABC):
    """Operations on URLs of one scheme. Instances are cheap; remote stores hold a connection
    pool (reuse one store for many calls on the same bucket)."""

    scheme: str

    @abc.abstractmethod
    def upload_dir(
        self, local_dir: str | Path, url: str, regex: str | None = None
    ) -> TransferResult:
        """Copy every file below ``local_dir`` to ``url`` (an existing prefix is merged into)."""

    @abc.abstractmethod
    def download_dir(
        self, url: str, local_dir: str | Path, regex: str | None = None
    ) -> TransferResult:
        """Copy every object below ``url`` into ``local_dir``; a missing URL is an error."""

    @abc.abstractmethod
    def list(self, url: str) -> list[ObjectInfo]:
        """Objects below ``url``, sorted by key; a missing URL is an error."""

    # Extended interface (osmo data, control plane) ------------------------------------------

    @abc.abstractmethod
    def upload(
        self, paths: Sequence[str | Path], url: str, options: TransferOptions | None = None
    ) -> TransferResult:
        """``osmo data upload``: each file goes to ``url/<name>``, each folder to
        ``url/<folder name>/...``; a folder given with a trailing ``/`` uploads its contents
        directly below ``url``."""

    @abc.abstractmethod
    def download(
        self, url: str, local_dir: str | Path, options: TransferOptions | None = None
    ) -> TransferResult:
        """Objects below ``url`` (or the one object ``url`` names) into ``local_dir``."""

    @abc.abstractmethod
    def list_objects(
        self, url: str, *, recursive: bool = True, regex: str | None = None
    ) -> Iterator[ObjectInfo]:
        """Objects below ``url`` in key order. Not recursive: direct children only, with
        sub-folders as entries whose key ends in ``/`` and size 0."""

    @abc.abstractmethod
    def delete(self, url: str, regex: str | None = None) -> int:
        """Delete the objects below ``url`` (or the object it names); returns how many."""

    @abc.abstractmethod
    def check(self, url: str, access: AccessType = "READ") -> None:
        """Raise unless the credential allows ``access`` on ``url``."""

    @abc.abstractmethod
    def read_bytes(self, url: str) -> bytes:
        """The content of the one object ``url`` names."""

    @abc.abstractmethod
    def write_bytes(self, url: str, data: bytes) -> None:
        """Create or replace the one object ``url`` names."""

    @abc.abstractmethod
    def stream(self, url: str, start: int = 0, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """The content of the one object ``url`` names from byte ``start``, in chunks (logs)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections (optional)."""
