"""Admission: which ready group runs on which backend, and when.

Event-driven: submissions, finished groups and capacity changes wake the loop; a slow tick is
only a safety net. Groups are considered by priority (HIGH, NORMAL, LOW), then submit time;
a group is admitted only when all of its tasks fit at once (gang), and a group that does not
fit does not block smaller ones behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from sqlalchemy import select, update

from ...protocol import LaunchGroup
from ..db.models import Group, Pool, Task, Workflow
from ..lifecycle.engine import Lifecycle
from ..lifecycle.status import ACTIVE, TaskStatus
from .ledger import Ledger, Request

log = logging.getLogger(__name__)


def task_request(cpu: int | None, gpu: int | None, memory: int | None) -> Request:
    return Request(cpu=float(cpu or 0), gpu=int(gpu or 0), memory=int(memory or 0))


class Scheduler:
    def __init__(self, lifecycle: Lifecycle, is_online: Callable[[str], bool]):
        self.lc = lifecycle
        self.ledger = Ledger()
        self._wake = asyncio.Event()
        self._is_online = is_online
        self.passes = 0
        self.decision_ms: list[float] = []

    def wake(self) -> None:
        self._wake.set()

    async def rebuild(self) -> None:
        """Re-derive what admitted groups hold from the database (after a restart)."""
        async with self.lc.sessions() as session:
            rows = (
                await session.execute(
                    select(Group.pk, Group.backend, Group.workflow_pk).where(
                        Group.status.in_([s.value for s in ACTIVE]), Group.backend.is_not(None)
                    )
                )
            ).all()
            for group_pk, backend, wf_pk in rows:
                _, specs, _ = await self.lc.specs.get(session, wf_pk)
                tasks = (
                    await session.execute(
                        select(Task.name, Task.node).where(
                            Task.group_pk == group_pk, Task.status.in_([s.value for s in ACTIVE])
                        )
                    )
                ).all()
                placed = []
                for name, node in tasks:
                    t = specs.get(name)
                    if t is not None:
                        r = t.resources
                        placed.append((node or "", task_request(r.cpu, r.gpu, r.memory_bytes)))
                if backend is not None:
                    self.ledger.hold(group_pk, backend, placed)

    async def run(self, tick: float = 1.0) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=tick)
            self._wake.clear()
            try:
                await self.pass_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduler pass failed")

    async def pass_once(self) -> int:
        self.passes += 1
        admitted = 0
        async with self.lc.txn() as (session, fx):
            pools = {
                p.name: p.backend for p in (await session.execute(select(Pool))).scalars().all()
            }
            rows = (
                await session.execute(
                    select(Group, Workflow)
                    .join(Workflow, Group.workflow_pk == Workflow.pk)
                    .where(Group.status == TaskStatus.SCHEDULING.value)
                    .order_by(Group.priority_rank, Group.submitted_at, Group.pk)
                )
            ).all()
            if not rows:
                return 0
            admitted_groups: list[Group] = []
            for group, wf in rows:
                started = time.perf_counter()
                backend = pools.get(group.pool)
                if backend is None or not self._is_online(backend):
                    continue
                spec, _specs, _ = await self.lc.specs.get(session, wf.pk, wf.spec_json)
                gspec = next(g for g in spec.groups if g.name == group.name)
                requests = [
                    task_request(t.resources.cpu, t.resources.gpu, t.resources.memory_bytes)
                    for t in gspec.tasks
                ]
                placement = self.ledger.fit(backend, requests)
                if placement is None:
                    continue
                self.ledger.hold(group.pk, backend, list(zip(placement, requests, strict=True)))
                group.status = TaskStatus.PROCESSING.value
                group.backend = backend
                admitted_groups.append(group)
                nodes = dict(zip([t.name for t in gspec.tasks], placement, strict=True))
                launches = [
                    self.lc.launch_spec(wf, gspec, t, 0, nodes[t.name]) for t in gspec.tasks
                ]
                fx.launches.append(
                    (
                        backend,
                        LaunchGroup(
                            workflow_id=wf.workflow_id,
                            group=group.name,
                            barrier=gspec.barrier,
                            tasks=launches,
                        ),
                    )
                )
                for t in gspec.tasks:
                    await session.execute(
                        update(Task)
                        .where(
                            Task.group_pk == group.pk,
                            Task.name == t.name,
                            Task.status == TaskStatus.SCHEDULING.value,
                        )
                        .values(
                            status=TaskStatus.PROCESSING.value, backend=backend, node=nodes[t.name]
                        )
                    )
                admitted += 1
                self.decision_ms.append((time.perf_counter() - started) * 1000)
            if len(self.decision_ms) > 10_000:
                del self.decision_ms[:-10_000]
        return admitted

    def release(self, group_pk: int) -> None:
        self.ledger.release(group_pk)
