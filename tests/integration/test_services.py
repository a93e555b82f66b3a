"""The test services themselves: the PostgreSQL from scripts/services.sh and the `database_url`
fixture on both backends. If these fail, every test that uses a database is suspect."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Column, Integer, MetaData, String, Table, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

pytestmark = pytest.mark.integration


def test_postgres_round_trip_version_and_loopback(postgres_url: str, postgres_dsn: str) -> None:
    assert make_url(postgres_url).host == "127.0.0.1"
    table = sql.Identifier(f"osmo_services_check_{uuid.uuid4().hex[:8]}")
    with psycopg.connect(postgres_dsn, connect_timeout=10) as conn:
        assert conn.info.server_version >= 150000, conn.info.server_version
        host, listen = conn.execute(
            "SELECT host(inet_server_addr()), current_setting('listen_addresses')"
        ).fetchone() or (None, None)
        assert host == "127.0.0.1"
        assert listen == "127.0.0.1"
        # DDL is transactional in PostgreSQL: everything below is rolled back, nothing is left.
        try:
            conn.execute(
                sql.SQL("CREATE TABLE {} (id serial PRIMARY KEY, name text NOT NULL)").format(table)
            )
            with conn.cursor() as cur:
                cur.executemany(
                    sql.SQL("INSERT INTO {} (name) VALUES (%s)").format(table),
                    [("alpha",), ("beta",)],
                )
            rows = conn.execute(sql.SQL("SELECT id, name FROM {} ORDER BY id").format(table))
            assert rows.fetchall() == [(1, "alpha"), (2, "beta")]
        finally:
            conn.rollback()


def test_database_url_round_trip(database_url: str, request: pytest.FixtureRequest) -> None:
    backend = request.node.callspec.params["database_url"]
    expected_driver = {"sqlite": "aiosqlite", "postgresql": "psycopg"}[backend]
    metadata = MetaData()
    things = Table(
        "things",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("name", String(50), nullable=False),
    )

    async def round_trip() -> tuple[str, str, list[str], list[str]]:
        engine = create_async_engine(database_url)
        try:
            async with engine.begin() as conn:
                before = await conn.run_sync(lambda c: inspect(c).get_table_names())
                await conn.run_sync(metadata.create_all)
                await conn.execute(things.insert(), [{"name": "alpha"}, {"name": "beta"}])
            async with engine.connect() as conn:
                result = await conn.execute(select(things.c.name).order_by(things.c.id))
                names = list(result.scalars())
            return engine.dialect.name, engine.dialect.driver, before, names
        finally:
            await engine.dispose()

    dialect, driver, before, names = asyncio.run(round_trip())
    assert (dialect, driver) == (backend, expected_driver)
    assert before == [], "database_url must give each test a fresh, empty database"
    assert names == ["alpha", "beta"]
