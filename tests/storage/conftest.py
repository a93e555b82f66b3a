"""Fixtures for tests/storage: ``remote`` runs a test once per storage kind (see
storage_helpers.py), each against its real server from scripts/services.sh."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from storage_helpers import _SESSION, KINDS, Remote, make_remote


@pytest.fixture(params=KINDS)
def remote(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Remote]:
    kind = request.param
    if kind == "file":
        yield make_remote(kind, tmp_path)
        return
    request.applymarker(pytest.mark.integration)
    if kind not in _SESSION:
        _SESSION[kind] = make_remote(kind, tmp_path)
    yield _SESSION[kind].with_prefix(f"t-{uuid.uuid4().hex[:10]}")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Journals and the client config go to a throwaway $OSMO_HOME; no AWS env leaks in."""
    monkeypatch.setenv("OSMO_HOME", str(tmp_path / "osmo-home"))
    for var in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AZURE_STORAGE_CONNECTION_STRING",
        "AZURE_STORAGE_KEY",
        "STORAGE_EMULATOR_HOST",
        "GOOGLE_OAUTH_ACCESS_TOKEN",
    ):
        monkeypatch.delenv(var, raising=False)
