"""The running control plane: database, lifecycle, scheduler, operator hub, logs, loops."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any

from sqlalchemy import select

from ..settings import Settings
from .auth.operator_tokens import OperatorTokens
from .auth.secrets import SecretBox
from .db.engine import create_engine, sessionmaker
from .db.migrate import upgrade
from .db.models import Backend, Pool
from .hub import OperatorHub
from .lifecycle.backends import backends_with_active_tasks, fail_backend_tasks, mark_offline
from .lifecycle.effects import Effects
from .lifecycle.engine import Lifecycle
from .lifecycle.submit import Limits
from .logs import LogStore
from .scheduler.pools import PoolConfig
from .scheduler.scheduler import Scheduler

log = logging.getLogger(__name__)
DEFAULT_POOL = "default"
LOCAL_BACKEND = "local"
# The embedded pool retries tasks lost to a backend error (e.g. Ctrl-C of standalone).
DEFAULT_EXIT_ACTIONS = {"RESCHEDULE": "3001"}


def _credential(payload: str, endpoint: str) -> dict[str, Any] | None:
    """A server-side DATA credential from settings (JSON), scoped to the store it is for."""
    if not payload.strip():
        return None
    import json

    data = json.loads(payload)
    if not isinstance(data, dict):
        raise ValueError("credential settings must be a JSON object")
    data.setdefault("endpoint", endpoint)
    return {str(k): str(v) for k, v in data.items()}


class Service:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.engine = create_engine(settings.resolved_database_url)
        self.sessions = sessionmaker(self.engine)
        self.hub = OperatorHub(offline_after=settings.backend_offline_after)
        self.logs = LogStore(
            settings.resolved_log_dir,
            settings.log_url,
            _credential(settings.log_credential, settings.log_url),
        )
        self.lifecycle = Lifecycle(self.sessions, settings.resolved_data_url, self._dispatch)
        self.scheduler = Scheduler(self.lifecycle, self.hub.is_online)
        self.lifecycle.nodes_of = lambda backend: (
            self.scheduler.ledger.nodes(backend)
            if backend in self.scheduler.ledger.backends
            else None
        )
        self.tokens = OperatorTokens.load(settings.operator_tokens, settings.home)
        self.secrets = SecretBox.load(settings.secret_keys, settings.home)
        self.lifecycle.secrets = self.secrets
        self.lifecycle.dataset_bucket = settings.resolved_dataset_url
        data_cred = _credential(settings.data_credential, settings.resolved_data_url)
        if data_cred:
            self.lifecycle.store_credentials.append(data_cred)
        if settings.dataset_credential:
            import json

            payload = json.loads(settings.dataset_credential)
            payload.setdefault("endpoint", settings.resolved_dataset_url)
            self.lifecycle.dataset_credentials = [payload]
        self.limits = Limits(
            max_num_tasks=settings.max_num_tasks,
            max_retry_per_task=settings.max_retry_per_task,
            render_timeout=settings.render_timeout,
        )
        self._tasks: list[asyncio.Task[None]] = []
        # Run at shutdown while the database and loops are still up (e.g. embedded operator).
        self.before_stop: list[Callable[[Service], Awaitable[None]]] = []
        self._changed = asyncio.Condition()
        self.started_at = time.time()

    async def start(self) -> None:
        await upgrade(self.engine)
        await self._ensure_defaults()
        await self.scheduler.rebuild()
        self._tasks = [
            asyncio.create_task(self.scheduler.run(), name="scheduler"),
            asyncio.create_task(self._timeouts_loop(), name="timeouts"),
            asyncio.create_task(self._backends_loop(), name="backends"),
        ]

    async def stop(self) -> None:
        for hook in self.before_stop:
            try:
                await hook(self)
            except Exception:
                log.exception("shutdown hook failed")
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with suppress(asyncio.CancelledError, Exception):
                await t
        await self.engine.dispose()

    async def _ensure_defaults(self) -> None:
        async with self.sessions() as session, session.begin():
            if await session.get(Pool, DEFAULT_POOL) is None and not await session.scalar(
                select(Pool.name).limit(1)
            ):
                config = PoolConfig(
                    backend=LOCAL_BACKEND,
                    description="this machine",
                    default_exit_actions=DEFAULT_EXIT_ACTIONS,
                )
                session.add(
                    Pool(
                        name=DEFAULT_POOL,
                        backend=LOCAL_BACKEND,
                        config=config.model_dump(exclude={"name"}),
                        created_at=time.time(),
                    )
                )
            # Nobody is connected right after a start; hellos set backends online again.
            for b in (await session.execute(select(Backend))).scalars().all():
                b.online = False

    async def _dispatch(self, fx: Effects) -> None:
        for pk in fx.released:
            self.scheduler.release(pk)
        if fx.queued:
            self.scheduler.enqueue(fx.queued)
        for backend, msg in fx.launches:
            await self.hub.send(backend, msg)
        if fx.stops:
            from ..protocol import StopTasks

            for backend, refs in fx.stops.items():
                await self.hub.send(
                    backend, StopTasks(tasks=refs, reason=fx.stop_reasons.get(backend, ""))
                )
        if fx.wake_scheduler:
            self.scheduler.wake()
        if fx.changed_workflows:
            async with self._changed:
                self._changed.notify_all()

    async def wait_changed(self, timeout: float) -> None:
        async with self._changed:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)

    async def _timeouts_loop(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            try:
                await self.lifecycle.check_timeouts()
            except Exception:
                log.exception("timeout check failed")

    async def _backends_loop(self) -> None:
        """Offline after a stale heartbeat; tasks failed after the longer error window."""
        quiet: set[str] = set()  # connected but silent backends already marked offline
        # Backends with tasks when this server started; nobody is connected yet. One whose
        # operator does not come back within the error window (counted from now: while the
        # server was down nobody could hear it) has its tasks failed like any lost backend.
        started = time.time()
        try:
            unheard = await backends_with_active_tasks(self.lifecycle)
        except Exception:
            log.exception("backend monitor could not list backends with tasks")
            unheard = set()
        while True:
            await asyncio.sleep(min(1.0, self.settings.heartbeat_interval))
            now = time.time()
            try:
                if unheard and now - started > self.settings.backend_error_after:
                    for name in sorted(unheard):
                        link = self.hub.links.get(name)
                        if link is not None and (link.socket is not None or link.last_heartbeat):
                            continue  # it came back (and is watched as usual from then on)
                        n = await fail_backend_tasks(
                            self.lifecycle,
                            name,
                            f"backend {name} offline for more than {self.settings.backend_error_after:g}s",
                        )
                        if n:
                            log.warning(
                                "backend %s never reconnected: %d tasks failed with backend error",
                                name,
                                n,
                            )
                    unheard = set()
                for name, link in list(self.hub.links.items()):
                    if (
                        link.socket is None
                        and link.last_heartbeat
                        and now - link.last_heartbeat > self.settings.backend_error_after
                    ):
                        n = await fail_backend_tasks(
                            self.lifecycle,
                            name,
                            f"backend {name} offline for more than {self.settings.backend_error_after:g}s",
                        )
                        if n:
                            log.warning(
                                "backend %s offline: %d tasks failed with backend error", name, n
                            )
                        link.last_heartbeat = 0
                    elif (
                        link.socket is not None
                        and now - link.last_heartbeat > self.settings.backend_offline_after
                    ):
                        if name not in quiet:
                            quiet.add(name)
                            log.warning("backend %s missed heartbeats; marking offline", name)
                            await mark_offline(self.lifecycle, name)
                    else:
                        quiet.discard(name)
            except Exception:
                log.exception("backend monitor failed")
