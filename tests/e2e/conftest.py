from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .platform import Platform, create_postgres_database, drop_postgres_database

POSTGRES_ENV = "OSMO_TEST_POSTGRES_URL"


def database_for(kind: str, home: Path) -> tuple[str, str | None]:
    if kind == "sqlite":
        return f"sqlite+aiosqlite:///{home / 'osmo.db'}", None
    server = os.environ.get(POSTGRES_ENV)
    if not server:
        if os.environ.get("OSMO_TEST_ALLOW_SKIP_SERVICES") == "1":
            pytest.skip(f"{POSTGRES_ENV} not set")
        pytest.fail(
            f"{POSTGRES_ENV} is not set: run the suite with 'make test' (it starts PostgreSQL)"
        )
    url, name = create_postgres_database(server)
    return url, name


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def platform(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    """One standalone per database kind, shared by the tests of a module."""
    home = tmp_path_factory.mktemp(f"osmo-{request.param}")
    url, dbname = database_for(request.param, home)
    p = Platform(home, url)
    p.start()
    try:
        yield p
    finally:
        try:
            p.stop()
        finally:
            p.sweep()
            if dbname:
                drop_postgres_database(os.environ[POSTGRES_ENV], dbname)


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_platform(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Platform]:
    """A standalone of its own (for crash and restart tests); started by the test."""
    home = tmp_path / "home"
    home.mkdir()
    url, dbname = database_for(request.param, home)
    p = Platform(home, url)
    try:
        yield p
    finally:
        if p.proc is not None and p.proc.poll() is None:
            p.stop()
        p.sweep()
        if dbname:
            drop_postgres_database(os.environ[POSTGRES_ENV], dbname)
