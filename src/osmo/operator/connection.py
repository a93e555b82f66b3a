"""The operator's outbound connection: dial, hello, ack and replay, heartbeats, reconnect."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import OrderedDict
from typing import Any

import websockets
from pydantic import BaseModel

from .. import __version__
from ..protocol import (
    Ack,
    Envelope,
    Heartbeat,
    Hello,
    LaunchGroup,
    LogChunk,
    StopTasks,
    TaskRef,
    TaskReport,
    TaskStatusBatch,
    Welcome,
)
from .executors.base import Executor

log = logging.getLogger(__name__)
MAX_BATCH = 100  # bounded so one batch holds the control plane's write lock briefly


class Refused(Exception):
    """The control plane refused this operator (bad token, version, duplicate backend)."""


def ws_url(server: str, backend: str) -> str:
    base = server.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    return f"{base}/api/agent/operator/{backend}"


class OperatorConnection:
    def __init__(self, server: str, backend: str, token: str, executor: Executor):
        self.server = server
        self.backend = backend
        self.token = token
        self.executor = executor
        self.pending: OrderedDict[str, tuple[Envelope, list[TaskRef]]] = OrderedDict()
        self.seq = 0
        self.heartbeat_interval = 5.0
        self.connected = asyncio.Event()
        self._stopping = False
        self._ws: Any = None
        self._seen: OrderedDict[str, None] = OrderedDict()

    async def run(self) -> None:
        """Keep a connection up until ``close()``; raises ``Refused`` when told to go away."""
        delay = 0.2
        while not self._stopping:
            try:
                async with websockets.connect(
                    ws_url(self.server, self.backend),
                    additional_headers={"Authorization": f"Bearer {self.token}"},
                    max_size=None,
                    open_timeout=10,
                    ping_interval=20,
                    # Messages are small and many: deflate costs more CPU than it saves.
                    compression=None,
                ) as ws:
                    self._ws = ws
                    delay = 0.2
                    await self._session(ws)
            except Refused:
                raise
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._stopping:
                    break
                log.info("connection to %s lost (%s); retrying in %.1fs", self.server, exc, delay)
            finally:
                self._ws = None
                self.connected.clear()
            if self._stopping:
                break
            await asyncio.sleep(delay + random.random() * delay / 2)
            delay = min(delay * 2, 5.0)

    async def close(self) -> None:
        self._stopping = True
        if self._ws is not None:
            await self._ws.close()

    def _envelope(self, message: BaseModel) -> Envelope:
        body = message.model_dump(mode="json")
        self.seq += 1
        return Envelope(type=body.pop("type"), seq=self.seq, body=body)

    async def _session(self, ws: Any) -> None:
        hello = Hello(
            backend=self.backend,
            version=__version__,
            executor=self.executor.kind,
            cluster_id=self.executor.cluster_id,
            nodes=self.executor.nodes(),
            tasks=self.executor.known_tasks(),
        )
        await ws.send(self._envelope(hello).model_dump_json())
        first = Envelope.model_validate_json(await ws.recv())
        if first.type == "refuse":
            raise Refused(str(first.body.get("message", "refused")))
        if first.type != "welcome":
            raise Refused(f"unexpected first message {first.type!r}")
        welcome = Welcome.model_validate(first.body | {"type": "welcome"})
        self.heartbeat_interval = welcome.heartbeat_interval
        self.executor.set_log_offsets(welcome.log_offsets)
        if welcome.finished:
            await self.executor.acknowledged(welcome.finished)
        # Replay what the previous connection left unacknowledged, in order.
        for env, _ in list(self.pending.values()):
            await ws.send(env.model_dump_json())
        self.connected.set()
        log.info("connected to %s as backend %s", self.server, self.backend)
        tasks = [
            asyncio.create_task(self._receive(ws)),
            asyncio.create_task(self._send(ws)),
            asyncio.create_task(self._heartbeat(ws)),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                t.result()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _receive(self, ws: Any) -> None:
        async for raw in ws:
            env = Envelope.model_validate_json(raw)
            if env.type == "ack":
                await self._acked(Ack.model_validate(env.body | {"type": "ack"}).ids)
                continue
            if env.type == "refuse":
                raise Refused(str(env.body.get("message", "refused")))
            if env.id not in self._seen:
                self._seen[env.id] = None
                while len(self._seen) > 50_000:
                    self._seen.popitem(last=False)
                await self._dispatch(env)
            await ws.send(Envelope(type="ack", body={"ids": [env.id]}).model_dump_json())

    async def _dispatch(self, env: Envelope) -> None:
        body = env.body | {"type": env.type}
        if env.type == "launch_group":
            await self.executor.launch(LaunchGroup.model_validate(body))
        elif env.type == "stop_tasks":
            stop = StopTasks.model_validate(body)
            await self.executor.stop(stop.tasks, stop.reason)
        else:
            log.warning("ignoring unknown message %r", env.type)

    async def _acked(self, ids: list[str]) -> None:
        done: list[TaskRef] = []
        for i in ids:
            item = self.pending.pop(i, None)
            if item is not None:
                done.extend(item[1])
        if done:
            await self.executor.acknowledged(done)

    async def _send(self, ws: Any) -> None:
        outbox = self.executor.outbox
        while True:
            first = await outbox.get()
            items = [first]
            while not outbox.empty() and len(items) < MAX_BATCH:
                items.append(outbox.get_nowait())
            reports: list[TaskReport] = []
            for item in items:
                if isinstance(item, LogChunk):
                    if reports:
                        await self._send_reports(ws, reports)
                        reports = []
                    env = self._envelope(item)
                    self.pending[env.id] = (env, [])
                    await ws.send(env.model_dump_json())
                else:
                    reports.append(item)
            if reports:
                await self._send_reports(ws, reports)

    async def _send_reports(self, ws: Any, reports: list[TaskReport]) -> None:
        env = self._envelope(TaskStatusBatch(reports=reports))
        final = [
            TaskRef(workflow_id=r.workflow_id, task=r.task, retry_id=r.retry_id)
            for r in reports
            if r.status not in ("INITIALIZING", "RUNNING", "SCHEDULING", "PROCESSING")
        ]
        self.pending[env.id] = (env, final)
        await ws.send(env.model_dump_json())

    async def _heartbeat(self, ws: Any) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            env = self._envelope(Heartbeat(ts=time.time(), nodes=self.executor.nodes()))
            await ws.send(env.model_dump_json())
