"""Read-side queries for the API (no state changes here)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, and_, exists, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from .models import Event, Group, Task, Workflow, WorkflowLabel


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return (
        dt.datetime.fromtimestamp(ts, dt.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def glob_to_like(pattern: str) -> str:
    return (
        pattern.replace("\\", "\\\\")
        .replace("%", "\\%")
        .replace("_", "\\_")
        .replace("*", "%")
        .replace("?", "_")
    )


async def get_workflow(session: AsyncSession, workflow_id: str) -> Workflow | None:
    return (
        await session.execute(select(Workflow).where(Workflow.workflow_id == workflow_id))
    ).scalar_one_or_none()


async def workflow_detail(
    session: AsyncSession, wf: Workflow, verbose: bool
) -> list[tuple[Group, list[Task]]]:
    groups = (
        (
            await session.execute(
                select(Group).where(Group.workflow_pk == wf.pk).order_by(Group.position)
            )
        )
        .scalars()
        .all()
    )
    tasks = (
        (await session.execute(select(Task).where(Task.workflow_pk == wf.pk).order_by(Task.pk)))
        .scalars()
        .all()
    )
    by_group: dict[int, list[Task]] = {g.pk: [] for g in groups}
    latest: dict[tuple[int, str], Task] = {}
    for t in tasks:
        if verbose:
            by_group[t.group_pk].append(t)
        else:
            k = (t.group_pk, t.name)
            if k not in latest or t.retry_id > latest[k].retry_id:
                latest[k] = t
    if not verbose:
        for t in sorted(latest.values(), key=lambda t: t.pk):
            by_group[t.group_pk].append(t)
    return [(g, by_group[g.pk]) for g in groups]


def list_query(
    *,
    users: Sequence[str] = (),
    name: str | None = None,
    statuses: Sequence[str] = (),
    pools: Sequence[str] = (),
    submitted_after: float | None = None,
    submitted_before: float | None = None,
    labels: Sequence[tuple[str, str]] = (),
    no_labels: Sequence[str] = (),
    priority: Sequence[str] = (),
    order: str = "desc",
) -> Select[Any]:
    # The list never shows specs: leave the large text columns unloaded.
    q = select(Workflow).options(
        defer(Workflow.spec_json), defer(Workflow.rendered_spec), defer(Workflow.template_spec)
    )
    if users:
        q = q.where(Workflow.submitted_by.in_(list(users)))
    if name:
        q = q.where(Workflow.name.like(f"%{glob_to_like(name)}%", escape="\\"))
    if statuses:
        q = q.where(Workflow.status.in_(list(statuses)))
    if pools:
        q = q.where(Workflow.pool.in_(list(pools)))
    if priority:
        q = q.where(Workflow.priority.in_(list(priority)))
    if submitted_after is not None:
        q = q.where(Workflow.submitted_at >= submitted_after)
    if submitted_before is not None:
        q = q.where(Workflow.submitted_at < submitted_before)
    for key, selector in labels:  # repeated keys are ANDed
        alternatives = (
            selector[1:-1].split("|")
            if selector.startswith("(") and selector.endswith(")")
            else [selector]
        )
        conds = [WorkflowLabel.value.like(glob_to_like(a), escape="\\") for a in alternatives]
        from sqlalchemy import or_

        q = q.where(
            exists().where(
                and_(
                    WorkflowLabel.workflow_pk == Workflow.pk, WorkflowLabel.key == key, or_(*conds)
                )
            )
        )
    for key in no_labels:
        q = q.where(
            ~exists().where(
                and_(WorkflowLabel.workflow_pk == Workflow.pk, WorkflowLabel.key == key)
            )
        )
    q = q.order_by(
        Workflow.submitted_at.asc() if order == "asc" else Workflow.submitted_at.desc(),
        Workflow.pk.desc() if order != "asc" else Workflow.pk.asc(),
    )
    return q


async def events(
    session: AsyncSession, wf: Workflow, task: str | None, retry_id: int | None
) -> Sequence[Event]:
    q = select(Event).where(Event.workflow_pk == wf.pk)
    if task:
        q = q.where(Event.task == task)
    if retry_id is not None:
        q = q.where(Event.retry_id == retry_id)
    return (await session.execute(q.order_by(Event.ts, Event.pk))).scalars().all()
