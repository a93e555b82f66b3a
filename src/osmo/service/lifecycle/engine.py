"""Task, group and workflow state transitions (reference §2).

Every change runs in one transaction under one lock, so transitions are serialized and a crash
leaves either the state before or the state after. Side effects (launch and stop messages,
scheduler wake-ups) are collected in ``Effects`` and carried out only after the commit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import Table, bindparam, func, insert, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ...protocol import (
    DatasetOutput,
    InputSource,
    LaunchGroup,
    NodeInfo,
    OutputTarget,
    TaskFile,
    TaskLaunchSpec,
    TaskRef,
    TaskReport,
)
from ...spec.model import GroupSpec, TaskSpec, WorkflowSpec
from ..auth.credentials import TaskSecrets, task_secrets
from ..auth.secrets import SecretBox
from ..db.models import Event, Group, Task, Workflow
from ..scheduler.pools import PoolCache
from .effects import Effects
from .exit_actions import resolve_action
from .status import (
    ACTIVE,
    STATUS_EXIT_CODES,
    ExitCode,
    TaskStatus,
    WorkflowStatus,
    aggregate_workflow,
    sibling_status,
)

log = logging.getLogger(__name__)

_RANK = {
    TaskStatus.SUBMITTING: 0,
    TaskStatus.WAITING: 1,
    TaskStatus.SCHEDULING: 2,
    TaskStatus.PROCESSING: 3,
    TaskStatus.INITIALIZING: 4,
    TaskStatus.RUNNING: 5,
}
REPORTS_PER_TXN = 20
PROGRESS = frozenset({"INITIALIZING", "RUNNING"})
PRE_RUNNING = frozenset({"SCHEDULING", "PROCESSING", "INITIALIZING"})
UNFINISHED = [s.value for s in TaskStatus if not s.finished]


class SpecCache:
    """Parsed specs of recently used workflows (the JSON is immutable once stored)."""

    def __init__(self, size: int = 512):
        self._items: OrderedDict[
            int, tuple[WorkflowSpec, dict[str, TaskSpec], dict[str, list[str]]]
        ] = OrderedDict()
        self._size = size
        self._groups: dict[int, dict[str, GroupSpec]] = {}

    def cached_groups(self, wf_pk: int) -> dict[str, GroupSpec] | None:
        return self._groups.get(wf_pk)

    async def groups(self, session: AsyncSession, wf_pk: int) -> dict[str, GroupSpec]:
        """Groups of a workflow by name."""
        groups = self._groups.get(wf_pk)
        if groups is None:
            spec, _, _ = await self.get(session, wf_pk)
            groups = {g.name: g for g in spec.groups}
            self._groups[wf_pk] = groups
            if len(self._groups) > self._size:
                self._groups.pop(next(iter(self._groups)))
        return groups

    async def get(
        self, session: AsyncSession, wf_pk: int, spec_json: str | None = None
    ) -> tuple[WorkflowSpec, dict[str, TaskSpec], dict[str, list[str]]]:
        item = self._items.get(wf_pk)
        if item is not None:
            self._items.move_to_end(wf_pk)
            return item
        if spec_json is None:
            spec_json = (
                await session.execute(select(Workflow.spec_json).where(Workflow.pk == wf_pk))
            ).scalar_one()
        spec = WorkflowSpec.model_validate_json(spec_json)
        tasks = {t.name: t for g in spec.groups for t in g.tasks}
        downstream: dict[str, list[str]] = {g.name: [] for g in spec.groups}
        for g in spec.groups:
            for u in g.upstream:
                downstream.setdefault(u, []).append(g.name)
        item = (spec, tasks, downstream)
        self._items[wf_pk] = item
        if len(self._items) > self._size:
            self._items.popitem(last=False)
        return item


class Lifecycle:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        data_url: str,
        dispatch: Callable[[Effects], Awaitable[None]],
    ):
        self.sessions = sessions
        self.data_url = data_url.rstrip("/")
        self._dispatch = dispatch
        self._lock = asyncio.Lock()
        self.specs = SpecCache()
        self.pools = PoolCache()
        self.secrets: SecretBox | None = None  # set by the service
        self.dataset_bucket: str | None = None  # set by the service
        self.dataset_credentials: list[dict[str, str]] = []  # the bucket's credential, if any
        # Credentials of the server's own stores (workflow_data) that every task needs.
        self.store_credentials: list[dict[str, str]] = []
        # Credential values to mask in each workflow's logs (filled as tasks launch).
        self.masks: dict[str, set[str]] = {}
        # Live node lists of connected backends (set by the service), for submit-time checks.
        self.nodes_of: Callable[[str], list[NodeInfo] | None] = lambda backend: None

    @asynccontextmanager
    async def txn(self) -> AsyncIterator[tuple[AsyncSession, Effects]]:
        effects = Effects()
        async with self._lock, self.sessions() as session, session.begin():
            yield session, effects
        await self._dispatch(effects)

    # ---- helpers --------------------------------------------------------------------------

    async def pool_defaults(self, session: AsyncSession, pool: str) -> dict[str, Any]:
        cfg = await self.pools.get(session, pool)
        return dict(cfg.default_exit_actions) if cfg else {}

    def event(
        self,
        session: AsyncSession,
        wf: Workflow,
        message: str,
        task: str | None = None,
        retry_id: int | None = None,
    ) -> None:
        session.add(
            Event(workflow_pk=wf.pk, ts=time.time(), task=task, retry_id=retry_id, message=message)
        )

    def launch_spec(
        self,
        workflow_id: str,
        env_vars: dict[str, str] | None,
        group: str,
        task: TaskSpec,
        retry_id: int,
        node: str | None,
        secrets: TaskSecrets | None = None,
        datasets: dict[int, tuple[str, list[Any]]] | None = None,
    ) -> TaskLaunchSpec:
        env = dict(task.environment)
        env.update({str(k): str(v) for k, v in (env_vars or {}).items()})
        if secrets is not None:
            env.update(secrets.environment)
        inputs: list[InputSource] = []
        for i in task.inputs:
            if i.kind == "task":
                source_wf = i.workflow_id or workflow_id
                inputs.append(
                    InputSource(
                        name=i.task, url=f"{self.data_url}/{source_wf}/{i.task}/", regex=i.regex
                    )
                )
            elif i.kind == "url" and i.url:
                inputs.append(InputSource(name=None, url=i.url, regex=i.regex))
            elif i.kind == "dataset" and datasets is not None and len(inputs) in datasets:
                bucket, manifest = datasets[len(inputs)]
                inputs.append(InputSource(name=None, url=bucket, regex=i.regex, manifest=manifest))
        files = [
            TaskFile(path=f.path, contents=f.contents or "", base64=f.base64) for f in task.files
        ]
        if secrets is not None:
            files += [TaskFile(path=path, contents=value) for path, value in secrets.files]
        return TaskLaunchSpec(
            workflow_id=workflow_id,
            task=task.name,
            retry_id=retry_id,
            group=group,
            lead=task.lead,
            image=task.image,
            command=task.command,
            args=task.args,
            environment=env,
            files=files,
            inputs=inputs,
            output_url=f"{self.data_url}/{workflow_id}/{task.name}/",
            outputs=[
                OutputTarget(url=o.url, regex=o.regex)
                for o in task.outputs
                if o.kind == "url" and o.url
            ],
            cpu=task.resources.cpu,
            gpu=task.resources.gpu,
            memory_bytes=task.resources.memory_bytes,
            node=node,
            # For backends that template and check what they create (kubernetes executor).
            storage_bytes=task.resources.storage_bytes,
            platform=task.resources.platform,
            nodes_excluded=list(task.resources.nodes_excluded),
            privileged=task.privileged,
            host_network=task.host_network,
            volume_mounts=list(task.volume_mounts),
            cache_size=task.cache_size,
            dataset_outputs=[
                DatasetOutput(
                    name=o.dataset.name,
                    tag=o.dataset.version,
                    regex=o.regex or o.dataset.regex,
                    metadata=o.dataset.metadata,
                    labels=o.dataset.labels,
                )
                for o in task.outputs
                if o.kind == "dataset" and o.dataset is not None
            ],
            dataset_bucket=self.dataset_bucket,
            data_credentials=(secrets.data if secrets else [])
            + self.dataset_credentials
            + self.store_credentials,
            mask=sorted(secrets.mask) if secrets else [],
        )

    async def masks_for(self, workflow_id: str) -> set[str]:
        """Credential values to mask in a workflow's logs (derived again after a restart)."""
        known = self.masks.get(workflow_id)
        if known is not None:
            return known
        found: set[str] = set()
        if self.secrets is not None:
            async with self.sessions() as session:
                wf = (
                    await session.execute(
                        select(Workflow).where(Workflow.workflow_id == workflow_id)
                    )
                ).scalar_one_or_none()
                if wf is not None:
                    _, specs, _ = await self.specs.get(session, wf.pk, wf.spec_json)
                    for t in specs.values():
                        if t.credentials or t.inputs or t.outputs:
                            found |= (
                                await task_secrets(session, self.secrets, wf.submitted_by, t)
                            ).mask
        self.masks[workflow_id] = found
        return found

    async def launch_for(
        self,
        session: AsyncSession,
        workflow_id: str,
        env_vars: dict[str, str] | None,
        user: str,
        group: str,
        task: TaskSpec,
        retry_id: int,
        node: str | None,
    ) -> TaskLaunchSpec:
        """``launch_spec`` with the submitter's credentials the task needs resolved now."""
        secrets = None
        needs_urls = any(i.kind == "url" for i in task.inputs) or any(
            o.kind == "url" for o in task.outputs
        )
        if self.secrets is not None and (task.credentials or needs_urls):
            secrets = await task_secrets(session, self.secrets, user, task)
            if secrets.mask:
                self.masks.setdefault(workflow_id, set()).update(secrets.mask)
        datasets: dict[int, tuple[str, list[Any]]] = {}
        for idx, i in enumerate(task.inputs):
            if i.kind == "dataset" and i.dataset is not None:
                from .datasets import resolve_version

                ds, version = await resolve_version(session, i.dataset.name, i.dataset.version)
                datasets[idx] = (ds.bucket, list(version.manifest))
        return self.launch_spec(
            workflow_id, env_vars, group, task, retry_id, node, secrets, datasets
        )

    # ---- reports from backends ------------------------------------------------------------

    async def apply_reports(self, backend: str, reports: list[TaskReport]) -> None:
        # Progress reports (INITIALIZING, RUNNING) are the bulk of the traffic and change only
        # their own task, group and workflow forward: applied with a few set-based statements.
        # Final reports run the full rules in small transactions, so the scheduler's admissions
        # never wait behind a long batch.
        progress = [r for r in reports if r.status in PROGRESS and not r.datasets]
        if progress:
            async with self.txn() as (session, fx):
                await self._apply_progress(session, fx, progress)
        final = [r for r in reports if not (r.status in PROGRESS and not r.datasets)]
        for start in range(0, len(final), REPORTS_PER_TXN):
            part = final[start : start + REPORTS_PER_TXN]
            async with self.txn() as (session, fx):
                loaded = await self._load_tasks(session, part)
                for report in part:
                    await self.apply_report(session, fx, backend, report, loaded.get(report.key()))

    async def _apply_progress(
        self, session: AsyncSession, fx: Effects, reports: list[TaskReport]
    ) -> None:
        rows = (
            await session.execute(
                select(
                    Task.pk,
                    Task.name,
                    Task.retry_id,
                    Task.status,
                    Task.node,
                    Group.pk,
                    Group.status,
                    Workflow.pk,
                    Workflow.workflow_id,
                    Workflow.status,
                )
                .join(Group, Task.group_pk == Group.pk)
                .join(Workflow, Task.workflow_pk == Workflow.pk)
                .where(
                    Workflow.workflow_id.in_({r.workflow_id for r in reports}),
                    Task.name.in_({r.task for r in reports}),
                )
            )
        ).all()
        by_key = {(r[8], r[1], r[2]): r for r in rows}
        now = time.time()
        task_rows: dict[int, dict[str, Any]] = {}
        group_rank: dict[int, tuple[int, str, str]] = {}  # pk -> (rank, status, old)
        running_wfs: dict[int, str] = {}
        events = []
        for rep in reports:
            row = by_key.get(rep.key())
            if row is None:
                continue
            t_pk, name, retry, t_status, t_node, g_pk, g_status, wf_pk, wf_id, wf_status = row
            new = TaskStatus(rep.status)
            current = TaskStatus(t_status)
            if current.finished or _RANK.get(new, 0) <= _RANK.get(current, 0):
                continue
            prev = task_rows.get(t_pk)
            if prev is not None and _RANK[TaskStatus(prev["b_status"])] >= _RANK[new]:
                continue
            task_rows[t_pk] = {
                "b_pk": t_pk,
                "b_status": new.value,
                "b_node": rep.node or t_node,
                "b_started": (rep.started_at or now) if new == TaskStatus.RUNNING else None,
            }
            gs = TaskStatus(g_status)
            best = group_rank.get(g_pk)
            if (
                not gs.finished
                and _RANK.get(new, 0) > _RANK.get(gs, 0)
                and (best is None or best[0] < _RANK[new])
            ):
                group_rank[g_pk] = (_RANK[new], new.value, g_status)
            if wf_status == WorkflowStatus.PENDING.value:
                running_wfs[wf_pk] = wf_id
            if new == TaskStatus.RUNNING:
                where = f" on {rep.node}" if rep.node else ""
                events.append(
                    {
                        "workflow_pk": wf_pk,
                        "ts": now,
                        "task": name,
                        "retry_id": retry,
                        "message": f"task {name} is RUNNING{where}",
                    }
                )
        if not task_rows:
            return
        tasks_t, groups_t = Task.__table__, Group.__table__
        assert isinstance(tasks_t, Table) and isinstance(groups_t, Table)
        conn = await session.connection()
        await conn.execute(
            update(tasks_t)
            .where(
                tasks_t.c.pk == bindparam("b_pk"),
                # executemany cannot expand IN lists: spell the allowed states out.
                or_(*(tasks_t.c.status == literal(v) for v in sorted(PRE_RUNNING))),
            )
            .values(
                status=bindparam("b_status"),
                node=bindparam("b_node"),
                started_at=func.coalesce(bindparam("b_started"), tasks_t.c.started_at),
            ),
            list(task_rows.values()),
        )
        for status in {v[1] for v in group_rank.values()}:
            pks = [pk for pk, v in group_rank.items() if v[1] == status]
            lower = [s.value for s, r in _RANK.items() if r < _RANK[TaskStatus(status)]]
            values: dict[str, Any] = {"status": status}
            if status == TaskStatus.RUNNING.value:
                values["running_at"] = func.coalesce(groups_t.c.running_at, now)
            await conn.execute(
                update(groups_t)
                .where(groups_t.c.pk.in_(pks), groups_t.c.status.in_(lower))
                .values(**values)
            )
        if running_wfs:
            await session.execute(
                update(Workflow)
                .where(
                    Workflow.pk.in_(list(running_wfs)),
                    Workflow.status == WorkflowStatus.PENDING.value,
                )
                .values(
                    status=WorkflowStatus.RUNNING.value,
                    started_at=func.coalesce(Workflow.started_at, now),
                )
                .execution_options(synchronize_session=False)
            )
            fx.changed_workflows.update(running_wfs.values())
        if events:
            await session.execute(insert(Event), events)

    async def _load_tasks(
        self, session: AsyncSession, refs: list[TaskReport]
    ) -> dict[tuple[str, str, int], tuple[Task, Group, Workflow]]:
        """Task, group and workflow rows of many reports in one query (one batch, one trip)."""
        wf_ids = {r.workflow_id for r in refs}
        names = {r.task for r in refs}
        rows = (
            await session.execute(
                select(Task, Group, Workflow)
                .join(Group, Task.group_pk == Group.pk)
                .join(Workflow, Task.workflow_pk == Workflow.pk)
                .where(Workflow.workflow_id.in_(wf_ids), Task.name.in_(names))
            )
        ).all()
        return {(wf.workflow_id, t.name, t.retry_id): (t, g, wf) for t, g, wf in rows}

    async def _load_task(
        self, session: AsyncSession, ref: TaskRef
    ) -> tuple[Task, Group, Workflow] | None:
        row = (
            await session.execute(
                select(Task, Group, Workflow)
                .join(Group, Task.group_pk == Group.pk)
                .join(Workflow, Task.workflow_pk == Workflow.pk)
                .where(
                    Workflow.workflow_id == ref.workflow_id,
                    Task.name == ref.task,
                    Task.retry_id == ref.retry_id,
                )
            )
        ).first()
        if row is None:
            return None
        return row[0], row[1], row[2]

    async def apply_report(
        self,
        session: AsyncSession,
        fx: Effects,
        backend: str,
        report: TaskReport,
        preloaded: tuple[Task, Group, Workflow] | None = None,
    ) -> None:
        loaded = preloaded or await self._load_task(session, report)
        if loaded is None:
            log.info(
                "report for unknown task %s/%s/%s ignored",
                report.workflow_id,
                report.task,
                report.retry_id,
            )
            return
        task, group, wf = loaded
        current = TaskStatus(task.status)
        if current.finished:
            return  # late or duplicate report: the task's outcome is already recorded
        try:
            status = TaskStatus(report.status)
        except ValueError:
            log.warning("unknown status %r from backend %s", report.status, backend)
            return
        now = time.time()
        if not status.finished:
            if _RANK.get(status, 0) <= _RANK.get(current, 0):
                return
            task.status = status.value
            task.node = report.node or task.node
            if status == TaskStatus.RUNNING:
                task.started_at = report.started_at or now
            group_status = TaskStatus(group.status)
            if not group_status.finished and _RANK.get(status, 0) > _RANK.get(group_status, 0):
                group.status = status.value
                if status == TaskStatus.RUNNING and group.running_at is None:
                    group.running_at = now
            if wf.status == WorkflowStatus.PENDING and status in (
                TaskStatus.RUNNING,
                TaskStatus.INITIALIZING,
            ):
                wf.status = WorkflowStatus.RUNNING.value
                wf.started_at = wf.started_at or now
                fx.changed_workflows.add(wf.workflow_id)
            if status == TaskStatus.RUNNING:
                self.event(
                    session,
                    wf,
                    f"task {task.name} is RUNNING" + (f" on {task.node}" if task.node else ""),
                    task.name,
                    task.retry_id,
                )
            return
        if status == TaskStatus.COMPLETED and report.datasets:
            await self._record_datasets(session, wf, task, report.datasets)
        if task.started_at is None and report.started_at:
            # It ran, even if it ended before RUNNING could be reported: record both.
            task.started_at = report.started_at
            where = f" on {report.node}" if report.node else ""
            session.add(
                Event(
                    workflow_pk=wf.pk,
                    ts=report.started_at,
                    task=task.name,
                    retry_id=task.retry_id,
                    message=f"task {task.name} is RUNNING{where}",
                )
            )
        await self.finish_task(
            session,
            fx,
            wf,
            group,
            task,
            status,
            report.exit_code,
            report.message,
            report.finished_at,
        )

    async def _record_datasets(
        self, session: AsyncSession, wf: Workflow, task: Task, produced: list[dict[str, Any]]
    ) -> None:
        """New dataset versions a completed task produced (its output folder, uploaded)."""
        from .datasets import check_manifest, create_version

        for d in produced:
            try:
                manifest = check_manifest(d.get("manifest", []))
                v = await create_version(
                    session,
                    name=str(d["name"]),
                    bucket=self.dataset_bucket or "",
                    user=wf.submitted_by,
                    manifest=manifest,
                    tag=d.get("tag"),
                    metadata=d.get("metadata") or {},
                    labels=d.get("labels") or {},
                    source=f"{wf.workflow_id}/{task.name}",
                    present=set(d.get("present") or []),
                )
                self.event(
                    session,
                    wf,
                    f"task {task.name} created dataset {d['name']} version {v.version}",
                    task.name,
                    task.retry_id,
                )
            except Exception as exc:
                log.warning(
                    "dataset output of %s/%s not recorded: %s", wf.workflow_id, task.name, exc
                )
                self.event(
                    session,
                    wf,
                    f"task {task.name}: dataset output {d.get('name')} not recorded: {exc}",
                    task.name,
                    task.retry_id,
                )

    async def finish_task(
        self,
        session: AsyncSession,
        fx: Effects,
        wf: Workflow,
        group: Group,
        task: Task,
        reported: TaskStatus,
        exit_code: int | None,
        message: str | None,
        finished_at: float | None = None,
    ) -> None:
        now = time.time()
        _, specs, _ = await self.specs.get(session, wf.pk, None)
        tspec = specs.get(task.name)
        if reported in (TaskStatus.COMPLETED, TaskStatus.FAILED):
            code = (
                exit_code
                if exit_code is not None
                else (0 if reported == TaskStatus.COMPLETED else ExitCode.UNKNOWN)
            )
        else:
            code = (
                exit_code
                if exit_code is not None
                else STATUS_EXIT_CODES.get(reported, ExitCode.UNKNOWN)
            )
        action = resolve_action(tspec, await self.pool_defaults(session, wf.pool), code)
        if (
            action == "RESCHEDULE"
            and tspec is not None
            and task.retry_id < wf.max_retry_per_task
            and not TaskStatus(group.status).finished
        ):
            task.status = TaskStatus.RESCHEDULED.value
            task.exit_code = code
            task.finished_at = finished_at or now
            task.message = message
            retry = Task(
                workflow_pk=wf.pk,
                group_pk=group.pk,
                name=task.name,
                retry_id=task.retry_id + 1,
                status=TaskStatus.PROCESSING.value,
                lead=task.lead,
                backend=task.backend,
                node=task.node,
                created_at=now,
            )
            session.add(retry)
            self.event(
                session,
                wf,
                f"task {task.name} exited with code {code}; rescheduled as retry {retry.retry_id}",
                task.name,
                task.retry_id,
            )
            if task.backend:
                launch = LaunchGroup(
                    workflow_id=wf.workflow_id,
                    group=group.name,
                    barrier=False,
                    tasks=[
                        await self.launch_for(
                            session,
                            wf.workflow_id,
                            wf.env_vars,
                            wf.submitted_by,
                            group.name,
                            tspec,
                            retry.retry_id,
                            task.node,
                        )
                    ],
                )
                fx.launches.append((task.backend, launch))
            fx.changed_workflows.add(wf.workflow_id)
            return
        if action == "COMPLETE":
            final = TaskStatus.COMPLETED
        elif reported not in (TaskStatus.COMPLETED, TaskStatus.FAILED):
            final = reported
        else:
            final = TaskStatus.FAILED
        task.status = final.value
        task.exit_code = code
        task.finished_at = finished_at or now
        task.message = message
        text = f"task {task.name} finished: {final.value} (exit code {code})"
        if message:
            text += f": {message}"
        self.event(session, wf, text, task.name, task.retry_id)
        fx.changed_workflows.add(wf.workflow_id)
        if TaskStatus(group.status).finished:
            return
        if task.lead:
            await self.end_group(
                session, fx, wf, group, final, f"lead task {task.name} finished", exclude=task.pk
            )
        elif final.failed and not group.ignore_nonlead:
            await self.end_group(
                session,
                fx,
                wf,
                group,
                TaskStatus.FAILED,
                f"task {task.name} failed and the group is strict",
                exclude=task.pk,
            )

    async def end_group(
        self,
        session: AsyncSession,
        fx: Effects,
        wf: Workflow,
        group: Group,
        status: TaskStatus,
        reason: str,
        exclude: int | None = None,
        tasks_status: TaskStatus | None = None,
    ) -> None:
        """Finish a group: stop its other tasks, then promote or fail what depends on it."""
        now = time.time()
        group.status = status.value
        group.finished_at = now
        group.message = reason
        others = (
            (
                await session.execute(
                    select(Task).where(
                        Task.group_pk == group.pk,
                        Task.status.in_(UNFINISHED),
                        Task.pk != (exclude or -1),
                    )
                )
            )
            .scalars()
            .all()
        )
        sibling = tasks_status or sibling_status(status)
        for t in others:
            was = TaskStatus(t.status)
            t.status = sibling.value
            t.finished_at = now
            t.exit_code = STATUS_EXIT_CODES.get(sibling, t.exit_code)
            t.message = reason
            if was in ACTIVE:
                fx.stop(
                    t.backend,
                    TaskRef(workflow_id=wf.workflow_id, task=t.name, retry_id=t.retry_id),
                    reason,
                )
        self.event(session, wf, f"group {group.name} finished: {status.value} ({reason})")
        fx.released.append(group.pk)
        fx.wake_scheduler = True  # its capacity is free again
        if status == TaskStatus.COMPLETED:
            await self._promote_downstream(session, fx, wf, group)
        else:
            await self._fail_downstream(session, fx, wf, group)
        await self.refresh_workflow(session, fx, wf)

    async def _promote_downstream(
        self, session: AsyncSession, fx: Effects, wf: Workflow, group: Group
    ) -> None:
        _, _, downstream = await self.specs.get(session, wf.pk, None)
        names = downstream.get(group.name, [])
        if not names:
            return
        candidates = (
            (
                await session.execute(
                    select(Group).where(
                        Group.workflow_pk == wf.pk,
                        Group.name.in_(names),
                        Group.status == TaskStatus.WAITING.value,
                    )
                )
            )
            .scalars()
            .all()
        )
        if not candidates:
            return
        needed = {u for g in candidates for u in g.upstream}
        done = set(
            (
                await session.execute(
                    select(Group.name).where(
                        Group.workflow_pk == wf.pk,
                        Group.name.in_(needed),
                        Group.status == TaskStatus.COMPLETED.value,
                    )
                )
            )
            .scalars()
            .all()
        )
        done.add(group.name)
        now = time.time()
        ready = [g for g in candidates if all(u in done for u in g.upstream)]
        for g in ready:
            g.status = TaskStatus.SCHEDULING.value
            g.queued_at = now
            fx.queued.append(g.pk)
        if ready:
            await session.execute(
                update(Task)
                .where(
                    Task.group_pk.in_([g.pk for g in ready]),
                    Task.status == TaskStatus.WAITING.value,
                )
                .values(status=TaskStatus.SCHEDULING.value)
            )
            fx.wake_scheduler = True

    async def _fail_downstream(
        self, session: AsyncSession, fx: Effects, wf: Workflow, group: Group
    ) -> None:
        _, _, downstream = await self.specs.get(session, wf.pk, None)
        seen: set[str] = set()
        todo = list(downstream.get(group.name, []))
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            todo.extend(downstream.get(name, []))
        if not seen:
            return
        now = time.time()
        rows = (
            (
                await session.execute(
                    select(Group).where(
                        Group.workflow_pk == wf.pk,
                        Group.name.in_(seen),
                        Group.status.in_(UNFINISHED),
                    )
                )
            )
            .scalars()
            .all()
        )
        if not rows:
            return
        for g in rows:
            g.status = TaskStatus.FAILED_UPSTREAM.value
            g.finished_at = now
            g.message = f"upstream group {group.name} did not complete"
        await session.execute(
            update(Task)
            .where(Task.group_pk.in_([g.pk for g in rows]), Task.status.in_(UNFINISHED))
            .values(
                status=TaskStatus.FAILED_UPSTREAM.value,
                exit_code=ExitCode.UPSTREAM_FAILED,
                finished_at=now,
            )
        )

    async def refresh_workflow(self, session: AsyncSession, fx: Effects, wf: Workflow) -> None:
        rows = (
            (
                await session.execute(
                    select(Group.status).where(Group.workflow_pk == wf.pk).group_by(Group.status)
                )
            )
            .scalars()
            .all()
        )
        new = aggregate_workflow([TaskStatus(s) for s in rows])
        if new.value != wf.status:
            old = wf.status
            wf.status = new.value
            fx.changed_workflows.add(wf.workflow_id)
            if new.finished:
                wf.finished_at = time.time()
                self.event(session, wf, f"workflow finished: {new.value}")
            elif old == WorkflowStatus.PENDING and new == WorkflowStatus.RUNNING:
                wf.started_at = wf.started_at or time.time()

    # ---- cancel and timeouts --------------------------------------------------------------

    async def cancel(
        self, workflow_id: str, user: str, message: str | None, force: bool
    ) -> Workflow:
        from ..errors import Conflict, NotFound

        async with self.txn() as (session, fx):
            wf = (
                await session.execute(select(Workflow).where(Workflow.workflow_id == workflow_id))
            ).scalar_one_or_none()
            if wf is None:
                raise NotFound(f"workflow {workflow_id!r} not found")
            if WorkflowStatus(wf.status).finished:
                if not force:
                    raise Conflict(
                        f"workflow {workflow_id} already finished with status {wf.status}; "
                        "use --force to clean up its tasks again"
                    )
                tasks = (
                    (
                        await session.execute(
                            select(Task).where(Task.workflow_pk == wf.pk, Task.backend.is_not(None))
                        )
                    )
                    .scalars()
                    .all()
                )
                for t in tasks:
                    fx.stop(
                        t.backend,
                        TaskRef(workflow_id=wf.workflow_id, task=t.name, retry_id=t.retry_id),
                        "forced cleanup",
                    )
                return wf
            wf.canceled_by = user
            wf.message = message
            self.event(session, wf, f"canceled by {user}" + (f": {message}" if message else ""))
            groups = (
                (
                    await session.execute(
                        select(Group).where(
                            Group.workflow_pk == wf.pk, Group.status.in_(UNFINISHED)
                        )
                    )
                )
                .scalars()
                .all()
            )
            now = time.time()
            for g in groups:
                g.status = TaskStatus.FAILED_CANCELED.value
                g.finished_at = now
                g.message = f"canceled by {user}"
                fx.released.append(g.pk)
            tasks = (
                (
                    await session.execute(
                        select(Task).where(Task.workflow_pk == wf.pk, Task.status.in_(UNFINISHED))
                    )
                )
                .scalars()
                .all()
            )
            for t in tasks:
                if TaskStatus(t.status) in ACTIVE:
                    fx.stop(
                        t.backend,
                        TaskRef(workflow_id=wf.workflow_id, task=t.name, retry_id=t.retry_id),
                        "canceled",
                    )
                t.status = TaskStatus.FAILED_CANCELED.value
                t.finished_at = now
            fx.wake_scheduler = True
            await self.refresh_workflow(session, fx, wf)
            return wf

    async def check_timeouts(self, now: float | None = None) -> int:
        now = now or time.time()
        async with self.sessions() as session:
            exec_rows = (
                (
                    await session.execute(
                        select(Group.pk)
                        .join(Workflow, Group.workflow_pk == Workflow.pk)
                        .where(
                            Group.status == TaskStatus.RUNNING.value,
                            Workflow.exec_timeout.is_not(None),
                            Group.running_at + Workflow.exec_timeout <= now,
                        )
                    )
                )
                .scalars()
                .all()
            )
            queue_rows = (
                (
                    await session.execute(
                        select(Group.pk)
                        .join(Workflow, Group.workflow_pk == Workflow.pk)
                        .where(
                            Group.status == TaskStatus.SCHEDULING.value,
                            Workflow.queue_timeout.is_not(None),
                            Group.queued_at + Workflow.queue_timeout <= now,
                        )
                    )
                )
                .scalars()
                .all()
            )
        if not exec_rows and not queue_rows:
            return 0
        async with self.txn() as (session, fx):
            for pks, status, expected in (
                (exec_rows, TaskStatus.FAILED_EXEC_TIMEOUT, TaskStatus.RUNNING),
                (queue_rows, TaskStatus.FAILED_QUEUE_TIMEOUT, TaskStatus.SCHEDULING),
            ):
                for pk in pks:
                    group = await session.get(Group, pk)
                    if group is None or group.status != expected.value:
                        continue
                    wf = await session.get(Workflow, group.workflow_pk)
                    assert wf is not None
                    what = (
                        "exec_timeout"
                        if status == TaskStatus.FAILED_EXEC_TIMEOUT
                        else "queue_timeout"
                    )
                    await self.end_group(
                        session, fx, wf, group, status, f"{what} expired", tasks_status=status
                    )
        return len(exec_rows) + len(queue_rows)

    async def preempt_groups(self, group_pks: list[int], reason: str) -> None:
        """Stop admitted groups for higher-priority work (FAILED_PREEMPTED, exit code 3006).

        A group whose lead's exit actions say RESCHEDULE (e.g. the pool maps 3006 to it) and
        that has retries left goes back to the queue with new retries of its tasks; otherwise
        it fails and its downstream groups fail with it.
        """
        async with self.txn() as (session, fx):
            now = time.time()
            for pk in group_pks:
                group = await session.get(Group, pk)
                if group is None or TaskStatus(group.status).finished:
                    continue
                wf = await session.get(Workflow, group.workflow_pk)
                assert wf is not None
                _, specs, _ = await self.specs.get(session, wf.pk)
                tasks = (
                    (
                        await session.execute(
                            select(Task).where(Task.group_pk == pk, Task.status.in_(UNFINISHED))
                        )
                    )
                    .scalars()
                    .all()
                )
                lead = next((t for t in tasks if t.lead), tasks[0] if tasks else None)
                code = ExitCode.PREEMPTED
                pool_defaults = await self.pool_defaults(session, wf.pool)
                action = resolve_action(specs.get(lead.name) if lead else None, pool_defaults, code)
                retry_ok = all(t.retry_id < wf.max_retry_per_task for t in tasks)
                fx.released.append(pk)
                for t in tasks:
                    if TaskStatus(t.status) in ACTIVE:
                        fx.stop(
                            t.backend,
                            TaskRef(workflow_id=wf.workflow_id, task=t.name, retry_id=t.retry_id),
                            "preempted",
                        )
                if action == "RESCHEDULE" and retry_ok and tasks:
                    for t in tasks:
                        t.status = TaskStatus.RESCHEDULED.value
                        t.exit_code = code
                        t.finished_at = now
                        t.message = reason
                        session.add(
                            Task(
                                workflow_pk=wf.pk,
                                group_pk=pk,
                                name=t.name,
                                retry_id=t.retry_id + 1,
                                status=TaskStatus.SCHEDULING.value,
                                lead=t.lead,
                                created_at=now,
                            )
                        )
                    group.status = TaskStatus.SCHEDULING.value
                    group.queued_at = now
                    group.backend = None
                    fx.queued.append(pk)
                    self.event(
                        session, wf, f"group {group.name} preempted ({reason}); queued again"
                    )
                    fx.changed_workflows.add(wf.workflow_id)
                    continue
                for t in tasks:
                    t.status = TaskStatus.FAILED_PREEMPTED.value
                    t.exit_code = code
                    t.finished_at = now
                    t.message = reason
                await self.end_group(
                    session,
                    fx,
                    wf,
                    group,
                    TaskStatus.FAILED_PREEMPTED,
                    reason,
                    tasks_status=TaskStatus.FAILED_PREEMPTED,
                )

    async def workflow_group_counts(self, session: AsyncSession, wf_pk: int) -> dict[str, int]:
        rows = await session.execute(
            select(Group.status, func.count())
            .where(Group.workflow_pk == wf_pk)
            .group_by(Group.status)
        )
        return {s: n for s, n in rows.all()}
