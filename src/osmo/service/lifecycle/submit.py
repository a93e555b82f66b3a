"""Submission: render and validate a spec, check it against the pool, store it in one go."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, insert, select, update

from ...protocol import NodeInfo
from ...spec import SpecError, parse_rendered, render
from ...spec.graph import order_groups
from ...spec.model import GroupSpec, WorkflowSpec
from ..auth.credentials import check_data_access, check_references
from ..db.models import Backend, Event, Group, NameCounter, Task, Workflow, WorkflowLabel
from ..errors import Conflict, InvalidSpec, NotFound, ServiceError
from ..scheduler.validation import validate_workflow
from .engine import Lifecycle
from .status import TaskStatus, WorkflowStatus

PRIORITIES = {"HIGH": 0, "NORMAL": 1, "LOW": 2}
SUPPORTED_URL_SCHEMES = ("file://", "s3://", "gs://", "azure://")
REMOTE_URL_SCHEMES = ("s3://", "gs://", "azure://")


@dataclass
class SubmitRequest:
    text: str
    pool: str
    user: str
    set_values: dict[str, Any] = field(default_factory=dict)
    set_string_values: dict[str, Any] = field(default_factory=dict)
    template_text: str | None = None
    priority: str = "NORMAL"
    labels: dict[str, str] = field(default_factory=dict)
    env_vars: dict[str, str] = field(default_factory=dict)


@dataclass
class Limits:
    max_num_tasks: int
    max_retry_per_task: int
    render_timeout: float


def spec_error(exc: SpecError) -> InvalidSpec:
    return InvalidSpec(
        exc.summary() if len(exc.issues) == 1 else f"{len(exc.issues)} errors in workflow spec",
        [i.to_dict() for i in exc.issues],
    )


def _unsupported(task: str, key: str, message: str) -> dict[str, Any]:
    return {
        "message": f"task {task!r}: {message}",
        "task": task,
        "key": key,
        "line": None,
        "column": None,
    }


def check_runnable(spec: WorkflowSpec) -> None:
    """Reject what this server cannot run yet, with the task and key, before storing anything."""
    supported = ", ".join(SUPPORTED_URL_SCHEMES)
    errors: list[dict[str, Any]] = []
    for task in spec.tasks:
        items = [("inputs", i, x.kind, x.url) for i, x in enumerate(task.inputs)]
        items += [("outputs", i, x.kind, x.url) for i, x in enumerate(task.outputs)]
        for section, idx, kind, url in items:
            key = f"{section}[{idx}].{kind}"
            if kind == "url" and url and not url.startswith(SUPPORTED_URL_SCHEMES):
                msg = f"{section[:-1]} url {url!r}: storage scheme not supported (supported: {supported})"
                errors.append(_unsupported(task.name, key, msg))
        for idx, f in enumerate(task.files):
            if f.localpath is not None:
                msg = f"file {f.path!r} uses localpath {f.localpath!r}; the client must inline it"
                errors.append(_unsupported(task.name, f"files[{idx}].localpath", msg))
    if errors:
        summary = (
            errors[0]["message"] if len(errors) == 1 else f"{len(errors)} errors in workflow spec"
        )
        raise InvalidSpec(summary, errors)


async def validate(lc: Lifecycle, req: SubmitRequest, limits: Limits) -> tuple[WorkflowSpec, str]:
    """The validated spec and its rendered text (raises ``ServiceError`` subclasses)."""
    if req.priority not in PRIORITIES:
        raise ServiceError(f"invalid priority {req.priority!r}; use HIGH, NORMAL or LOW")
    try:
        rendered = render(
            req.text, req.set_values, req.set_string_values, max_seconds=limits.render_timeout
        )
        result = parse_rendered(rendered, max_num_tasks=limits.max_num_tasks)
    except SpecError as exc:
        raise spec_error(exc) from None
    check_runnable(result.spec)
    await check_pool(lc, result.spec, req.pool, req.priority)
    async with lc.sessions() as session:
        missing = await check_references(session, req.user, result.spec.tasks)
        missing += await check_data_access(session, req.user, result.spec.tasks)
        missing += await check_datasets(session, result.spec.tasks)
    if missing:
        message = (
            missing[0]["message"]
            if len(missing) == 1
            else f"{len(missing)} errors in workflow spec"
        )
        raise InvalidSpec(message, missing)
    return result.spec, rendered.text


async def check_pool(lc: Lifecycle, spec: WorkflowSpec, pool_name: str, priority: str) -> None:
    """The pool exists, accepts work, and can run every task of the spec (scheduler rules)."""
    async with lc.sessions() as session:
        pools = await lc.pools.load(session)
        pool = pools.get(pool_name)
        if pool is None:
            names = ", ".join(sorted(pools)) or "none"
            raise NotFound(f"pool {pool_name!r} does not exist; available pools: {names}")
        if pool.enable_maintenance:
            raise Conflict(f"pool {pool_name!r} is in maintenance and does not accept workflows")
        nodes = lc.nodes_of(pool.backend)
        if nodes is None:  # not connected since the server started: what it last reported
            backend = await session.get(Backend, pool.backend)
            nodes = [NodeInfo.model_validate(n) for n in (backend.nodes if backend else [])]
    errors = validate_workflow(spec, pool, priority, nodes)
    if errors:
        message = (
            errors[0]["message"] if len(errors) == 1 else f"{len(errors)} errors in workflow spec"
        )
        raise InvalidSpec(message, errors)


async def check_datasets(session: Any, tasks: list[Any]) -> list[dict[str, Any]]:
    """Input datasets (and their version or tag) must exist; output names must be valid."""
    from .datasets import NAME_RE, resolve_version

    errors = []
    for t in tasks:
        for idx, i in enumerate(t.inputs):
            if i.kind == "dataset" and i.dataset is not None:
                try:
                    await resolve_version(session, i.dataset.name, i.dataset.version)
                except ServiceError as exc:
                    errors.append(_unsupported(t.name, f"inputs[{idx}].dataset", exc.message))
        for idx, o in enumerate(t.outputs):
            if o.kind == "dataset" and o.dataset is not None and not NAME_RE.match(o.dataset.name):
                errors.append(
                    _unsupported(
                        t.name,
                        f"outputs[{idx}].dataset",
                        f"invalid dataset name {o.dataset.name!r}",
                    )
                )
    return errors


async def _next_seq(session: Any, name: str) -> int:
    row = (
        await session.execute(
            update(NameCounter)
            .where(NameCounter.name == name)
            .values(last=NameCounter.last + 1)
            .returning(NameCounter.last)
        )
    ).scalar_one_or_none()
    if row is not None:
        return int(row)
    session.add(NameCounter(name=name, last=1))
    await session.flush()
    return 1


async def store(
    lc: Lifecycle,
    spec: WorkflowSpec,
    *,
    rendered: str,
    template: str,
    pool: str,
    priority: str,
    user: str,
    labels: dict[str, str],
    env_vars: dict[str, str],
    limits: Limits,
    parent: str | None = None,
) -> str:
    """Insert the workflow with all its groups and tasks in one transaction; returns its id."""
    now = time.time()
    merged_labels = {**spec.labels, **labels}
    # Everything that does not need the database is prepared before taking the write lock;
    # inserts are Core statements (no ORM unit of work for rows nobody reads back here).
    spec_json = spec.model_dump_json()
    rank = PRIORITIES[priority]
    group_rows = [
        {
            "name": g.name,
            "position": i,
            "status": (TaskStatus.WAITING if g.upstream else TaskStatus.SCHEDULING).value,
            "upstream": g.upstream,
            "lead_task": g.lead.name,
            "barrier": g.barrier,
            "ignore_nonlead": g.ignore_nonlead_status,
            "pool": pool,
            "priority_rank": rank,
            "submitted_at": now,
            "queued_at": None if g.upstream else now,
        }
        for i, g in enumerate(spec.groups)
    ]
    tables: dict[type[Any], Table] = {}
    for model in (Workflow, Group, Task, WorkflowLabel, Event):
        table = model.__table__
        assert isinstance(table, Table)
        tables[model] = table
    async with lc.txn() as (session, fx):
        seq = await _next_seq(session, spec.name)
        wf_id = f"{spec.name}-{seq}"
        wf_pk = (
            await session.execute(
                insert(tables[Workflow]).returning(tables[Workflow].c.pk),
                [
                    {
                        "workflow_id": wf_id,
                        "name": spec.name,
                        "seq": seq,
                        "status": WorkflowStatus.PENDING.value,
                        "pool": pool,
                        "priority": priority,
                        "submitted_by": user,
                        "submitted_at": now,
                        "spec_json": spec_json,
                        "rendered_spec": rendered,
                        "template_spec": template,
                        "labels": merged_labels,
                        "env_vars": env_vars,
                        "parent_workflow_id": parent,
                        "exec_timeout": spec.timeout.exec_timeout,
                        "queue_timeout": spec.timeout.queue_timeout,
                        "max_retry_per_task": limits.max_retry_per_task,
                    }
                ],
            )
        ).scalar_one()
        if merged_labels:
            await session.execute(
                insert(tables[WorkflowLabel]),
                [{"workflow_pk": wf_pk, "key": k, "value": v} for k, v in merged_labels.items()],
            )
        for row in group_rows:
            row["workflow_pk"] = wf_pk
        group_t = tables[Group]
        result = await session.execute(
            insert(group_t).returning(group_t.c.pk, group_t.c.name), group_rows
        )
        pks = {name: pk for pk, name in result.all()}
        fx.queued.extend(pks[g.name] for g in spec.groups if not g.upstream)
        task_rows = [
            {
                "workflow_pk": wf_pk,
                "group_pk": pks[g.name],
                "name": t.name,
                "retry_id": 0,
                "status": (TaskStatus.WAITING if g.upstream else TaskStatus.SCHEDULING).value,
                "lead": t.lead,
                "created_at": now,
            }
            for g in spec.groups
            for t in g.tasks
        ]
        await session.execute(insert(tables[Task]), task_rows)
        await session.execute(
            insert(tables[Event]),
            [
                {
                    "workflow_pk": wf_pk,
                    "ts": now,
                    "task": None,
                    "retry_id": None,
                    "message": f"submitted by {user} to pool {pool} with priority {priority}",
                }
            ],
        )
        fx.wake_scheduler = True
        fx.changed_workflows.add(wf_id)
    return wf_id


async def submit(lc: Lifecycle, req: SubmitRequest, limits: Limits) -> str:
    spec, rendered = await validate(lc, req, limits)
    return await store(
        lc,
        spec,
        rendered=rendered,
        template=req.template_text or req.text,
        pool=req.pool,
        priority=req.priority,
        user=req.user,
        labels=req.labels,
        env_vars=req.env_vars,
        limits=limits,
    )


async def restart(
    lc: Lifecycle, workflow_id: str, user: str, pool: str | None, limits: Limits
) -> str:
    """A new workflow of the groups that did not complete, reading completed outputs of the old one."""
    async with lc.sessions() as session:
        old = (
            await session.execute(select(Workflow).where(Workflow.workflow_id == workflow_id))
        ).scalar_one_or_none()
        if old is None:
            raise NotFound(f"workflow {workflow_id!r} not found")
        status = WorkflowStatus(old.status)
        if not status.finished or status == WorkflowStatus.COMPLETED:
            raise Conflict(
                f"workflow {workflow_id} is {old.status}; only failed workflows can be restarted"
            )
        statuses = dict(
            (
                await session.execute(
                    select(Group.name, Group.status).where(Group.workflow_pk == old.pk)
                )
            ).all()
        )
        spec, _, _ = await lc.specs.get(session, old.pk, old.spec_json)
        target_pool = pool or old.pool
        if await lc.pools.get(session, target_pool) is None:
            raise NotFound(f"pool {target_pool!r} does not exist")
    completed_tasks = {
        t.name
        for g in spec.groups
        if statuses.get(g.name) == TaskStatus.COMPLETED.value
        for t in g.tasks
    }
    groups: list[GroupSpec] = []
    for g in spec.groups:
        if statuses.get(g.name) == TaskStatus.COMPLETED.value:
            continue
        new_group = g.model_copy(deep=True)
        for t in new_group.tasks:
            for i in t.inputs:
                if i.kind == "task" and i.workflow_id is None and i.task in completed_tasks:
                    i.workflow_id = old.workflow_id
        groups.append(new_group)
    problems, ordered = order_groups(groups, spec.declared_as)
    if problems:
        raise ServiceError(f"cannot restart {workflow_id}: {problems[0][0]}")
    new_spec = spec.model_copy(update={"groups": ordered})
    return await store(
        lc,
        new_spec,
        rendered=old.rendered_spec,
        template=old.template_spec,
        pool=target_pool,
        priority=old.priority,
        user=user,
        labels=dict(old.labels or {}),
        env_vars=dict(old.env_vars or {}),
        limits=limits,
        parent=old.workflow_id,
    )
