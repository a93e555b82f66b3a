"""Running the control plane under uvicorn on a socket we bind ourselves (clear bind errors)."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable

import uvicorn

from ..settings import Settings
from .app import create_app
from .context import Service

log = logging.getLogger(__name__)


class BindError(Exception):
    pass


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit this: without it, a response written as headers + body waits
    # for the client's delayed ACK (~40 ms per request on a kept-alive connection).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


async def serve(
    settings: Settings,
    sock: socket.socket,
    *,
    on_started: Callable[[Service, str], Awaitable[None]] | None = None,
    before_stop: Callable[[Service], Awaitable[None]] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM; ``before_stop`` runs while the service is still up."""
    service = Service(settings)
    if before_stop is not None:
        service.before_stop.append(before_stop)
    app = create_app(settings, service)
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=5,
        ws_max_size=64 * 1024 * 1024,
        ws_per_message_deflate=False,  # many small operator messages: deflate is CPU for nothing
        access_log=False,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            await task
            return
        await asyncio.sleep(0.01)
    if on_started is not None:
        await on_started(service, url_of(sock))
    await task
