"""URL-addressed object storage: the interface every backend (file, s3, azure, gs) implements.

A storage URL names a prefix (a "folder"); objects below it are addressed by their path relative
to that prefix, always with ``/`` separators. Transfers take an optional ``regex`` that is matched
with ``re.search`` against those relative paths.
"""

from __future__ import annotations

import abc
import re
from dataclasses import dataclass, field
from pathlib import Path


class StorageError(Exception):
    """A storage operation failed; the message names the URL and the reason."""


@dataclass(frozen=True)
class ObjectInfo:
    """One object below a URL: its ``/``-separated path relative to the URL, and its size."""

    key: str
    size: int


@dataclass
class TransferResult:
    """What a transfer moved, and what it left out on purpose (e.g. symlinks out of the tree)."""

    files: int = 0
    bytes: int = 0
    skipped: list[str] = field(default_factory=list)


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
    if key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise StorageError(f"invalid object path {key!r}: must be relative, without '.' or '..'")
    return key


class Store(abc.ABC):
    """Operations on URLs of one scheme. Instances are cheap and hold no open connections."""

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
