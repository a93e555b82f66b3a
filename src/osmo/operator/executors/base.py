"""What an executor offers the operator connection; the executor decides nothing about admission."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod

from ...protocol import LaunchGroup, LogChunk, NodeInfo, TaskRef, TaskReport

Outgoing = TaskReport | LogChunk


class Executor(ABC):
    kind: str = "base"
    # Identity of the cluster or host behind this executor (one per backend name).
    cluster_id: str | None = None

    def __init__(self) -> None:
        # Reports and log chunks for the control plane, in the order they happened.
        self.outbox: asyncio.Queue[Outgoing] = asyncio.Queue()

    @abstractmethod
    async def start(self) -> None:
        """Adopt whatever tasks survived a restart of the operator."""

    @abstractmethod
    def nodes(self) -> list[NodeInfo]: ...

    @abstractmethod
    def known_tasks(self) -> list[TaskReport]:
        """Every task held: running, or finished with the outcome not yet acknowledged."""

    @abstractmethod
    async def launch(self, group: LaunchGroup) -> None:
        """Start a group's tasks; a task that exists already is left alone (idempotent)."""

    @abstractmethod
    async def stop(self, refs: list[TaskRef], reason: str) -> None: ...

    @abstractmethod
    def set_log_offsets(self, offsets: dict[str, int]) -> None:
        """Resume log streaming from what the control plane already holds."""

    @abstractmethod
    async def acknowledged(self, refs: list[TaskRef]) -> None:
        """The control plane recorded these tasks' outcomes: their local state may go."""

    @abstractmethod
    async def shutdown(self, stop_tasks: bool) -> None: ...
