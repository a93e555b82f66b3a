"""Connections to operators: send with acknowledgement, resend after reconnect."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel

from ..protocol import Envelope, NodeInfo

log = logging.getLogger(__name__)
MAX_PENDING = 100_000


class Socket(Protocol):
    async def send_text(self, data: str) -> None: ...


@dataclass
class Link:
    backend: str
    socket: Socket | None = None
    seq: int = 0
    pending: OrderedDict[str, Envelope] = field(default_factory=OrderedDict)
    nodes: list[NodeInfo] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last_heartbeat: float = 0.0
    connection_id: int = 0
    claimed: bool = False  # a connection is in its handshake for this backend


class OperatorHub:
    def __init__(self, offline_after: float = math.inf) -> None:
        self.links: dict[str, Link] = {}
        self._next_connection = 0
        # A connected backend whose last message is older than this counts as offline.
        self.offline_after = offline_after

    def link(self, backend: str) -> Link:
        if backend not in self.links:
            self.links[backend] = Link(backend)
        return self.links[backend]

    def is_online(self, backend: str) -> bool:
        """Connected, and heard from (heartbeat or any message) within ``offline_after``."""
        link = self.links.get(backend)
        return (
            link is not None
            and link.socket is not None
            and time.time() - link.last_heartbeat <= self.offline_after
        )

    def connected(self, backend: str) -> bool:
        """An operator holds the connection (even one that has gone quiet)."""
        link = self.links.get(backend)
        return link is not None and link.socket is not None

    def claim(self, backend: str) -> bool:
        """Reserve a backend for a connection in its handshake; False if another one holds it.

        Synchronous (no await between the check and the mark), so of several operators saying
        hello at once exactly one gets through.
        """
        link = self.link(backend)
        if link.socket is not None or link.claimed:
            return False
        link.claimed = True
        return True

    def unclaim(self, backend: str) -> None:
        self.link(backend).claimed = False

    async def attach(self, backend: str, socket: Socket, nodes: list[NodeInfo]) -> int:
        link = self.link(backend)
        self._next_connection += 1
        link.connection_id = self._next_connection
        link.socket = socket
        link.nodes = list(nodes)
        # Resend whatever the previous connection left unacknowledged, in order.
        async with link.lock:
            for env in list(link.pending.values()):
                await self._write(link, env)
        return link.connection_id

    async def disconnect(self, backend: str, reason: str) -> None:
        link = self.links.get(backend)
        if link is None or link.socket is None:
            return
        socket, link.socket = link.socket, None
        close = getattr(socket, "close", None)
        if close is not None:
            try:
                await close(code=4401, reason=reason[:120])
            except Exception as exc:  # already gone
                log.info("closing operator %s: %s", backend, exc)

    def drop_pending(self, backend: str, kind: str) -> int:
        """Forget unacknowledged messages of one type; returns how many there were."""
        link = self.links.get(backend)
        if link is None:
            return 0
        stale = [i for i, env in link.pending.items() if env.type == kind]
        for i in stale:
            del link.pending[i]
        return len(stale)

    def detach(self, backend: str, connection_id: int) -> None:
        link = self.links.get(backend)
        if link is not None and link.connection_id == connection_id:
            link.socket = None

    async def send(self, backend: str, message: BaseModel) -> None:
        link = self.link(backend)
        async with link.lock:
            link.seq += 1
            body: dict[str, Any] = message.model_dump(mode="json")
            env = Envelope(type=body.pop("type"), seq=link.seq, body=body)
            link.pending[env.id] = env
            while len(link.pending) > MAX_PENDING:
                # Reconciliation on reconnect re-derives anything dropped here.
                link.pending.popitem(last=False)
            await self._write(link, env)

    async def send_unacked(self, socket: Socket, message: BaseModel) -> None:
        """A reply that needs no acknowledgement (welcome, refuse, ack)."""
        body = message.model_dump(mode="json")
        env = Envelope(type=body.pop("type"), body=body)
        await socket.send_text(env.model_dump_json())

    def ack(self, backend: str, ids: list[str]) -> None:
        link = self.links.get(backend)
        if link is None:
            return
        for i in ids:
            link.pending.pop(i, None)

    async def _write(self, link: Link, env: Envelope) -> None:
        if link.socket is None:
            return
        try:
            await link.socket.send_text(env.model_dump_json())
        except Exception as exc:  # the receive loop notices the broken socket and detaches
            log.info("send to operator %s failed: %s", link.backend, exc)
