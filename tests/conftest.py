"""Fixtures shared by the whole suite.

Real services come from scripts/services.sh: `make test` starts them and exports their addresses
as OSMO_TEST_* variables. A test that needs a service whose variable is missing FAILS with a
message saying how to start it; set OSMO_TEST_ALLOW_SKIP_SERVICES=1 to skip such tests instead
(a quick local run without services).

- `postgres_url`: the shared test database, `postgresql+psycopg://...` (SQLAlchemy async form).
- `postgres_dsn`: the same in the libpq form `postgresql://...` that psycopg.connect() takes.
- `database_url`: parametrized [sqlite, postgresql]; a fresh, empty database for each test
  (a file in tmp_path; a newly created PostgreSQL database, dropped afterwards).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

POSTGRES_URL_ENV = "OSMO_TEST_POSTGRES_URL"
ALLOW_SKIP_ENV = "OSMO_TEST_ALLOW_SKIP_SERVICES"
# Per-test databases are named osmo_t_<pid>_<random>: the pid lets a later run drop what a killed
# run left behind without touching the databases of a run still in progress.
TEST_DB_PREFIX = "osmo_t_"
_TEST_DB_RE = re.compile(rf"^{TEST_DB_PREFIX}(\d+)_[0-9a-f]+$")


def _missing_service(variable: str, what: str) -> NoReturn:
    message = (
        f"{variable} is not set, so there is no {what} for this test. Run the suite with "
        "`make test` (it starts the test services), or start them yourself: "
        '`scripts/services.sh start && eval "$(scripts/services.sh env)"`. '
        f"Set {ALLOW_SKIP_ENV}=1 to skip tests that need services instead."
    )
    if os.environ.get(ALLOW_SKIP_ENV) == "1":
        pytest.skip(message)
    pytest.fail(message, pytrace=False)


def _with_database(url: str, database: str, *, drivername: str | None = None) -> str:
    from sqlalchemy.engine import make_url

    u = make_url(url).set(database=database)
    if drivername is not None:
        u = u.set(drivername=drivername)
    return u.render_as_string(hide_password=False)


def _libpq_url(url: str) -> str:
    """postgresql+psycopg://u:p@h:port/db -> postgresql://u:p@h:port/db (for psycopg.connect)."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    return _with_database(url, u.database or "postgres", drivername="postgresql")


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get(POSTGRES_URL_ENV, "").strip()
    if not url:
        _missing_service(POSTGRES_URL_ENV, "PostgreSQL server")
    return url


@pytest.fixture(scope="session")
def postgres_dsn(postgres_url: str) -> str:
    return _libpq_url(postgres_url)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture(scope="session")
def _postgres_admin_dsn(postgres_dsn: str) -> str:
    """Where per-test databases are created; first drops those left by killed runs."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(postgres_dsn, autocommit=True, connect_timeout=10) as conn:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s",
                (TEST_DB_PREFIX.replace("_", r"\_") + "%",),
            )
        ]
        for name in names:
            m = _TEST_DB_RE.match(name)
            if m and not _pid_alive(int(m.group(1))):
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
    return postgres_dsn


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)],
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database for one test, as an SQLAlchemy async URL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'osmo.db'}"
        return

    import psycopg
    from psycopg import sql

    url: str = request.getfixturevalue("postgres_url")
    admin_dsn: str = request.getfixturevalue("_postgres_admin_dsn")
    name = f"{TEST_DB_PREFIX}{os.getpid()}_{uuid.uuid4().hex[:12]}"
    ident = sql.Identifier(name)
    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))
    try:
        yield _with_database(url, name)
    finally:
        # FORCE: a test that forgot to dispose its engine must not leak the database.
        with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
