"""Workflows: submit, validate, list, query, cancel, restart, logs, events, spec."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse, StreamingResponse

from ...spec import SpecError, parse_set_values
from ...spec.model import WorkflowSpec
from ..db import queries
from ..db.models import Task, Workflow
from ..errors import NotFound, ServiceError
from ..lifecycle import submit as submitting
from ..lifecycle.status import TaskStatus, WorkflowStatus
from .deps import IdentityDep, ServiceDep
from .schemas import (
    CancelResponse,
    EventList,
    EventOut,
    GroupOut,
    SubmitBody,
    SubmitResponse,
    TaskOut,
    ValidateResponse,
    WorkflowList,
    WorkflowOut,
    WorkflowSummary,
)

router = APIRouter(prefix="/api", tags=["workflows"])


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    return dict(_pairs_list(items, flag))


def _pairs_list(items: list[str], flag: str) -> list[tuple[str, str]]:
    out = []
    for item in items:
        k, sep, v = item.partition("=")
        if not sep or not k.strip():
            raise ServiceError(f"{flag} expects KEY=VALUE, got {item!r}")
        out.append((k.strip(), v))
    return out


def _summary(wf: Workflow) -> WorkflowSummary:
    return WorkflowSummary(
        id=wf.workflow_id,
        name=wf.name,
        status=wf.status,
        pool=wf.pool,
        priority=wf.priority,
        submitted_by=wf.submitted_by,
        submitted_at=queries.iso(wf.submitted_at) or "",
        started_at=queries.iso(wf.started_at),
        finished_at=queries.iso(wf.finished_at),
        labels=dict(wf.labels or {}),
    )


@router.post("/pool/{pool}/workflow", response_model=SubmitResponse | ValidateResponse)
async def submit_workflow(
    pool: str,
    body: SubmitBody,
    service: ServiceDep,
    identity: IdentityDep,
    dry_run: bool = False,
    validation_only: bool = False,
    priority: str = "NORMAL",
    env_vars: Annotated[list[str], Query()] = [],  # noqa: B006
    label: Annotated[list[str], Query()] = [],  # noqa: B006
) -> SubmitResponse | ValidateResponse:
    try:
        set_values = parse_set_values(body.set_variables, as_string=False, flag="--set")
        set_strings = parse_set_values(
            body.set_string_variables, as_string=True, flag="--set-string"
        )
    except SpecError as exc:
        raise submitting.spec_error(exc) from None
    req = submitting.SubmitRequest(
        text=body.file,
        pool=pool,
        user=identity.user,
        set_values=set_values,
        set_string_values=set_strings,
        template_text=body.uploaded_templated_spec,
        priority=priority.upper(),
        labels=_pairs(label, "--label"),
        env_vars=_pairs(env_vars, "--set-env"),
    )
    lc = service.lifecycle
    if dry_run or validation_only:
        spec, rendered = await submitting.validate(lc, req, service.limits)
        return ValidateResponse(
            valid=True,
            name=spec.name,
            groups=len(spec.groups),
            tasks=len(spec.tasks),
            spec=rendered if dry_run else None,
        )
    wf_id = await submitting.submit(lc, req, service.limits)
    return SubmitResponse(id=wf_id)


@router.post("/pool/{pool}/workflow/{workflow_id}/restart", response_model=SubmitResponse)
async def restart_workflow(
    pool: str, workflow_id: str, service: ServiceDep, identity: IdentityDep
) -> SubmitResponse:
    new_id = await submitting.restart(
        service.lifecycle, workflow_id, identity.user, pool, service.limits
    )
    return SubmitResponse(id=new_id)


def _day(value: str | None, name: str) -> float | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC).timestamp()
    except ValueError:
        raise ServiceError(f"{name} must be a date YYYY-MM-DD, got {value!r}") from None


@router.get("/workflow", response_model=WorkflowList)
async def list_workflows(
    service: ServiceDep,
    identity: IdentityDep,
    users: Annotated[list[str], Query()] = [],  # noqa: B006
    all_users: bool = True,
    name: str | None = None,
    statuses: Annotated[list[str], Query()] = [],  # noqa: B006
    pools: Annotated[list[str], Query()] = [],  # noqa: B006
    priority: Annotated[list[str], Query()] = [],  # noqa: B006
    label: Annotated[list[str], Query()] = [],  # noqa: B006
    no_label: Annotated[list[str], Query()] = [],  # noqa: B006
    submitted_after: str | None = None,
    submitted_before: str | None = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    order: Annotated[str, Query(pattern="^(asc|desc)$")] = "desc",
) -> WorkflowList:
    for s in statuses:
        if s.upper() not in WorkflowStatus.__members__:
            raise ServiceError(
                f"unknown status {s!r}; use one of {', '.join(WorkflowStatus.__members__)}"
            )
    q = queries.list_query(
        users=users if users else ([] if all_users else [identity.user]),
        name=name,
        statuses=[s.upper() for s in statuses],
        pools=pools,
        priority=[p.upper() for p in priority],
        submitted_after=_day(submitted_after, "submitted_after"),
        submitted_before=_day(submitted_before, "submitted_before"),
        labels=list(_pairs_list(label, "--label")),
        no_labels=no_label,
        order=order,
    )
    async with service.sessions() as session:
        rows = (await session.execute(q.offset(offset).limit(limit + 1))).scalars().all()
    return WorkflowList(
        workflows=[_summary(wf) for wf in rows[:limit]],
        offset=offset,
        limit=limit,
        more=len(rows) > limit,
    )


async def _workflow(service: ServiceDep, workflow_id: str) -> Workflow:
    async with service.sessions() as session:
        wf = await queries.get_workflow(session, workflow_id)
    if wf is None:
        raise NotFound(f"workflow {workflow_id!r} not found")
    return wf


@router.get("/workflow/{workflow_id}", response_model=WorkflowOut)
async def query_workflow(
    workflow_id: str, service: ServiceDep, verbose: bool = False, skip_groups: bool = False
) -> WorkflowOut:
    async with service.sessions() as session:
        wf = await queries.get_workflow(session, workflow_id)
        if wf is None:
            raise NotFound(f"workflow {workflow_id!r} not found")
        if skip_groups:
            return WorkflowOut(
                **_summary(wf).model_dump(),
                backend=wf.backend,
                parent_workflow_id=wf.parent_workflow_id,
                canceled_by=wf.canceled_by,
                message=wf.message,
                groups=[],
            )
        detail = await queries.workflow_detail(session, wf, verbose)
        _spec, specs, _ = await service.lifecycle.specs.get(session, wf.pk, wf.spec_json)
    summary = _summary(wf)
    return WorkflowOut(
        **summary.model_dump(),
        backend=wf.backend,
        parent_workflow_id=wf.parent_workflow_id,
        canceled_by=wf.canceled_by,
        message=wf.message,
        groups=[
            GroupOut(
                name=g.name,
                status=g.status,
                upstream=list(g.upstream or []),
                message=g.message,
                tasks=[
                    _task_out(t, specs[t.name].image if t.name in specs else None) for t in tasks
                ],
            )
            for g, tasks in detail
        ],
    )


def _task_out(t: Task, image: str | None) -> TaskOut:
    return TaskOut(
        name=t.name,
        status=t.status,
        exit_code=t.exit_code,
        retry_id=t.retry_id,
        lead=t.lead,
        node=t.node,
        backend=t.backend,
        image=image,
        started_at=queries.iso(t.started_at),
        finished_at=queries.iso(t.finished_at),
        message=t.message,
    )


@router.get("/workflow/{workflow_id}/task/{task}", response_model=TaskOut)
async def query_task(workflow_id: str, task: str, service: ServiceDep) -> TaskOut:
    async with service.sessions() as session:
        wf = await queries.get_workflow(session, workflow_id)
        if wf is None:
            raise NotFound(f"workflow {workflow_id!r} not found")
        detail = await queries.workflow_detail(session, wf, False)
        _, specs, _ = await service.lifecycle.specs.get(session, wf.pk, wf.spec_json)
    for _, tasks in detail:
        for t in tasks:
            if t.name == task:
                return _task_out(t, specs[task].image if task in specs else None)
    raise NotFound(f"workflow {workflow_id} has no task {task!r}")


@router.post("/workflow/{workflow_id}/cancel", response_model=CancelResponse)
async def cancel_workflow(
    workflow_id: str,
    service: ServiceDep,
    identity: IdentityDep,
    message: str | None = None,
    force: bool = False,
) -> CancelResponse:
    wf = await service.lifecycle.cancel(workflow_id, identity.user, message, force)
    return CancelResponse(id=wf.workflow_id, status=wf.status)


async def _log_targets(
    service: ServiceDep, wf: Workflow, task: str | None, retry_id: int | None
) -> list[Task]:
    async with service.sessions() as session:
        detail = await queries.workflow_detail(session, wf, verbose=retry_id is not None)
    out = [
        t
        for _, tasks in detail
        for t in tasks
        if (task is None or t.name == task) and (retry_id is None or t.retry_id == retry_id)
    ]
    if task is not None and not out:
        raise NotFound(
            f"workflow {wf.workflow_id} has no task {task!r}"
            + (f" with retry {retry_id}" if retry_id is not None else "")
        )
    return out


@router.get("/workflow/{workflow_id}/logs", response_class=PlainTextResponse)
async def workflow_logs(
    workflow_id: str,
    service: ServiceDep,
    task_name: str | None = None,
    retry_id: int | None = None,
    last_n_lines: Annotated[int | None, Query(ge=1)] = None,
    follow: bool = False,
) -> StreamingResponse:
    wf = await _workflow(service, workflow_id)
    targets = await _log_targets(service, wf, task_name, retry_id)
    prefix = task_name is None and len({t.name for t in targets}) > 1
    logs = service.logs

    def tag(t: Task, data: bytes) -> bytes:
        if not prefix or not data:
            return data
        head = f"[{t.name}] ".encode()
        lines = data.splitlines(keepends=True)
        return b"".join(head + line for line in lines)

    async def body() -> AsyncIterator[bytes]:
        offsets: dict[int, int] = {}
        pending = b""
        for t in targets:
            data = logs.tail(wf.workflow_id, t.name, t.retry_id, last_n_lines or 0)
            offsets[t.pk] = (
                logs.size(wf.workflow_id, t.name, t.retry_id) if last_n_lines else len(data)
            )
            if data:
                yield tag(t, data if data.endswith(b"\n") or not prefix else data + b"\n")
        if not follow:
            return
        while True:
            async with service.sessions() as session:
                current = await queries.get_workflow(session, workflow_id)
            done = current is None or WorkflowStatus(current.status).finished
            fresh = await _log_targets(service, current or wf, task_name, retry_id)
            for t in fresh:
                off = offsets.setdefault(t.pk, 0)
                data = logs.read(wf.workflow_id, t.name, t.retry_id, off)
                if data:
                    if prefix:
                        cut = data.rfind(b"\n") + 1
                        if cut == 0 and not done:
                            continue
                        data = data[:cut] if cut else data
                    offsets[t.pk] = off + len(data)
                    yield tag(t, data)
            if done:
                if pending:
                    yield pending
                return
            await logs.wait_change(0.5)

    return StreamingResponse(body(), media_type="text/plain; charset=utf-8")


@router.get("/workflow/{workflow_id}/error_logs", response_class=PlainTextResponse)
async def workflow_error_logs(
    workflow_id: str,
    service: ServiceDep,
    task_name: str | None = None,
    retry_id: int | None = None,
    last_n_lines: Annotated[int, Query(ge=1)] = 100,
) -> PlainTextResponse:
    wf = await _workflow(service, workflow_id)
    targets = await _log_targets(service, wf, task_name, retry_id)
    parts: list[str] = []
    for t in targets:
        status = TaskStatus(t.status)
        if not status.failed and status != TaskStatus.RESCHEDULED:
            continue
        parts.append(
            f"[{t.name} retry {t.retry_id}] {t.status} exit code {t.exit_code}"
            + (f": {t.message}" if t.message else "")
            + "\n"
        )
        tail = service.logs.tail(wf.workflow_id, t.name, t.retry_id, last_n_lines).decode(
            "utf-8", "replace"
        )
        parts.extend(f"[{t.name}] {line}\n" for line in tail.splitlines())
    return PlainTextResponse("".join(parts))


@router.get("/workflow/{workflow_id}/events", response_model=EventList)
async def workflow_events(
    workflow_id: str, service: ServiceDep, task_name: str | None = None, retry_id: int | None = None
) -> EventList:
    async with service.sessions() as session:
        wf = await queries.get_workflow(session, workflow_id)
        if wf is None:
            raise NotFound(f"workflow {workflow_id!r} not found")
        rows = await queries.events(session, wf, task_name, retry_id)
    return EventList(
        events=[
            EventOut(
                time=queries.iso(e.ts) or "", task=e.task, retry_id=e.retry_id, message=e.message
            )
            for e in rows
        ]
    )


@router.get("/workflow/{workflow_id}/spec", response_class=PlainTextResponse)
async def workflow_spec(
    workflow_id: str, service: ServiceDep, use_template: bool = False
) -> PlainTextResponse:
    wf = await _workflow(service, workflow_id)
    return PlainTextResponse(wf.template_spec if use_template else wf.rendered_spec)


__all__ = ["WorkflowSpec", "router"]
