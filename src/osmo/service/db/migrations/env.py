"""Alembic environment of the control-plane schema.

The server runs migrations itself (``osmo.service.db.migrate.upgrade``) and passes its open
connection in ``config.attributes["connection"]``. Run by the ``alembic`` command instead, this
connects to ``sqlalchemy.url`` if the config sets it, else to the database the osmo settings
name (``OSMO_DATABASE_URL`` or the SQLite file under ``$OSMO_HOME``).
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from osmo.service.db.engine import create_engine, normalize_url
from osmo.service.db.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        from osmo.settings import load_settings

        url = load_settings().resolved_database_url
    return normalize_url(url)


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite alters most tables only by copying them: batch mode does that.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def _run(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine() -> None:
    engine = create_engine(_url())
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_run)
            await conn.commit()
    finally:
        await engine.dispose()


def run_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=_url().startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        asyncio.run(_run_with_own_engine())
    else:
        _run(connection)


if context.is_offline_mode():
    run_offline()
else:
    run_online()
