"""Running an operator: an executor plus its outbound connection."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Any

from .connection import OperatorConnection, Refused
from .executors.base import Executor

log = logging.getLogger(__name__)


def make_executor(kind: str, state_dir: Path, **options: Any) -> Executor:
    if kind == "local":
        from .executors.local import LocalExecutor

        return LocalExecutor(state_dir)
    if kind == "simulated":
        from .executors.simulated import SimulatedExecutor

        return SimulatedExecutor(state_dir, **options)
    if kind == "kubernetes":
        from .executors.kubernetes.config import load_config
        from .executors.kubernetes.executor import KubernetesExecutor

        config = load_config(options.get("config"), namespace=options.get("namespace"))
        return KubernetesExecutor(config, kubeconfig=options.get("kubeconfig"))
    raise ValueError(f"unknown executor {kind!r}; available: local, simulated, kubernetes")


class EmbeddedOperator:
    """An operator running inside another asyncio program (``osmo standalone``)."""

    def __init__(self, server: str, backend: str, token: str, executor: Executor):
        self.executor = executor
        self.connection = OperatorConnection(server, backend, token, executor)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.executor.start()
        self._task = asyncio.create_task(self.connection.run(), name="operator-connection")

    async def stop(self, stop_tasks: bool) -> None:
        await self.connection.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.executor.shutdown(stop_tasks=stop_tasks)


async def run_operator(server: str, backend: str, token: str, executor: Executor) -> None:
    """Run until SIGINT/SIGTERM. Tasks keep running under their supervisors when it stops."""
    op = EmbeddedOperator(server, backend, token, executor)
    await op.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    assert op._task is not None
    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([op._task, waiter], return_when=asyncio.FIRST_COMPLETED)
    try:
        if op._task in done:
            op._task.result()
    except Refused:
        await op.stop(stop_tasks=False)
        raise
    await op.stop(stop_tasks=False)
