"""Parsing storage URLs: ``file:///abs``, ``s3://bucket/p``, ``gs://bucket/p``,
``azure://account/container/p``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from .base import InvalidURLError

SCHEMES = ("file", "s3", "gs", "azure")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")
_AZ_ACCOUNT_RE = re.compile(r"^[a-z0-9]{3,24}$")
_AZ_CONTAINER_RE = re.compile(r"^(\$root|[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9])$")


@dataclass(frozen=True)
class StorageURL:
    """A parsed remote URL. ``bucket`` is the S3/GCS bucket or the Azure container; ``prefix``
    is the key path below it without leading or trailing ``/``."""

    scheme: str
    bucket: str
    prefix: str
    account: str = ""  # azure only

    @property
    def root(self) -> str:
        """``scheme://[account/]bucket`` (what a credential's endpoint names)."""
        if self.scheme == "azure":
            return f"azure://{self.account}/{self.bucket}"
        return f"{self.scheme}://{self.bucket}"

    def key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def child(self, rel: str) -> StorageURL:
        return StorageURL(self.scheme, self.bucket, self.key(rel).strip("/"), self.account)

    def __str__(self) -> str:
        return f"{self.root}/{self.prefix}" if self.prefix else self.root


def scheme_of(url: str) -> str:
    return urlsplit(url).scheme.lower()


def parse_url(url: str) -> StorageURL:
    """Parse a remote URL; raises ``InvalidURLError`` naming what is wrong."""
    if not isinstance(url, str) or not url:
        raise InvalidURLError("empty storage URL")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if not scheme:
        raise InvalidURLError(
            f"storage URL {url!r} has no scheme; expected s3://, gs://, azure:// or file://"
        )
    if scheme not in SCHEMES:
        raise InvalidURLError(
            f"unknown storage scheme {scheme!r} in URL {url!r}; "
            f"supported: {', '.join(s + '://' for s in SCHEMES)}"
        )
    if scheme == "file":
        raise InvalidURLError(f"{url!r} is a file:// URL, not a remote one")
    if parts.query or parts.fragment:
        raise InvalidURLError(f"storage URL {url!r} must not have a query or fragment")
    host = parts.netloc
    path = unquote(parts.path)
    segments = [s for s in path.split("/") if s]
    if any(s in (".", "..") for s in segments):
        raise InvalidURLError(f"storage URL {url!r} must not contain '.' or '..' segments")
    if scheme == "azure":
        account = host.lower()
        if not account:
            raise InvalidURLError(
                f"azure URL {url!r} has no account; expected azure://ACCOUNT/CONTAINER/path"
            )
        if not _AZ_ACCOUNT_RE.match(account):
            raise InvalidURLError(
                f"azure URL {url!r}: account {account!r} must be 3-24 lowercase letters/digits"
            )
        if not segments:
            raise InvalidURLError(
                f"azure URL {url!r} has no container; expected azure://ACCOUNT/CONTAINER/path"
            )
        container = segments[0]
        if not _AZ_CONTAINER_RE.match(container):
            raise InvalidURLError(
                f"azure URL {url!r}: container {container!r} must be 3-63 lowercase letters, "
                "digits and single hyphens"
            )
        return StorageURL(scheme, container, "/".join(segments[1:]), account)
    if not host:
        raise InvalidURLError(
            f"{scheme} URL {url!r} has no bucket; expected {scheme}://BUCKET/path"
        )
    if not _BUCKET_RE.match(host):
        raise InvalidURLError(
            f"{scheme} URL {url!r}: bucket {host!r} must be 3-63 lowercase letters, digits, "
            "'.', '-' or '_'"
        )
    return StorageURL(scheme, host, "/".join(segments))
