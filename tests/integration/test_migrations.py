"""Alembic migrations on SQLite and PostgreSQL: head is exactly ``models.py``, upgrades repeat
harmlessly, and databases made by the pre-Alembic ``create_all`` are adopted, not broken.

If ``test_upgrade_matches_models`` fails after a change to ``models.py``, add a revision:
``python -m osmo.service.db.migrate revision -m "what changed"`` (then review it).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, String, inspect, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from osmo.service.db import migrate
from osmo.service.db.engine import create_engine
from osmo.service.db.models import Base, NameCounter

pytestmark = pytest.mark.integration

MODEL_TABLES = set(Base.metadata.tables)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _sync(engine: AsyncEngine, fn: Any) -> Any:
    async with engine.connect() as conn:
        return await conn.run_sync(fn)


def _diff(conn: Connection, metadata: MetaData = Base.metadata) -> list[Any]:
    ctx = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(ctx, metadata))


def _tables(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


async def _schema(engine: AsyncEngine) -> dict[str, Any]:
    """Tables, columns, indexes, unique and foreign keys as the database reports them."""

    def read(conn: Connection) -> dict[str, Any]:
        insp = inspect(conn)
        out: dict[str, Any] = {}
        for t in sorted(insp.get_table_names()):
            out[t] = (
                # Sorted: a column a later revision adds comes last, create_all puts it in place.
                sorted((c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(t)),
                sorted((i["name"], tuple(i["column_names"])) for i in insp.get_indexes(t)),
                sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(t)),
                sorted(
                    (tuple(f["constrained_columns"]), f["referred_table"])
                    for f in insp.get_foreign_keys(t)
                ),
            )
        return out

    result: dict[str, Any] = await _sync(engine, read)
    return result


def test_upgrade_empty_database_matches_models(database_url: str) -> None:
    async def go() -> None:
        engine = create_engine(database_url)
        try:
            assert await _sync(engine, _tables) == set()
            await migrate.upgrade(engine)
            assert await _sync(engine, migrate.current_revision) == migrate.head_revision()
            assert await _sync(engine, _tables) == MODEL_TABLES | {"alembic_version"}
            assert await _sync(engine, _diff) == []
        finally:
            await engine.dispose()

    run(go())


def test_comparison_notices_a_model_change_without_migration(database_url: str) -> None:
    """The check above is only worth something if it fails when models and migrations differ."""

    async def go() -> None:
        engine = create_engine(database_url)
        try:
            await migrate.upgrade(engine)
            changed = MetaData()
            for table in Base.metadata.sorted_tables:
                table.to_metadata(changed)
            changed.tables["pools"].append_column(Column("color", String(16), nullable=True))
            changed.tables["backends"].append_column(Column("extra", Integer))
            diff = await _sync(engine, lambda c: _diff(c, changed))
            added = {(d[0], d[3].name) for d in diff if d[0] == "add_column"}
            assert added == {("add_column", "color"), ("add_column", "extra")}, diff
        finally:
            await engine.dispose()

    run(go())


def test_upgrade_twice_is_a_no_op(database_url: str) -> None:
    async def go() -> None:
        engine = create_engine(database_url)
        try:
            await migrate.upgrade(engine)
            before = await _schema(engine)
            async with engine.begin() as conn:
                await conn.execute(NameCounter.__table__.insert().values(name="kept", last=7))
            await migrate.upgrade(engine)
            assert await _schema(engine) == before
            async with engine.connect() as conn:
                versions = (
                    await conn.execute(text("SELECT version_num FROM alembic_version"))
                ).all()
                assert versions == [(migrate.head_revision(),)]
                kept = (await conn.execute(select(NameCounter.name, NameCounter.last))).all()
                assert kept == [("kept", 7)]
        finally:
            await engine.dispose()

    run(go())


def test_database_from_create_all_is_stamped_not_recreated(database_url: str) -> None:
    """Before migrations, the server ran ``create_all``: the schema of revision 0001 with no
    alembic_version. Such a database is stamped 0001 and upgraded from there, data kept."""

    async def go() -> None:
        engine = create_engine(database_url)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(
                    lambda c: command.upgrade(migrate.alembic_config(c), migrate.INITIAL_REVISION)
                )
                await conn.execute(text("DROP TABLE alembic_version"))
                await conn.execute(
                    text(
                        "INSERT INTO pools (name, backend, description, default_exit_actions,"
                        " created_at) VALUES ('old', 'local', 'from before', '{}', 0)"
                    )
                )
            assert await _sync(engine, _tables) == migrate.INITIAL_TABLES
            await migrate.upgrade(engine)
            assert await _sync(engine, migrate.current_revision) == migrate.head_revision()
            assert await _sync(engine, _diff) == []
            async with engine.connect() as conn:
                rows = (await conn.execute(text("SELECT name, backend FROM pools"))).all()
            assert rows == [("old", "local")]
        finally:
            await engine.dispose()

    run(go())


def test_schema_from_migrations_equals_schema_from_create_all(
    database_url: str, tmp_path: Any
) -> None:
    """The migrations build what ``create_all`` builds from the models (stamping a database
    ``create_all`` made relies on it; so does everything else)."""

    async def go() -> None:
        migrated = create_engine(database_url)
        try:
            await migrate.upgrade(migrated)
            got = await _schema(migrated)
            # Tear down through Alembic's downgrade, then build the same database with create_all.
            async with migrated.begin() as conn:
                await conn.run_sync(lambda c: command.downgrade(migrate.alembic_config(c), "base"))
            assert await _sync(migrated, _tables) <= {"alembic_version"}
            async with migrated.begin() as conn:
                await conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
                await conn.run_sync(Base.metadata.create_all)
            want = await _schema(migrated)
        finally:
            await migrated.dispose()
        got.pop("alembic_version")
        # Names of unnamed unique and foreign keys are the database's own; compare the rest.
        assert got == want

    run(go())


def test_partial_schema_is_refused_with_a_clear_message(database_url: str) -> None:
    async def go() -> None:
        engine = create_engine(database_url)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(
                    lambda c: Base.metadata.create_all(c, tables=[Base.metadata.tables["pools"]])
                )
            with pytest.raises(migrate.MigrationError, match="not backends, events, groups"):
                await migrate.upgrade(engine)
            assert await _sync(engine, _tables) == {"pools"}
        finally:
            await engine.dispose()

    run(go())


def test_sqlite_connections_keep_foreign_keys_after_upgrade(tmp_path: Any) -> None:
    """Migrations turn SQLite foreign keys off for batch copies; pooled connections get them back."""

    async def go() -> None:
        engine = create_engine(f"sqlite:///{tmp_path / 'osmo.db'}")
        try:
            await migrate.upgrade(engine)
            async with engine.connect() as conn:
                assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
        finally:
            await engine.dispose()

    run(go())


def test_failed_sqlite_migration_leaves_nothing_behind(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite migrations run in one transaction: a failure half way rolls every table back."""

    real = migrate._upgrade

    def failing(conn: Connection) -> None:
        real(conn)
        raise RuntimeError("boom after the tables were made")

    monkeypatch.setattr(migrate, "_upgrade", failing)

    async def go() -> None:
        engine = create_engine(f"sqlite:///{tmp_path / 'osmo.db'}")
        try:
            with pytest.raises(RuntimeError, match="boom"):
                await migrate.upgrade(engine)
            assert await _sync(engine, _tables) == set()
        finally:
            await engine.dispose()

    run(go())
