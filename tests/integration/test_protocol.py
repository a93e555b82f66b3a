"""The operator protocol against a real server: uvicorn on 127.0.0.1, a real database (SQLite and
PostgreSQL), and a fake operator speaking ``Envelope`` messages over a real WebSocket.

The fake operator is backend ``local`` (the backend of pool ``default``) with one node, so the
scheduler admits what the tests submit over HTTP and sends ``launch_group`` to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import websockets
from pydantic import BaseModel
from websockets.exceptions import ConnectionClosed

from osmo.protocol import (
    PROTOCOL_MAJOR,
    PROTOCOL_VERSION,
    Envelope,
    Hello,
    LogChunk,
    NodeInfo,
    TaskReport,
    TaskStatusBatch,
    new_id,
)
from osmo.service.app import create_app
from osmo.service.server import bind, url_of
from osmo.settings import Settings

pytestmark = pytest.mark.integration

TOKEN = "operator-test-token"
BACKEND = "local"
NODES = [NodeInfo(name="node-a", cpus=8, memory_bytes=16 * 2**30)]
TIMEOUT = 20.0


# ---- the server ---------------------------------------------------------------------------


class ServerThread:
    """The osmo app under uvicorn, in a thread with its own event loop, on 127.0.0.1:0."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.sock = bind("127.0.0.1", 0)
        self.url = url_of(self.sock)
        self.server: uvicorn.Server | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="osmo-test-server", daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            config = uvicorn.Config(
                create_app(self.settings), log_level="warning", lifespan="on", access_log=False
            )
            self.server = uvicorn.Server(config)
            await self.server.serve(sockets=[self.sock])

        try:
            asyncio.run(main())
        except BaseException as exc:
            self.error = exc

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not (self.server is not None and self.server.started):
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {self.error!r}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()
        assert not self.thread.is_alive(), "server thread did not stop"


@pytest.fixture
def server(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ServerThread]:
    home = tmp_path / "home"
    monkeypatch.setenv("OSMO_HOME", str(home))  # no config.yaml of the developer's leaks in
    settings = Settings(
        home=home, host="127.0.0.1", database_url=database_url, operator_tokens=TOKEN
    )
    s = ServerThread(settings)
    s.start()
    try:
        yield s
    finally:
        s.stop()


# ---- the fake operator --------------------------------------------------------------------


class FakeOperator:
    """Speaks the protocol by hand: hello, then envelopes in both directions."""

    def __init__(self, server_url: str, *, token: str = TOKEN, backend: str = BACKEND):
        self.url = server_url.replace("http://", "ws://") + f"/api/agent/operator/{backend}"
        self.token = token
        self.backend = backend
        self.auto_ack = True
        self.inbox: list[Envelope] = []
        self.acked: set[str] = set()
        self.seq = 0
        self.ws: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()

    async def connect(
        self,
        *,
        tasks: list[TaskReport] | None = None,
        protocol_version: str = PROTOCOL_VERSION,
        hello_backend: str | None = None,
    ) -> Envelope:
        """Sends the hello; returns the server's first message (welcome or refuse)."""
        self.ws = await websockets.connect(
            self.url,
            additional_headers={"Authorization": f"Bearer {self.token}"},
            open_timeout=10,
            max_size=None,
        )
        hello = Hello(
            backend=hello_backend or self.backend,
            version="test",
            executor="fake",
            protocol_version=protocol_version,
            nodes=NODES,
            tasks=tasks or [],
        )
        # A refusal may come before the hello is through; it is still there to be read.
        with contextlib.suppress(ConnectionClosed):
            await self.send(hello)
        first = Envelope.model_validate_json(await asyncio.wait_for(self.ws.recv(), TIMEOUT))
        if first.type == "welcome":
            self._reader = asyncio.create_task(self._read())
        return first

    async def close_code(self) -> tuple[int | None, str | None]:
        """Waits for the server to close the socket; returns its close code and reason."""
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(self.ws.recv(), TIMEOUT)
        rcvd = info.value.rcvd
        return (rcvd.code, rcvd.reason) if rcvd else (None, None)

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                env = Envelope.model_validate_json(raw)
                if env.type == "ack":
                    self.acked.update(env.body["ids"])
                else:
                    self.inbox.append(env)
                    if self.auto_ack:
                        await self.ack(env)
                async with self._changed:
                    self._changed.notify_all()
        except ConnectionClosed:
            pass

    async def send(self, message: BaseModel, *, id: str | None = None) -> str:
        body = message.model_dump(mode="json")
        self.seq += 1
        env = Envelope(type=body.pop("type"), id=id or new_id(), seq=self.seq, body=body)
        await self.ws.send(env.model_dump_json())
        return env.id

    async def report(self, *reports: TaskReport, id: str | None = None) -> str:
        return await self.send(TaskStatusBatch(reports=list(reports)), id=id)

    async def ack(self, env: Envelope) -> None:
        await self.ws.send(Envelope(type="ack", body={"ids": [env.id]}).model_dump_json())

    async def _wait(self, ready: Callable[[], bool], what: str) -> None:
        async def loop() -> None:
            async with self._changed:
                while not ready():
                    await self._changed.wait()

        try:
            await asyncio.wait_for(loop(), TIMEOUT)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}; inbox: {self.inbox}") from None

    async def expect(
        self, type: str, where: Callable[[dict[str, Any]], bool] = lambda b: True
    ) -> Envelope:
        """The next message of ``type`` whose body matches (taken out of the inbox)."""
        found: list[Envelope] = []

        def ready() -> bool:
            for env in self.inbox:
                if env.type == type and where(env.body):
                    found.append(env)
                    self.inbox.remove(env)
                    return True
            return False

        await self._wait(ready, f"a {type} message")
        return found[0]

    async def launch_of(self, workflow_id: str, retry_id: int = 0) -> Envelope:
        return await self.expect(
            "launch_group",
            lambda b: (
                b["workflow_id"] == workflow_id
                and any(t["retry_id"] == retry_id for t in b["tasks"])
            ),
        )

    async def wait_acked(self, *ids: str) -> None:
        await self._wait(lambda: set(ids) <= self.acked, f"acks of {ids}")

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await self._reader


