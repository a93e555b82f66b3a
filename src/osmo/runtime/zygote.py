"""A warm, single-threaded process that forks task supervisors on request.

Starting a Python interpreter and importing pydantic costs ~100 ms; forking a process that has
already done so costs ~1 ms. The operator starts one zygote (``python -m osmo.runtime.zygote``)
and sends it one JSON line per task on stdin::

    {"id": 7, "op": "spawn", "task_dir": "/abs/task/dir"}
    -> {"id": 7, "pid": 12345}            or  {"id": 7, "error": "..."}
    {"id": 8, "op": "ping"}
    -> {"id": 8, "pid": <zygote pid>, "sandbox": "bwrap"}

On start it prints ``{"ready": true, "pid": ..., "sandbox": ...}`` once the sandbox probe is done.
Replies may come out of order (match them by ``id``): spawns overlap. Each supervisor is
double-forked into its own session with every inherited descriptor closed, so it outlives the
zygote and the operator (even SIGKILL of both). The zygote exits at EOF on stdin.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import selectors
import sys
from typing import Any

from .sandbox import sandbox_mode
from .supervisor import PendingSpawn, finish_detached, start_detached

log = logging.getLogger("osmo.runtime.zygote")


class ZygoteError(Exception):
    """The zygote is gone or refused a request."""


# ---------------------------------------------------------------------------------------------
# Server


def _reply(body: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(body) + "\n")
    sys.stdout.flush()


def _start(req: dict[str, Any], rid: Any) -> PendingSpawn | None:
    """Begin a request; returns a pending spawn, or None if it was answered at once."""
    op = req.get("op", "spawn")
    if op == "ping":
        _reply({"id": rid, "pid": os.getpid(), "sandbox": sandbox_mode()})
        return None
    if op != "spawn":
        _reply({"id": rid, "error": f"unknown op {op!r}"})
        return None
    task_dir = req.get("task_dir")
    if not isinstance(task_dir, str) or not os.path.isabs(task_dir):
        _reply({"id": rid, "error": f"task_dir must be an absolute path, got {task_dir!r}"})
        return None
    try:
        return start_detached(task_dir)
    except OSError as e:
        _reply({"id": rid, "error": f"fork failed: {e}"})
        return None


def serve() -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    mode = sandbox_mode()  # probe once here; every forked supervisor inherits the result
    gc.collect()
    gc.freeze()  # keep the collector from touching (and so copying) inherited pages
    _reply({"ready": True, "pid": os.getpid(), "sandbox": mode})
    # One loop over stdin and the reply pipes of supervisors being started: the next fork
    # does not wait for the previous supervisor to finish claiming its task dir.
    sel = selectors.DefaultSelector()
    stdin = sys.stdin.fileno()
    sel.register(stdin, selectors.EVENT_READ)
    pending: dict[int, tuple[Any, PendingSpawn, list[bytes]]] = {}
    buf = b""
    eof = False
    while not eof or pending:
        for key, _ in sel.select():
            if key.fd == stdin:
                chunk = os.read(stdin, 65536)
                if not chunk:
                    eof = True
                    sel.unregister(stdin)
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for raw in lines:
                    if not raw.strip():
                        continue
                    try:
                        req = json.loads(raw)
                        if not isinstance(req, dict):
                            raise ValueError("request must be a JSON object")
                    except ValueError as e:
                        _reply({"id": None, "error": f"bad request: {e}"})
                        continue
                    rid = req.get("id")
                    spawn = _start(req, rid)
                    if spawn is not None:
                        pending[spawn.fd] = (rid, spawn, [])
                        sel.register(spawn.fd, selectors.EVENT_READ)
            else:
                rid, spawn, chunks = pending[key.fd]
                data = os.read(key.fd, 4096)
                if data:
                    chunks.append(data)
                    continue
                sel.unregister(key.fd)
                del pending[key.fd]
                try:
                    _reply({"id": rid, "pid": finish_detached(spawn, b"".join(chunks))})
                except RuntimeError as e:
                    _reply({"id": rid, "error": str(e)})
    return 0


# ---------------------------------------------------------------------------------------------
# Client (asyncio)


class ZygoteClient:
    """The operator's handle on a zygote process. ``spawn`` never blocks the event loop.

    Requests are pipelined: many spawns may be in flight; the zygote answers them in order.
    If the zygote dies, pending requests fail with ZygoteError and the next ``spawn`` starts
    a new one (supervisors already running are unaffected).
    """

    def __init__(self, python: str = sys.executable, env: dict[str, str] | None = None) -> None:
        self._python = python
        self._env = env
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 0
        self._lock = asyncio.Lock()
        self.sandbox: str | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None and self._reader is not None

    async def start(self) -> None:
        """Start the zygote and wait until it is ready (imports and sandbox probe done)."""
        if self.running:
            return
        proc = await asyncio.create_subprocess_exec(
            self._python,
            "-m",
            "osmo.runtime.zygote",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=self._env,
            limit=1 << 20,
        )
        assert proc.stdout is not None
        line = await proc.stdout.readline()
        try:
            hello = json.loads(line)
        except ValueError:
            hello = {}
        if not hello.get("ready"):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise ZygoteError(f"zygote failed to start (said {line!r})")
        self.sandbox = hello.get("sandbox")
        self._proc = proc
        self._reader = asyncio.create_task(self._read_replies(proc))

    async def _read_replies(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        try:
            while line := await proc.stdout.readline():
                try:
                    reply = json.loads(line)
                except ValueError:
                    continue
                fut = self._pending.pop(reply.get("id"), None)
                if fut is not None and not fut.done():
                    fut.set_result(reply)
        finally:
            self._reader = None
            err = ZygoteError("the zygote exited")
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(err)
            self._pending.clear()

    async def _request(self, body: dict[str, Any]) -> dict[str, Any]:
        if not self.running:
            await self.start()
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        self._next_id += 1
        rid = self._next_id
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            async with self._lock:
                proc.stdin.write(json.dumps({**body, "id": rid}).encode() + b"\n")
                await proc.stdin.drain()
        except (ConnectionError, RuntimeError) as e:
            self._pending.pop(rid, None)
            raise ZygoteError(f"the zygote is gone: {e}") from e
        return await fut

    async def spawn(self, task_dir: str | os.PathLike[str]) -> int:
        """Start a supervisor for ``task_dir`` (task.json must be in it); returns its pid.

        When this returns, supervisor.json exists. Raises ZygoteError if the task dir already
        has a supervisor or the zygote failed.
        """
        reply = await self._request({"op": "spawn", "task_dir": os.path.abspath(task_dir)})
        if "pid" not in reply:
            raise ZygoteError(str(reply.get("error", "spawn failed")))
        return int(reply["pid"])

    async def ping(self) -> dict[str, Any]:
        return await self._request({"op": "ping"})

    async def close(self, timeout: float = 5.0) -> None:
        """Stop the zygote (EOF on its stdin). Supervisors keep running."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


if __name__ == "__main__":
    sys.exit(serve())
