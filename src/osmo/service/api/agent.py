"""The WebSocket operators dial out to (the control plane never dials in)."""

from __future__ import annotations

import asyncio
import json
import logging
import time

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from ... import __version__
from ...protocol import (
    PROTOCOL_MAJOR,
    Ack,
    Envelope,
    Heartbeat,
    Hello,
    LogChunk,
    Refuse,
    StopTasks,
    TaskStatusBatch,
    Welcome,
)
from ..auth import backend_tokens
from ..context import Service
from ..lifecycle.backends import cluster_conflict, key_of, reconcile, record_heartbeat

router = APIRouter(tags=["agent"])
log = logging.getLogger(__name__)
HELLO_TIMEOUT = 30.0


def _bearer(ws: WebSocket) -> str | None:
    header = ws.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return None


async def _refuse(ws: WebSocket, service: Service, message: str, code: int) -> None:
    await service.hub.send_unacked(ws, Refuse(message=message))
    await ws.close(code=code, reason=message[:120])


@router.websocket("/api/agent/operator/{backend}")
async def operator_socket(ws: WebSocket, backend: str) -> None:
    service: Service = ws.app.state.service
    await ws.accept()
    token = _bearer(ws)
    if not service.tokens.valid(token):
        async with service.sessions() as session:
            ok = await backend_tokens.valid(session, backend, token)
        if not ok:
            await _refuse(
                ws,
                service,
                f"invalid, expired or revoked operator token for backend {backend!r}",
                4401,
            )
            return
    try:
        raw = await asyncio.wait_for(ws.receive_text(), HELLO_TIMEOUT)
        env = Envelope.model_validate_json(raw)
        hello = Hello.model_validate(env.body | {"type": "hello"})
    except (TimeoutError, ValidationError, json.JSONDecodeError) as exc:
        await _refuse(ws, service, f"expected a hello message: {exc}", 4400)
        return
    except WebSocketDisconnect:
        return
    major = hello.protocol_version.split(".")[0]
    if major != str(PROTOCOL_MAJOR):
        await _refuse(
            ws,
            service,
            f"operator speaks protocol {hello.protocol_version}; this server speaks {PROTOCOL_MAJOR}.x — "
            "install a matching operator version",
            4400,
        )
        return
    if hello.backend != backend:
        await _refuse(
            ws,
            service,
            f"hello names backend {hello.backend!r} but the URL names {backend!r}",
            4400,
        )
        return
    # Checked before the claim too, so that while the backend's own operator is connected an
    # operator of another cluster hears why it can never take the name.
    conflict = await cluster_conflict(service.lifecycle, backend, hello.cluster_id)
    if conflict is not None:
        await _refuse(ws, service, conflict, 4409)
        return
    if not service.hub.claim(backend):
        await _refuse(
            ws, service, f"backend {backend!r} is already connected from another operator", 4409
        )
        return
    try:
        # Again under the claim: another cluster may have registered it meanwhile.
        conflict = await cluster_conflict(service.lifecycle, backend, hello.cluster_id)
        if conflict is not None:
            await _refuse(ws, service, conflict, 4409)
            return
        # Launches the previous connection left unacknowledged are not replayed: reconcile
        # re-derives every launch still due (``resend``), and an old one may be of a task that
        # has ended meanwhile (failed with a backend error, and retried). Launches made from
        # here on (e.g. retries of tasks reconcile finds lost) are sent once attached.
        service.hub.drop_pending(backend, "launch_group")
        forget, resend = await reconcile(service.lifecycle, hello, hello.executor)
        offsets = {
            key_of(r): service.logs.size(r.workflow_id, r.task, r.retry_id) for r in hello.tasks
        }
        await service.hub.send_unacked(
            ws,
            Welcome(
                backend=backend,
                server_version=__version__,
                heartbeat_interval=service.settings.heartbeat_interval,
                log_offsets=offsets,
                finished=forget,
            ),
        )
        link = service.hub.link(backend)
        link.last_heartbeat = time.time()
        service.scheduler.ledger.set_nodes(backend, hello.nodes)
        connection = await service.hub.attach(backend, ws, hello.nodes)
    finally:
        service.hub.unclaim(backend)  # attached by now (or failed): the socket holds it
    for launch in resend:
        await service.hub.send(backend, launch)
    if forget:
        await service.hub.send(backend, StopTasks(tasks=forget, reason="already finished"))
    service.scheduler.wake()
    log.info(
        "operator for backend %s connected (%s, %d nodes)",
        backend,
        hello.executor,
        len(hello.nodes),
    )
    try:
        while True:
            raw = await ws.receive_text()
            was_online = service.hub.is_online(backend)
            link.last_heartbeat = time.time()
            if not was_online:
                log.info("backend %s is heard from again", backend)
                service.scheduler.wake()
            try:
                env = Envelope.model_validate_json(raw)
            except ValidationError as exc:
                log.error("unreadable message from backend %s dropped: %s", backend, exc)
                continue
            try:
                await _handle(service, backend, env)
            except ValidationError as exc:
                # It can never be handled; closing would only make the operator replay it
                # after every reconnect. (Lost task states come back with the next hello.)
                log.error(
                    "malformed %r message from backend %s dropped: %s", env.type, backend, exc
                )
            if env.type != "ack":
                await service.hub.send_unacked(ws, Ack(ids=[env.id]))
    except WebSocketDisconnect:
        pass
    except Exception:
        log.exception("operator connection for %s failed", backend)
    finally:
        service.hub.detach(backend, connection)
        log.info("operator for backend %s disconnected", backend)


async def _handle(service: Service, backend: str, env: Envelope) -> None:
    body = env.body | {"type": env.type}
    if env.type == "task_status":
        batch = TaskStatusBatch.model_validate(body)
        await service.lifecycle.apply_reports(backend, batch.reports)
        if service.logs.archive_url:
            for r in batch.reports:
                if r.status not in ("INITIALIZING", "RUNNING"):
                    # The backend sends a task's whole log before its final status.
                    asyncio.get_running_loop().run_in_executor(
                        None, service.logs.archive, r.workflow_id, r.task, r.retry_id
                    )
    elif env.type == "log":
        chunk = LogChunk.model_validate(body)
        data = chunk.data.encode("utf-8", "surrogateescape")
        # Same-length masks keep byte offsets aligned with the backend's log.
        for secret in await service.lifecycle.masks_for(chunk.workflow_id):
            raw = secret.encode()
            data = data.replace(raw, b"*" * len(raw))
        service.logs.append(chunk.workflow_id, chunk.task, chunk.retry_id, chunk.offset, data)
        await service.logs.notify()
    elif env.type == "heartbeat":
        hb = Heartbeat.model_validate(body)
        if hb.nodes is not None:
            service.scheduler.ledger.set_nodes(backend, hb.nodes)
            service.hub.link(backend).nodes = hb.nodes
            service.scheduler.wake()
        await record_heartbeat(service.lifecycle, backend, time.time(), hb.nodes)
    elif env.type == "ack":
        service.hub.ack(backend, Ack.model_validate(body).ids)
    else:
        log.warning("unknown message type %r from backend %s", env.type, backend)
