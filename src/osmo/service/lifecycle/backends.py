"""What happens to tasks when a backend connects, goes away, or shuts down."""

from __future__ import annotations

import logging
import time
from collections import defaultdict

from sqlalchemy import select

from ...protocol import Hello, LaunchGroup, NodeInfo, TaskRef
from ..db.models import Backend, Group, Task, Workflow
from .engine import Lifecycle
from .status import ACTIVE, TaskStatus

log = logging.getLogger(__name__)
ACTIVE_VALUES = [s.value for s in ACTIVE]


def key_of(ref: TaskRef) -> str:
    return f"{ref.workflow_id}/{ref.task}/{ref.retry_id}"


async def reconcile(
    lc: Lifecycle, hello: Hello, executor: str
) -> tuple[list[TaskRef], list[LaunchGroup]]:
    """Bring the database and a (re)connecting backend into agreement.

    Returns the tasks the backend may forget (their outcome is already recorded) and the launches
    it never received (sent again). Tasks the database has running there but the backend does not
    know are lost: they fail with a backend error and follow their exit actions.
    """
    reported = {r.key(): r for r in hello.tasks}
    forget: list[TaskRef] = []
    resend: list[LaunchGroup] = []
    now = time.time()
    async with lc.txn() as (session, fx):
        row = await session.get(Backend, hello.backend)
        if row is None:
            row = Backend(name=hello.backend)
            session.add(row)
        row.executor = executor
        row.version = hello.version
        row.cluster_id = row.cluster_id or hello.cluster_id
        row.online = True
        row.last_heartbeat = now
        row.capacity = _capacity(hello)
        row.nodes = [n.model_dump() for n in hello.nodes]

        active = (
            await session.execute(
                select(Task, Group, Workflow)
                .join(Group, Task.group_pk == Group.pk)
                .join(Workflow, Task.workflow_pk == Workflow.pk)
                .where(Task.backend == hello.backend, Task.status.in_(ACTIVE_VALUES))
            )
        ).all()
        to_launch: dict[tuple[int, str], list[tuple[Task, Workflow]]] = defaultdict(list)
        seen: set[tuple[str, str, int]] = set()
        for task, group, wf in active:
            k = (wf.workflow_id, task.name, task.retry_id)
            seen.add(k)
            report = reported.get(k)
            if report is not None:
                await lc.apply_report(session, fx, hello.backend, report)
            elif task.status == TaskStatus.PROCESSING.value:
                to_launch[(group.pk, group.name)].append((task, wf))
            else:
                await lc.finish_task(
                    session,
                    fx,
                    wf,
                    group,
                    task,
                    TaskStatus.FAILED_BACKEND_ERROR,
                    None,
                    f"backend {hello.backend} no longer knows this task",
                )
        for (group_pk, group_name), items in to_launch.items():
            wf = items[0][1]
            _, specs, _ = await lc.specs.get(session, wf.pk, wf.spec_json)
            group_row = await session.get(Group, group_pk)
            whole = group_row is not None and all(t.retry_id == 0 for t, _ in items)
            launches = [
                await lc.launch_for(
                    session,
                    wf.workflow_id,
                    wf.env_vars,
                    wf.submitted_by,
                    group_name,
                    specs[t.name],
                    t.retry_id,
                    t.node,
                )
                for t, _ in items
                if t.name in specs
            ]
            resend.append(
                LaunchGroup(
                    workflow_id=wf.workflow_id,
                    group=group_name,
                    barrier=bool(whole and group_row and group_row.barrier),
                    tasks=launches,
                )
            )
        for k, report in reported.items():
            if k not in seen:
                forget.append(
                    TaskRef(
                        workflow_id=report.workflow_id, task=report.task, retry_id=report.retry_id
                    )
                )
    return forget, resend


async def cluster_conflict(lc: Lifecycle, backend: str, cluster_id: str | None) -> str | None:
    """Why an operator of cluster ``cluster_id`` may not serve ``backend``, or None if it may.

    A backend belongs to the cluster (or host) whose operator registered it first; another
    cluster claiming the name is refused until the backend is deleted.
    """
    if not cluster_id:
        return None
    async with lc.sessions() as session:
        row = await session.get(Backend, backend)
        owner = row.cluster_id if row is not None else None
    if not owner or owner == cluster_id:
        return None
    return (
        f"backend {backend!r} belongs to cluster {owner!r}, but this operator runs in cluster "
        f"{cluster_id!r}; use another backend name, or delete the backend first "
        f"('osmo backend delete {backend}')"
    )


def _capacity(hello: Hello) -> dict[str, float]:
    return {
        "cpus": sum(n.cpus for n in hello.nodes),
        "memory_bytes": sum(n.memory_bytes for n in hello.nodes),
        "gpus": sum(n.gpus for n in hello.nodes),
    }


async def fail_backend_tasks(lc: Lifecycle, backend: str, message: str) -> int:
    """Fail every active task of a backend with a backend error (exit actions then apply)."""
    async with lc.txn() as (session, fx):
        rows = (
            await session.execute(
                select(Task, Group, Workflow)
                .join(Group, Task.group_pk == Group.pk)
                .join(Workflow, Task.workflow_pk == Workflow.pk)
                .where(Task.backend == backend, Task.status.in_(ACTIVE_VALUES))
                .order_by(Task.lead)  # non-leads first, so a lead ending its group comes last
            )
        ).all()
        n = 0
        for task, group, wf in rows:
            if TaskStatus(task.status).finished:
                continue  # ended meanwhile as a sibling of a lead failed earlier in this loop
            await lc.finish_task(
                session, fx, wf, group, task, TaskStatus.FAILED_BACKEND_ERROR, None, message
            )
            n += 1
        for b_backend, _refs in list(fx.stops.items()):
            if b_backend == backend:
                del fx.stops[b_backend]  # it is gone or going; nothing to tell it
        return n


async def backends_with_active_tasks(lc: Lifecycle) -> set[str]:
    async with lc.sessions() as session:
        rows = await session.execute(
            select(Task.backend)
            .where(Task.status.in_(ACTIVE_VALUES), Task.backend.is_not(None))
            .distinct()
        )
        return {name for (name,) in rows.all() if name}


async def mark_offline(lc: Lifecycle, backend: str) -> None:
    async with lc.sessions() as session, session.begin():
        row = await session.get(Backend, backend)
        if row is not None:
            row.online = False


async def record_heartbeat(
    lc: Lifecycle, backend: str, ts: float, nodes: list[NodeInfo] | None = None
) -> None:
    async with lc.sessions() as session, session.begin():
        row = await session.get(Backend, backend)
        if row is not None:
            row.last_heartbeat = ts
            row.online = True
            if nodes is not None:
                row.nodes = [n.model_dump() for n in nodes]
                row.capacity = {
                    "cpus": sum(n.cpus for n in nodes),
                    "memory_bytes": sum(n.memory_bytes for n in nodes),
                    "gpus": sum(n.gpus for n in nodes),
                }