async def reconnect(server_url: str, **hello: Any) -> tuple[FakeOperator, Envelope]:
    """A new connection once the server has let go of the previous one."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        op = FakeOperator(server_url)
        first = await op.connect(**hello)
        if first.type == "welcome":
            return op, first
        await op.close()
        assert "already connected" in first.body["message"], first
        assert time.monotonic() < deadline, "the server never let go of the old connection"
        await asyncio.sleep(0.05)


# ---- HTTP ---------------------------------------------------------------------------------


def spec(name: str, task: str = "work") -> str:
    return f"""
workflow:
  name: {name}
  tasks:
  - name: {task}
    image: ubuntu:24.04
    command: [sh, -c, "echo hi"]
    resources:
      cpu: 1
      memory: 1Gi
"""


async def submit(http: httpx.AsyncClient, name: str, task: str = "work") -> str:
    r = await http.post("/api/pool/default/workflow", json={"file": spec(name, task)})
    assert r.status_code == 200, r.text
    wf_id: str = r.json()["id"]
    return wf_id


async def query(http: httpx.AsyncClient, wf_id: str) -> dict[str, Any]:
    r = await http.get(f"/api/workflow/{wf_id}", params={"verbose": "true"})
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


async def tasks_of(http: httpx.AsyncClient, wf_id: str) -> list[dict[str, Any]]:
    wf = await query(http, wf_id)
    return sorted((t for g in wf["groups"] for t in g["tasks"]), key=lambda t: t["retry_id"])


async def events(http: httpx.AsyncClient, wf_id: str) -> list[str]:
    r = await http.get(f"/api/workflow/{wf_id}/events")
    assert r.status_code == 200, r.text
    return [e["message"] for e in r.json()["events"]]


async def until(
    probe: Callable[[], Awaitable[Any]], check: Callable[[Any], bool], what: str
) -> Any:
    deadline = time.monotonic() + TIMEOUT
    while True:
        value = await probe()
        if check(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {value}")
        await asyncio.sleep(0.05)


async def status_is(http: httpx.AsyncClient, wf_id: str, status: str) -> dict[str, Any]:
    result: dict[str, Any] = await until(
        lambda: query(http, wf_id), lambda wf: wf["status"] == status, f"{wf_id} {status}"
    )
    return result


async def task_status_is(
    http: httpx.AsyncClient, wf_id: str, status: str, retry_id: int = 0
) -> dict[str, Any]:
    def check(tasks: list[dict[str, Any]]) -> bool:
        return any(t["retry_id"] == retry_id and t["status"] == status for t in tasks)

    tasks = await until(lambda: tasks_of(http, wf_id), check, f"{wf_id} retry {retry_id} {status}")
    found: dict[str, Any] = next(t for t in tasks if t["retry_id"] == retry_id)
    return found


def report(wf_id: str, status: str, task: str = "work", retry_id: int = 0, **kw: Any) -> TaskReport:
    return TaskReport(workflow_id=wf_id, task=task, retry_id=retry_id, status=status, **kw)


def run(server: ServerThread, scenario: Callable[[httpx.AsyncClient], Awaitable[None]]) -> None:
    async def main() -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as http:
            await scenario(http)

    asyncio.run(main())


# ---- refusals -----------------------------------------------------------------------------


def test_wrong_token_is_refused_with_a_clear_message(server: ServerThread) -> None:
    async def scenario(http: httpx.AsyncClient) -> None:
        op = FakeOperator(server.url, token="not-the-token")
        first = await op.connect()
        assert first.type == "refuse", first
        assert re.search(r"invalid.* operator token", first.body["message"]), first
        assert (await op.close_code())[0] == 4401
        # Nothing was registered: the real operator still gets in.
        good = FakeOperator(server.url)
        assert (await good.connect()).type == "welcome"
        await good.close()

    run(server, scenario)


def test_other_protocol_major_is_refused_naming_both_versions(server: ServerThread) -> None:
    async def scenario(http: httpx.AsyncClient) -> None:
        op = FakeOperator(server.url)
        first = await op.connect(protocol_version="2.0")
        assert first.type == "refuse", first
        message = first.body["message"]
        assert "2.0" in message and f"{PROTOCOL_MAJOR}.x" in message, message
        assert (await op.close_code())[0] == 4400

    run(server, scenario)


def test_hello_for_another_backend_than_the_url_is_refused(server: ServerThread) -> None:
    async def scenario(http: httpx.AsyncClient) -> None:
        op = FakeOperator(server.url)
        first = await op.connect(hello_backend="elsewhere")
        assert first.type == "refuse", first
        assert "'elsewhere'" in first.body["message"] and "'local'" in first.body["message"]

    run(server, scenario)


def test_second_operator_for_a_connected_backend_is_refused(server: ServerThread) -> None:
    async def scenario(http: httpx.AsyncClient) -> None:
        first = FakeOperator(server.url)
        assert (await first.connect()).type == "welcome"
        second = FakeOperator(server.url)
        refusal = await second.connect()
        assert refusal.type == "refuse", refusal
        assert "already connected" in refusal.body["message"]
        assert (await second.close_code())[0] == 4409
        # The first connection is untouched: it still gets work.
        wf_id = await submit(http, "still-first")
        await first.launch_of(wf_id)
        await first.close()
        # Once it is gone the backend can be claimed again.
        again, _ = await reconnect(server.url)
        await again.close()

    run(server, scenario)


def test_simultaneous_claims_of_one_backend_admit_exactly_one(server: ServerThread) -> None:
    async def scenario(http: httpx.AsyncClient) -> None:
        ops = [FakeOperator(server.url) for _ in range(4)]
        firsts = await asyncio.gather(*(op.connect() for op in ops))
        kinds = sorted(f.type for f in firsts)
        assert kinds == ["refuse", "refuse", "refuse", "welcome"], firsts
        winner = ops[[f.type for f in firsts].index("welcome")]
        wf_id = await submit(http, "one-winner")
        await winner.launch_of(wf_id)
        for op in ops:
            await op.close()

    run(server, scenario)


# ---- idempotence --------------------------------------------------------------------------


def test_duplicate_status_reports_are_harmless(server: ServerThread) -> None:
    async def scenario(http: httpx.AsyncClient) -> None:
        op = FakeOperator(server.url)
        assert (await op.connect()).type == "welcome"
        wf_id = await submit(http, "dupes")
        launch = await op.launch_of(wf_id)
        assert [t["task"] for t in launch.body["tasks"]] == ["work"]

        running = report(wf_id, "RUNNING", node="node-a")
        r1 = await op.report(running)
        r2 = await op.report(running)  # same content, new id
        r3 = await op.report(running, id=r1)  # the same message again
        await op.wait_acked(r1, r2, r3)
        await status_is(http, wf_id, "RUNNING")

        done = report(wf_id, "COMPLETED", exit_code=0)
        c1 = await op.report(done)
        c2 = await op.report(done, id=c1)
        c3 = await op.report(done)
        await op.wait_acked(c1, c2, c3)
        wf = await status_is(http, wf_id, "COMPLETED")
        first_events = await events(http, wf_id)

        # Late duplicates, after the end, of every kind.
        late = [await op.report(done, id=c1), await op.report(done), await op.report(running)]
        late.append(await op.report(report(wf_id, "FAILED", exit_code=9)))
        await op.wait_acked(*late)
        after = await query(http, wf_id)
        assert after["status"] == "COMPLETED"
        assert after["finished_at"] == wf["finished_at"]
        (task,) = await tasks_of(http, wf_id)
        assert (task["status"], task["exit_code"], task["retry_id"]) == ("COMPLETED", 0, 0)

        messages = await events(http, wf_id)
        assert messages == first_events
        assert len(messages) == len(set(messages)), messages
        assert sum("is RUNNING" in m for m in messages) == 1, messages
        assert sum(m.startswith("task work finished") for m in messages) == 1, messages
        assert sum(m.startswith("workflow finished") for m in messages) == 1, messages
        await op.close()

    run(server, scenario)


def test_replayed_log_chunks_are_stored_once(server: ServerThread) -> None:
    async def scenario(http: httpx.AsyncClient) -> None:
        op = FakeOperator(server.url)
        assert (await op.connect()).type == "welcome"
        wf_id = await submit(http, "logs")
        await op.launch_of(wf_id)
        r = await op.report(report(wf_id, "RUNNING"))

        def chunk(offset: int, data: str) -> LogChunk:
            return LogChunk(workflow_id=wf_id, task="work", retry_id=0, offset=offset, data=data)

        first = await op.send(chunk(0, "one\ntwo\n"))
        ids = [
            r,
            first,
            await op.send(chunk(4, "two\nthree\n")),  # overlaps the first by 4 bytes
            await op.send(chunk(0, "one\ntwo\n"), id=first),  # the same message again
            await op.send(chunk(0, "one\n")),  # old bytes only
            await op.send(chunk(8, "three\n")),  # exactly what is stored already
        ]
        await op.wait_acked(*ids)

        async def logs() -> str:
            resp = await http.get(f"/api/workflow/{wf_id}/logs", params={"task_name": "work"})
            assert resp.status_code == 200, resp.text
            return resp.text

        assert await logs() == "one\ntwo\nthree\n"

        # After a reconnect the server says how much it has; a replay from before that point
        # still adds only the new bytes.
        await op.close()
        held = report(wf_id, "RUNNING", log_size=len("one\ntwo\nthree\nfour\n"))
        op, welcome = await reconnect(server.url, tasks=[held])
        assert welcome.body["log_offsets"] == {f"{wf_id}/work/0": len("one\ntwo\nthree\n")}
        await op.wait_acked(await op.send(chunk(4, "two\nthree\nfour\n")))
        assert await logs() == "one\ntwo\nthree\nfour\n"
        await op.wait_acked(await op.report(report(wf_id, "COMPLETED", exit_code=0)))
        await status_is(http, wf_id, "COMPLETED")
        assert await logs() == "one\ntwo\nthree\nfour\n"
        await op.close()

    run(server, scenario)


def test_log_chunks_cannot_name_paths_outside_the_log_folder(
    server: ServerThread, tmp_path: Path
) -> None:
    """An operator (say, a compromised edge host) must not write files on the control plane."""

    async def scenario(http: httpx.AsyncClient) -> None:
        op = FakeOperator(server.url)
        assert (await op.connect()).type == "welcome"
        outside = tmp_path / "outside"
        evil = [
            LogChunk(workflow_id="../../outside", task="x", retry_id=0, offset=0, data="pwn\n"),
            LogChunk(workflow_id=str(outside), task="x", retry_id=0, offset=0, data="pwn\n"),
            LogChunk(workflow_id="ok-1", task="../../../x", retry_id=0, offset=0, data="pwn\n"),
            LogChunk(workflow_id="..", task="x", retry_id=0, offset=0, data="pwn\n"),
        ]
        await op.wait_acked(*[await op.send(c) for c in evil])
        written = sorted(
            str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.name.endswith(".log")
        )
        assert written == [], written
        assert not outside.exists()
        # The connection is still good for real work.
        wf_id = await submit(http, "after-evil")
        await op.launch_of(wf_id)
        await op.close()

    run(server, scenario)


def test_malformed_messages_are_dropped_not_fatal(server: ServerThread) -> None:
    """A message that can never be handled is acknowledged and logged: closing the connection
    instead would make the operator replay it after every reconnect, forever."""

    async def scenario(http: httpx.AsyncClient) -> None:
        op = FakeOperator(server.url)
        assert (await op.connect()).type == "welcome"
        wf_id = await submit(http, "malformed")
        await op.launch_of(wf_id)
        bad = [
            Envelope(type="task_status", body={"reports": [{"task": "work"}]}),
            Envelope(type="log", body={"workflow_id": wf_id, "offset": "nine"}),
            Envelope(type="heartbeat", body={}),
        ]
        for env in bad:
            await op.ws.send(env.model_dump_json())
        await op.ws.send("this is not an envelope")
        await op.wait_acked(*(env.id for env in bad))
        # The same connection carries on.
        await op.wait_acked(await op.report(report(wf_id, "COMPLETED", exit_code=0)))
        await status_is(http, wf_id, "COMPLETED")
        await op.close()

    run(server, scenario)


# ---- reconnect and reconciliation ---------------------------------------------------------


def test_reconnect_reconciles_the_hello_task_list(server: ServerThread) -> None:
    async def scenario(http: httpx.AsyncClient) -> None:
        op = FakeOperator(server.url)
        assert (await op.connect()).type == "welcome"
        op.auto_ack = False
        # finished: finishes while the operator is disconnected (reported in the next hello)
        # unacked: its launch never reaches the operator (never acknowledged)
        # running, initializing: the operator loses them (e.g. a host reboot)
        names = ["finished", "unacked", "running", "initializing"]
        wf = {n: await submit(http, n) for n in names}
        launches = {n: await op.launch_of(wf[n]) for n in names}
        for n in ("finished", "running", "initializing"):
            await op.ack(launches[n])
        ids = [
            await op.report(report(wf["finished"], "RUNNING", node="node-a")),
            await op.report(report(wf["running"], "RUNNING", node="node-a")),
            await op.report(report(wf["initializing"], "INITIALIZING", node="node-a")),
        ]
        await op.wait_acked(*ids)
        await task_status_is(http, wf["finished"], "RUNNING")
        await task_status_is(http, wf["running"], "RUNNING")
        await task_status_is(http, wf["initializing"], "INITIALIZING")
        assert (await task_status_is(http, wf["unacked"], "PROCESSING"))["exit_code"] is None
        await op.close()

        now = time.time()
        ended = report(
            wf["finished"],
            "FAILED",
            exit_code=42,
            message="exit 42",
            started_at=now - 5,
            finished_at=now - 1,
        )
        op, welcome = await reconnect(server.url, tasks=[ended])

        # Reported finished while disconnected: its real exit code, no retry (42 is no
        # RESCHEDULE code of the pool), the workflow fails.
        t = await task_status_is(http, wf["finished"], "FAILED")
        assert t["exit_code"] == 42
        assert len(await tasks_of(http, wf["finished"])) == 1
        await status_is(http, wf["finished"], "FAILED")

        # Never acknowledged: launched again, still the first try.
        launch = await op.launch_of(wf["unacked"])
        assert [(x["task"], x["retry_id"]) for x in launch.body["tasks"]] == [("work", 0)]
        assert (await task_status_is(http, wf["unacked"], "PROCESSING"))["exit_code"] is None

        # Lost by the backend: FAILED_BACKEND_ERROR (3001), which pool default's exit action
        # RESCHEDULE 3001 turns into a retry that is launched at once.
        for n in ("running", "initializing"):
            old = await task_status_is(http, wf[n], "RESCHEDULED", retry_id=0)
            assert old["exit_code"] == 3001, old
            assert "no longer knows" in (old["message"] or ""), old
            await task_status_is(http, wf[n], "PROCESSING", retry_id=1)
            launch = await op.launch_of(wf[n], retry_id=1)
            assert [(x["task"], x["retry_id"]) for x in launch.body["tasks"]] == [("work", 1)]
            assert any("rescheduled as retry 1" in m for m in await events(http, wf[n]))

        # Everything runs to the end on the new connection.
        for n, retry in (("unacked", 0), ("running", 1), ("initializing", 1)):
            await op.wait_acked(
                await op.report(report(wf[n], "RUNNING", retry_id=retry)),
                await op.report(report(wf[n], "COMPLETED", retry_id=retry, exit_code=0)),
            )
            await status_is(http, wf[n], "COMPLETED")
        await op.close()

        # A hello listing a task the server already has final: the operator may forget it.
        op, welcome = await reconnect(server.url, tasks=[ended])
        assert welcome.body["finished"] == [
            {"workflow_id": wf["finished"], "task": "work", "retry_id": 0}
        ]
        stop = await op.expect("stop_tasks")
        assert stop.body["tasks"] == welcome.body["finished"]
        assert (await tasks_of(http, wf["finished"]))[0]["exit_code"] == 42
        await op.close()

    run(server, scenario)
