"""Admission: which ready group runs on which backend, and when.

Event-driven: submissions, finished groups and capacity changes wake the loop; a slow tick is
only a safety net. Ready groups wait in an in-memory queue (rebuilt from the database at start).
A pass considers them by priority (HIGH, NORMAL), then submit time, then LOW work pool by pool
in order of the pools' weighted GPU share. A group is admitted only when all of its tasks fit at
once (gang, possibly across platforms); a group that does not fit does not block the ones behind
it. NORMAL and HIGH work stays within its pool's GPU guarantee and may preempt borrowed LOW
work; LOW work borrows idle GPUs up to the pool's maximum. Admissions are committed and their
launch messages sent in small chunks, so one large pass does not delay the first decisions.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field

from sqlalchemy import Table, bindparam, select, update

from ...protocol import LaunchGroup
from ..db.models import Group, Task, Workflow
from ..lifecycle.engine import Lifecycle
from ..lifecycle.status import ACTIVE, TaskStatus
from .ledger import Ledger, Request
from .pools import UNSET, PoolConfig

log = logging.getLogger(__name__)
LOW_RANK = 2
CHUNK = 32
COALESCE_SECONDS = 0.005
CHUNK_SECONDS = 0.01


def task_request(cpu: int | None, gpu: int | None, memory: int | None) -> Request:
    return Request(cpu=float(cpu or 0), gpu=int(gpu or 0), memory=int(memory or 0))


@dataclass
class Queued:
    pk: int
    wf_pk: int
    workflow_id: str
    name: str
    pool: str
    rank: int
    submitted_at: float
    env_vars: dict[str, str]
    retries: dict[str, int]
    user: str = ""
    failed_version: int = -1  # capacity version at which it last did not fit

    def key(self) -> tuple[int, float, int]:
        return (self.rank, self.submitted_at, self.pk)


@dataclass
class Running:
    pool: str
    backend: str
    rank: int
    gpus: int
    submitted_at: float


@dataclass
class Stats:
    passes: int = 0
    admitted_groups: int = 0
    dispatched_tasks: int = 0
    preempted_groups: int = 0
    first_dispatch: float | None = None
    last_dispatch: float | None = None
    decision_ms: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, float | int | None]:
        d = sorted(self.decision_ms)

        def pct(p: float) -> float | None:
            return d[min(len(d) - 1, round(p / 100 * (len(d) - 1)))] if d else None

        return {
            "passes": self.passes,
            "admitted_groups": self.admitted_groups,
            "dispatched_tasks": self.dispatched_tasks,
            "preempted_groups": self.preempted_groups,
            "first_dispatch": self.first_dispatch,
            "last_dispatch": self.last_dispatch,
            "decisions": len(d),
            "decision_p50_ms": pct(50),
            "decision_p99_ms": pct(99),
            "decision_max_ms": d[-1] if d else None,
        }


class Scheduler:
    def __init__(self, lifecycle: Lifecycle, is_online: Callable[[str], bool]):
        self.lc = lifecycle
        self.ledger = Ledger()
        self.queue: dict[int, Queued] = {}
        self.running: dict[int, Running] = {}
        self.stats = Stats()
        self._to_load: set[int] = set()
        self._wake = asyncio.Event()
        self._is_online = is_online

    # ---- events from the lifecycle ----------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def enqueue(self, group_pks: list[int]) -> None:
        self._to_load.update(group_pks)
        self._wake.set()

    def release(self, group_pk: int) -> None:
        self.ledger.release(group_pk)
        self.running.pop(group_pk, None)
        self.queue.pop(group_pk, None)

    def reset_stats(self) -> None:
        self.stats = Stats()

    # ---- state from the database ------------------------------------------------------------

    async def rebuild(self) -> None:
        """Re-derive the queue and what admitted groups hold (after a restart)."""
        async with self.lc.sessions() as session:
            rows = (
                (
                    await session.execute(
                        select(Group.pk).where(Group.status == TaskStatus.SCHEDULING.value)
                    )
                )
                .scalars()
                .all()
            )
            self._to_load.update(rows)
            active = (
                await session.execute(
                    select(Group, Workflow.pk)
                    .join(Workflow, Group.workflow_pk == Workflow.pk)
                    .where(Group.status.in_([s.value for s in ACTIVE]), Group.backend.is_not(None))
                )
            ).all()
            for group, wf_pk in active:
                _, specs, _ = await self.lc.specs.get(session, wf_pk)
                tasks = (
                    await session.execute(
                        select(Task.name, Task.node).where(
                            Task.group_pk == group.pk, Task.status.in_([s.value for s in ACTIVE])
                        )
                    )
                ).all()
                placed = []
                for name, node in tasks:
                    t = specs.get(name)
                    if t is not None:
                        r = t.resources
                        placed.append((node or "", task_request(r.cpu, r.gpu, r.memory_bytes)))
                if group.backend is not None:
                    self.ledger.hold(group.pk, group.backend, placed)
                    self.running[group.pk] = Running(
                        group.pool,
                        group.backend,
                        group.priority_rank,
                        sum(r.gpu for _, r in placed),
                        group.submitted_at,
                    )

    async def _load_queued(self) -> None:
        if not self._to_load:
            return
        pks = list(self._to_load)
        self._to_load.clear()
        async with self.lc.sessions() as session:
            for start in range(0, len(pks), 500):
                chunk = pks[start : start + 500]
                rows = (
                    await session.execute(
                        select(
                            Group.pk,
                            Group.name,
                            Group.pool,
                            Group.priority_rank,
                            Group.submitted_at,
                            Workflow.pk,
                            Workflow.workflow_id,
                            Workflow.env_vars,
                            Workflow.submitted_by,
                        )
                        .join(Workflow, Group.workflow_pk == Workflow.pk)
                        .where(Group.pk.in_(chunk), Group.status == TaskStatus.SCHEDULING.value)
                    )
                ).all()
                retries: dict[int, dict[str, int]] = {}
                for g_pk, t_name, retry in (
                    await session.execute(
                        select(Task.group_pk, Task.name, Task.retry_id).where(
                            Task.group_pk.in_(chunk), Task.status == TaskStatus.SCHEDULING.value
                        )
                    )
                ).all():
                    retries.setdefault(g_pk, {})[t_name] = retry
                for pk, name, pool, rank, submitted, wf_pk, wf_id, env, user in rows:
                    self.queue[pk] = Queued(
                        pk,
                        wf_pk,
                        wf_id,
                        name,
                        pool,
                        rank,
                        submitted,
                        dict(env or {}),
                        retries.get(pk, {}),
                        user,
                    )

    # ---- the loop ---------------------------------------------------------------------------

    async def run(self, tick: float = 1.0) -> None:
        while True:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=tick)
            # Let a burst of submissions and completions land first: one pass then admits
            # them together (a few ms of latency for far fewer passes under load).
            await asyncio.sleep(COALESCE_SECONDS)
            self._wake.clear()
            try:
                await self.pass_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduler pass failed")

    async def pass_once(self) -> int:
        self.stats.passes += 1
        await self._load_queued()
        if not self.queue:
            return 0
        async with self.lc.sessions() as session:
            pools = dict(await self.lc.pools.load(session))
        usage_hn: dict[str, int] = {}
        usage_all: dict[str, int] = {}
        for r in self.running.values():
            usage_all[r.pool] = usage_all.get(r.pool, 0) + r.gpus
            if r.rank < LOW_RANK:
                usage_hn[r.pool] = usage_hn.get(r.pool, 0) + r.gpus
        platform_nodes: dict[tuple[str, str | None], list[int] | None] = {}
        admitted = 0
        chunk: list[tuple[Queued, str, list[str], list[Request], float]] = []
        chunk_started = time.perf_counter()

        async def flush() -> None:
            nonlocal chunk, chunk_started
            if chunk:
                await self._commit(chunk)
                chunk = []
            chunk_started = time.perf_counter()

        def candidates() -> list[Queued]:
            return sorted((q for q in self.queue.values() if q.rank < LOW_RANK), key=Queued.key)

        for q in candidates():
            placed = await self._consider(q, pools, usage_hn, usage_all, platform_nodes, chunk)
            admitted += placed
            if len(chunk) >= CHUNK or time.perf_counter() - chunk_started > CHUNK_SECONDS:
                await flush()
        # LOW work: pools take turns by weighted GPU share (fair share above guarantees).
        low: dict[str, list[Queued]] = {}
        for q in sorted((q for q in self.queue.values() if q.rank >= LOW_RANK), key=Queued.key):
            low.setdefault(q.pool, []).append(q)
        heap = [(self._share(p, pools, usage_all), p) for p in low]
        heapq.heapify(heap)
        cursor = {p: 0 for p in low}
        while heap:
            _, p = heapq.heappop(heap)
            items = low[p]
            if cursor[p] >= len(items):
                continue
            q = items[cursor[p]]
            cursor[p] += 1
            admitted += await self._consider(q, pools, usage_hn, usage_all, platform_nodes, chunk)
            if cursor[p] < len(items):
                heapq.heappush(heap, (self._share(p, pools, usage_all), p))
            if len(chunk) >= CHUNK or time.perf_counter() - chunk_started > CHUNK_SECONDS:
                await flush()
        await flush()
        return admitted

    @staticmethod
    def _share(pool: str, pools: dict[str, PoolConfig], usage_all: dict[str, int]) -> float:
        cfg = pools.get(pool)
        weight = cfg.gpu.weight if cfg else 1.0
        return usage_all.get(pool, 0) / weight

    async def _consider(
        self,
        q: Queued,
        pools: dict[str, PoolConfig],
        usage_hn: dict[str, int],
        usage_all: dict[str, int],
        platform_nodes: dict[tuple[str, str | None], list[int] | None],
        chunk: list[tuple[Queued, str, list[str], list[Request], float]],
    ) -> int:
        if q.pk not in self.queue or q.failed_version == self.ledger.version:
            return 0
        started = time.perf_counter()
        pool = pools.get(q.pool)
        if pool is None or not self._is_online(pool.backend):
            return 0
        backend = pool.backend
        groups = self.lc.specs.cached_groups(q.wf_pk)
        if groups is None:
            async with self.lc.sessions() as session:
                groups = await self.lc.specs.groups(session, q.wf_pk)
        gspec = groups[q.name]
        requests = [
            task_request(t.resources.cpu, t.resources.gpu, t.resources.memory_bytes)
            for t in gspec.tasks
        ]
        gpus = sum(r.gpu for r in requests)
        quota = pool.gpu
        if q.rank < LOW_RANK:
            if quota.guarantee != UNSET and usage_hn.get(q.pool, 0) + gpus > quota.guarantee:
                q.failed_version = self.ledger.version
                return 0
        elif quota.maximum != UNSET and usage_all.get(q.pool, 0) + gpus > quota.maximum:
            q.failed_version = self.ledger.version
            return 0
        allowed = [self._allowed(pool, t.resources.platform, platform_nodes) for t in gspec.tasks]
        placement = self.ledger.fit(backend, requests, allowed)
        if placement is None and q.rank < LOW_RANK and gpus > 0 and quota.guarantee != UNSET:
            placement = await self._preempt_for(q, backend, requests, allowed)
        if placement is None:
            q.failed_version = self.ledger.version
            return 0
        self.ledger.hold(q.pk, backend, list(zip(placement, requests, strict=True)))
        self.running[q.pk] = Running(q.pool, backend, q.rank, gpus, q.submitted_at)
        usage_all[q.pool] = usage_all.get(q.pool, 0) + gpus
        if q.rank < LOW_RANK:
            usage_hn[q.pool] = usage_hn.get(q.pool, 0) + gpus
        del self.queue[q.pk]
        chunk.append((q, backend, placement, requests, started))
        return 1

    def _allowed(
        self,
        pool: PoolConfig,
        platform: str | None,
        cache: dict[tuple[str, str | None], list[int] | None],
    ) -> list[int] | None:
        key = (pool.name, platform)
        if key not in cache:
            _, cfg = pool.platform(platform)
            if cfg is None or not cfg.node_labels:
                cache[key] = None
            else:
                cache[key] = [
                    i
                    for i, n in enumerate(self.ledger.nodes(pool.backend))
                    if pool.node_matches(cfg, n)
                ]
        return cache[key]

    async def _preempt_for(
        self, q: Queued, backend: str, requests: list[Request], allowed: list[list[int] | None]
    ) -> list[str] | None:
        """Free capacity for under-guarantee work by preempting LOW groups (newest first)."""
        victims = sorted(
            (
                pk
                for pk, r in self.running.items()
                if r.backend == backend and r.rank >= LOW_RANK and r.gpus > 0
            ),
            key=lambda pk: self.running[pk].submitted_at,
            reverse=True,
        )
        if not victims:
            return None
        trial = Ledger(holdings=dict(self.ledger.holdings))
        trial.set_nodes(backend, self.ledger.nodes(backend))
        chosen: list[int] = []
        for pk in victims:
            trial.release(pk)
            chosen.append(pk)
            if trial.fit(backend, requests, allowed) is not None:
                break
        else:
            return None
        for pk in chosen:
            self.release(pk)
        # Requeued victims come back through enqueue() when the preemption commits.
        await self.lc.preempt_groups(chosen, f"preempted for {q.workflow_id} group {q.name}")
        self.stats.preempted_groups += len(chosen)
        return self.ledger.fit(backend, requests, allowed)

    async def _commit(
        self, chunk: list[tuple[Queued, str, list[str], list[Request], float]]
    ) -> None:
        """Mark a chunk of admitted groups PROCESSING and send their launches, in one go."""
        async with self.lc.txn() as (session, fx):
            by_backend: dict[str, list[int]] = {}
            for q, backend, _, _, _ in chunk:
                by_backend.setdefault(backend, []).append(q.pk)
            still: set[int] = set()
            for backend, pks in by_backend.items():
                result = await session.execute(
                    update(Group)
                    .where(Group.pk.in_(pks), Group.status == TaskStatus.SCHEDULING.value)
                    .values(status=TaskStatus.PROCESSING.value, backend=backend)
                    .returning(Group.pk)
                )
                still.update(result.scalars().all())
            node_rows = []
            for q, backend, placement, _, _ in chunk:
                if q.pk not in still:
                    self.release(q.pk)  # canceled or timed out meanwhile
                    continue
                gspec = (await self.lc.specs.groups(session, q.wf_pk))[q.name]
                launches = []
                for t, node in zip(gspec.tasks, placement, strict=True):
                    retry = q.retries.get(t.name, 0)
                    node_rows.append(
                        {"g": q.pk, "n": t.name, "r": retry, "node": node, "backend": backend}
                    )
                    launches.append(
                        await self.lc.launch_for(
                            session, q.workflow_id, q.env_vars, q.user, q.name, t, retry, node
                        )
                    )
                barrier = gspec.barrier and all(v == 0 for v in q.retries.values())
                fx.launches.append(
                    (
                        backend,
                        LaunchGroup(
                            workflow_id=q.workflow_id, group=q.name, barrier=barrier, tasks=launches
                        ),
                    )
                )
            if node_rows:
                table = Task.__table__
                assert isinstance(table, Table)
                conn = await session.connection()
                await conn.execute(
                    update(table)
                    .where(
                        table.c.group_pk == bindparam("g"),
                        table.c.name == bindparam("n"),
                        table.c.retry_id == bindparam("r"),
                        table.c.status == TaskStatus.SCHEDULING.value,
                    )
                    .values(
                        status=TaskStatus.PROCESSING.value,
                        node=bindparam("node"),
                        backend=bindparam("backend"),
                    ),
                    node_rows,
                )
        now = time.perf_counter()
        sent = [item for item in chunk if item[0].pk in still]
        for _, _, placement, _, started in sent:
            self.stats.decision_ms.append((now - started) * 1000)
            self.stats.dispatched_tasks += len(placement)
        self.stats.admitted_groups += len(sent)
        wall = time.time()
        if sent:
            self.stats.first_dispatch = self.stats.first_dispatch or wall
            self.stats.last_dispatch = wall
        if len(self.stats.decision_ms) > 200_000:
            del self.stats.decision_ms[:-100_000]
