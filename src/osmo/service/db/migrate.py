"""Schema creation and upgrades: Alembic revisions in ``migrations/versions``, run at start.

To add a revision after changing ``models.py``::

    python -m osmo.service.db.migrate revision -m "what changed"

which autogenerates ``migrations/versions/NNNN_*.py`` against a scratch SQLite database at head
(review it, then test it on PostgreSQL too: ``tests/integration/test_migrations.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).with_name("migrations")
INITIAL_REVISION = "0001"
# The tables ``Base.metadata.create_all`` made before there were migrations (= revision 0001).
INITIAL_TABLES = frozenset(
    {
        "workflows",
        "workflow_labels",
        "name_counters",
        "groups",
        "tasks",
        "events",
        "backends",
        "pools",
    }
)
# pg_advisory_xact_lock key: replicas starting together migrate one after the other.
_PG_LOCK_KEY = 0x6F736D6F  # "osmo"


class MigrationError(RuntimeError):
    pass


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _created_before_migrations(connection: Connection) -> bool:
    """A database the old ``create_all`` made: the initial tables and no recorded revision."""
    if current_revision(connection) is not None:
        return False
    present = INITIAL_TABLES & set(inspect(connection).get_table_names())
    if not present:
        return False
    if present != INITIAL_TABLES:
        missing = ", ".join(sorted(INITIAL_TABLES - present))
        raise MigrationError(
            f"the database has some osmo tables but not {missing} and no alembic_version; "
            "it was not made by osmo (or an earlier start failed half way): use an empty database"
        )
    return True


def _upgrade(connection: Connection) -> None:
    cfg = alembic_config(connection)
    if _created_before_migrations(connection):
        command.stamp(cfg, INITIAL_REVISION)
    command.upgrade(cfg, "head")


async def upgrade(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision (a no-op when it is there already)."""
    if engine.dialect.name != "sqlite":
        async with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
            await conn.run_sync(_upgrade)
        return
    # SQLite: the driver runs DDL outside transactions and foreign keys are on for every
    # connection. Migrate in one explicit transaction (all or nothing; BEGIN IMMEDIATE also
    # keeps a second server from migrating at the same time), with foreign keys off so batch
    # mode's copy-and-drop of a table cannot cascade deletes into the tables referencing it.
    async with engine.connect() as plain:
        conn = await plain.execution_options(isolation_level="AUTOCOMMIT")
        await conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        try:
            await conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                await conn.run_sync(_upgrade)
                broken = (await conn.exec_driver_sql("PRAGMA foreign_key_check")).all()
                if broken:
                    raise MigrationError(
                        f"migration left rows with broken foreign keys: {broken[:5]}"
                    )
            except BaseException:
                await conn.exec_driver_sql("ROLLBACK")
                raise
            await conn.exec_driver_sql("COMMIT")
        finally:
            await conn.exec_driver_sql("PRAGMA foreign_keys=ON")


async def _autogenerate(message: str) -> None:
    from .engine import create_engine

    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite:///{tmp}/scratch.db")
        try:
            await upgrade(engine)
            head = head_revision()
            rev_id = f"{int(head) + 1 if head else 1:04d}"
            async with engine.begin() as conn:
                await conn.run_sync(
                    lambda c: command.revision(
                        alembic_config(c), message=message, autogenerate=True, rev_id=rev_id
                    )
                )
        finally:
            await engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m osmo.service.db.migrate")
    sub = parser.add_subparsers(dest="command", required=True)
    rev = sub.add_parser("revision", help="autogenerate a revision from models.py")
    rev.add_argument("-m", "--message", required=True)
    args = parser.parse_args(argv)
    if args.command == "revision":
        asyncio.run(_autogenerate(args.message))


if __name__ == "__main__":
    main()
