"""The simulated executor: N fake nodes; tasks "run" for a while and exit with a chosen code.

For exercising the scheduler at thousands of nodes and tasks on one machine. Each task's
environment chooses its behaviour: ``OSMO_SIM_DURATION`` (seconds, default 0) and
``OSMO_SIM_EXIT_CODE`` (default 0). It speaks the real protocol as a separate operator process
does; its state lives in memory, so a restarted simulated operator has lost its tasks (the
control plane then fails them with a backend error, as for a real host that rebooted).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...protocol import LaunchGroup, NodeInfo, TaskRef, TaskReport
from .base import Executor

GIB = 1024**3


@dataclass
class SimTask:
    ref: TaskRef
    node: str | None
    status: str
    exit_code: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    handle: asyncio.TimerHandle | None = None


def _key(ref: TaskRef) -> tuple[str, str, int]:
    return (ref.workflow_id, ref.task, ref.retry_id)


class SimulatedExecutor(Executor):
    kind = "simulated"

    def __init__(
        self,
        state_dir: Path,
        *,
        nodes: int = 4,
        node_cpus: float = 8,
        node_memory: int = 32 * GIB,
        node_gpus: int = 0,
        gpu_type: str | None = None,
        node_labels: dict[str, str] | None = None,
        name_prefix: str = "sim-node",
        node_groups: list[dict[str, Any]] | None = None,
    ):
        super().__init__()
        self.state_dir = state_dir
        self.tasks: dict[tuple[str, str, int], SimTask] = {}
        self._nodes = [
            NodeInfo(
                name=f"{name_prefix}-{i:05d}",
                cpus=node_cpus,
                memory_bytes=node_memory,
                gpus=node_gpus,
                gpu_type=gpu_type if node_gpus else None,
                storage_bytes=100 * GIB,
                labels={"osmo.io/executor": "simulated", **(node_labels or {})},
                available=True,
            )
            for i in range(nodes)
        ]
        # Extra groups of different nodes (heterogeneous backends: GPU boxes beside Jetsons).
        for g in node_groups or []:
            prefix = str(g.get("prefix", "sim-group"))
            for i in range(int(g.get("count", 1))):
                gpus = int(g.get("gpus", 0))
                self._nodes.append(
                    NodeInfo(
                        name=f"{prefix}-{i:05d}",
                        cpus=float(g.get("cpus", node_cpus)),
                        memory_bytes=int(g.get("memory", node_memory)),
                        gpus=gpus,
                        gpu_type=g.get("gpu_type") if gpus else None,
                        storage_bytes=100 * GIB,
                        labels={"osmo.io/executor": "simulated", **dict(g.get("labels", {}))},
                        available=True,
                    )
                )
        self.cluster_id = self._cluster_id()

    def _cluster_id(self) -> str:
        path = self.state_dir / "cluster-id"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            cid = f"sim-{uuid.uuid4().hex[:12]}"
            path.write_text(cid + "\n")
            return cid

    async def start(self) -> None:
        return None

    def nodes(self) -> list[NodeInfo]:
        return self._nodes

    def known_tasks(self) -> list[TaskReport]:
        return [self._report(t) for t in self.tasks.values()]

    def set_log_offsets(self, offsets: dict[str, int]) -> None:
        for t in self.tasks.values():
            self.outbox.put_nowait(self._report(t))

    async def acknowledged(self, refs: list[TaskRef]) -> None:
        for ref in refs:
            t = self.tasks.get(_key(ref))
            if t is not None and t.exit_code is not None:
                del self.tasks[_key(ref)]

    def _report(self, t: SimTask) -> TaskReport:
        return TaskReport(
            workflow_id=t.ref.workflow_id,
            task=t.ref.task,
            retry_id=t.ref.retry_id,
            status=t.status,
            exit_code=t.exit_code,
            node=t.node,
            started_at=t.started_at,
            finished_at=t.finished_at,
        )

    async def launch(self, group: LaunchGroup) -> None:
        loop = asyncio.get_running_loop()
        now = time.time()
        for spec in group.tasks:
            k = _key(spec)
            if k in self.tasks:
                continue  # a replayed launch
            env = spec.environment
            try:
                duration = float(env.get("OSMO_SIM_DURATION", "0"))
                code = int(env.get("OSMO_SIM_EXIT_CODE", "0"))
            except ValueError:
                duration, code = 0.0, 2030  # invalid input, as the runtime reports it
            ref = TaskRef(workflow_id=spec.workflow_id, task=spec.task, retry_id=spec.retry_id)
            t = SimTask(ref=ref, node=spec.node, status="RUNNING", started_at=now)
            self.tasks[k] = t
            self.outbox.put_nowait(self._report(t))
            t.handle = loop.call_later(max(0.0, duration), self._finish, k, code)

    def _finish(self, k: tuple[str, str, int], code: int) -> None:
        t = self.tasks.get(k)
        if t is None or t.exit_code is not None:
            return
        t.exit_code = code
        t.status = "COMPLETED" if code == 0 else "FAILED"
        t.finished_at = time.time()
        self.outbox.put_nowait(self._report(t))

    async def stop(self, refs: list[TaskRef], reason: str) -> None:
        for ref in refs:
            t = self.tasks.get(_key(ref))
            if t is None or t.exit_code is not None:
                continue
            if t.handle is not None:
                t.handle.cancel()
            self._finish(_key(ref), 143)

    async def shutdown(self, stop_tasks: bool) -> None:
        for t in self.tasks.values():
            if t.handle is not None:
                t.handle.cancel()
