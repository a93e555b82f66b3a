"""Helpers for tests/storage. The storage kinds the shared suite runs against, each a real server from scripts/services.sh:

- ``seaweedfs``: s3:// against SeaweedFS (``weed mini``; checks signatures, has a read-only key)
- ``moto``:      s3:// against moto_server
- ``azurite``:   azure:// against Azurite (own account key; checks signatures)
- ``gcs``:       gs:// through the GCS JSON API against fake-gcs-server
- ``gcs-hmac``:  gs:// through the S3-interoperable API with HMAC keys (SeaweedFS stands in for
                 storage.googleapis.com, as an override_url)
- ``file``:      file:// (the same suite, no server)

Each test gets a fresh bucket (container). A kind whose server variable is missing fails (or is
skipped with OSMO_TEST_ALLOW_SKIP_SERVICES=1), as in tests/conftest.py.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from osmo.storage import Credentials, Store, open_store

KINDS = ["seaweedfs", "moto", "azurite", "gcs", "gcs-hmac", "file"]
SERVICE_ENV = {
    "seaweedfs": "OSMO_TEST_S3_ENDPOINT",
    "gcs-hmac": "OSMO_TEST_S3_ENDPOINT",
    "moto": "OSMO_TEST_MOTO_ENDPOINT",
    "azurite": "OSMO_TEST_AZURE_CONNECTION_STRING",
    "gcs": "OSMO_TEST_GCS_ENDPOINT",
}


def _env(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        message = (
            f"{name} is not set, so there is no storage server for this test. Run the suite with "
            '`make test`, or `scripts/services.sh start && eval "$(scripts/services.sh env)"`. '
            "Set OSMO_TEST_ALLOW_SKIP_SERVICES=1 to skip tests that need services instead."
        )
        if os.environ.get("OSMO_TEST_ALLOW_SKIP_SERVICES") == "1":
            pytest.skip(message)
        pytest.fail(message, pytrace=False)
    return value


def _bucket_name() -> str:
    return f"osmo-t-{uuid.uuid4().hex[:12]}"


# One bucket per kind for the session, a fresh prefix per test: a server (SeaweedFS) gives each
# bucket volumes of its own, and a bucket per test would run it out of them.
_SESSION: dict[str, Remote] = {}


@dataclass
class Remote:
    """One storage kind with a fresh, empty bucket."""

    kind: str
    root: str  # scheme://[account/]bucket
    credentials: Credentials | None
    # Writes an object behind osmo's back (another client): key -> bytes.
    raw_put: Callable[[str, bytes], None]
    checks_signatures: bool = False
    bad_credentials: Credentials | None = None
    reader_credentials: Credentials | None = None
    missing_bucket_url: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def url(self, path: str = "") -> str:
        return f"{self.root}/{path}" if path else self.root

    def with_prefix(self, prefix: str) -> Remote:
        """The same bucket, addressed below ``prefix`` (raw_put keys too)."""
        put = self.raw_put
        return dataclasses.replace(
            self, root=f"{self.root}/{prefix}", raw_put=lambda k, d: put(f"{prefix}/{k}", d)
        )

    def store(self, credentials: Credentials | None = None) -> Store:
        return open_store(self.root, credentials or self.credentials)


def _s3_remote(kind: str, endpoint: str, key_id: str, secret: str) -> Remote:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        region_name="us-east-1",
    )
    bucket = _bucket_name()
    client.create_bucket(Bucket=bucket)
    scheme = "gs" if kind == "gcs-hmac" else "s3"
    creds = Credentials(access_key_id=key_id, access_key=secret, override_url=endpoint)
    remote = Remote(
        kind=kind,
        root=f"{scheme}://{bucket}",
        credentials=creds,
        raw_put=lambda k, d: client.put_object(Bucket=bucket, Key=k, Body=d),
        checks_signatures=kind != "moto",
        bad_credentials=creds.model_copy(update={"access_key": secret + "x"}),
        missing_bucket_url=f"{scheme}://{_bucket_name()}/x",
    )
    if kind == "seaweedfs":
        rid = os.environ.get("OSMO_TEST_S3_READER_ACCESS_KEY_ID")
        rsecret = os.environ.get("OSMO_TEST_S3_READER_SECRET_ACCESS_KEY")
        if rid and rsecret:
            remote.reader_credentials = Credentials(
                access_key_id=rid, access_key=rsecret, override_url=endpoint
            )
    remote.extra["client"] = client
    remote.extra["bucket"] = bucket
    return remote


def make_remote(kind: str, tmp_path: Path) -> Remote:
    if kind in ("seaweedfs", "gcs-hmac"):
        return _s3_remote(
            kind,
            _env("OSMO_TEST_S3_ENDPOINT"),
            _env("OSMO_TEST_S3_ACCESS_KEY_ID"),
            _env("OSMO_TEST_S3_SECRET_ACCESS_KEY"),
        )
    if kind == "moto":
        return _s3_remote(kind, _env("OSMO_TEST_MOTO_ENDPOINT"), "testing", "testing")
    if kind == "azurite":
        from azure.storage.blob import BlobServiceClient

        from osmo.storage.azure import parse_connection_string

        cs = _env("OSMO_TEST_AZURE_CONNECTION_STRING")
        fields = parse_connection_string(cs)
        account = fields["AccountName"]
        svc = BlobServiceClient.from_connection_string(cs)
        container = _bucket_name()
        cc = svc.create_container(container)
        bad_cs = cs.replace(fields["AccountKey"], "YmFkLWtleS1mb3ItdGVzdHM=")
        return Remote(
            kind=kind,
            root=f"azure://{account}/{container}",
            credentials=Credentials(connection_string=cs),
            raw_put=lambda k, d: cc.upload_blob(k, d, overwrite=True),
            checks_signatures=True,
            bad_credentials=Credentials(connection_string=bad_cs),
            missing_bucket_url=f"azure://{account}/{_bucket_name()}/x",
            extra={"container": cc},
        )
    if kind == "gcs":
        import httpx

        endpoint = _env("OSMO_TEST_GCS_ENDPOINT")
        bucket = _bucket_name()
        r = httpx.post(
            f"{endpoint}/storage/v1/b", params={"project": "osmo-test"}, json={"name": bucket}
        )
        r.raise_for_status()

        def put(k: str, d: bytes) -> None:
            httpx.post(
                f"{endpoint}/upload/storage/v1/b/{bucket}/o",
                params={"uploadType": "media", "name": k},
                content=d,
            ).raise_for_status()

        return Remote(
            kind=kind,
            root=f"gs://{bucket}",
            credentials=Credentials(override_url=endpoint),
            raw_put=put,
            missing_bucket_url=f"gs://{_bucket_name()}/x",
        )
    if kind == "file":
        root = tmp_path / "bucket"
        root.mkdir()

        def fput(k: str, d: bytes) -> None:
            p = root / k
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(d)

        return Remote(
            kind=kind,
            root=root.as_uri(),
            credentials=None,
            raw_put=fput,
            missing_bucket_url=(tmp_path / "missing" / "x").as_uri(),
        )
    raise AssertionError(kind)


def make_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def read_tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
