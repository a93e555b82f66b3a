"""``osmo standalone``: the control plane plus one built-in ``local`` operator, in one process.

The same server and the same operator as separate deployments, talking the same protocol over
loopback; only the defaults (SQLite, a local data folder, pool ``default``) are embedded.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

import click

from .operator.executors.local import LocalExecutor
from .operator.runner import EmbeddedOperator
from .service.context import LOCAL_BACKEND, Service
from .service.lifecycle.backends import fail_backend_tasks
from .service.server import serve
from .settings import Settings

log = logging.getLogger(__name__)


async def run_standalone(
    settings: Settings, sock: socket.socket, announce: Callable[[str], None]
) -> None:
    holder: dict[str, EmbeddedOperator] = {}

    async def started(service: Service, url: str) -> None:
        token = (
            (settings.home / "operator-token").read_text().strip()
            if not settings.operator_tokens
            else settings.operator_tokens.split(",")[0].strip()
        )
        executor = LocalExecutor(settings.operator_dir / LOCAL_BACKEND)
        op = EmbeddedOperator(url, LOCAL_BACKEND, token, executor)
        await op.start()
        holder["op"] = op
        announce(url)

    async def stopping(service: Service) -> None:
        # Ctrl-C: tasks on this machine stop; they are recorded as backend errors, so their
        # exit actions (the default pool reschedules 3001) decide what happens on next start.
        n = await fail_backend_tasks(
            service.lifecycle, LOCAL_BACKEND, "osmo standalone was stopped"
        )
        op = holder.get("op")
        if op is not None:
            await op.stop(stop_tasks=True)
        if n:
            click.echo(f"stopped {n} running task(s)", err=True)

    await serve(settings, sock, on_started=started, before_stop=stopping)


def main(settings: Settings, sock: socket.socket, announce: Callable[[str], None]) -> None:
    asyncio.run(run_standalone(settings, sock, announce))
