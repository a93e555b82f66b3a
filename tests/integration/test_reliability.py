"""Crashes and stalls with the LOCAL executor: real task processes under their supervisors, a real
``osmo operator start`` and a real ``osmo server start`` (heartbeat 0.5s, offline after 3s, tasks
failed with a backend error after 8s; see ``Cluster``).

Each test kills or stops one side while a task runs, lets the task do something meanwhile, and
checks what the control plane recorded: the task's real exit code, its whole log once, and each
event once. Task commands carry a unique ``sleep`` argument so the test can see their processes.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .cluster import Cluster

pytestmark = pytest.mark.integration

LOCAL = ("--executor", "local")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    c.start_server()
    try:
        yield c
    finally:
        c.stop()  # also kills task processes that outlived their operator


def marker() -> str:
    """A unique ``sleep`` argument: finds a task's processes in /proc."""
    return f"{uuid.uuid4().int % 1000:03d}"


def pids_with(text: str) -> list[int]:
    out = []
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            cmd = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd:
            out.append(int(pid_dir.name))
    return out


def wait_gone(text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while pids_with(text):
        assert time.monotonic() < deadline, f"processes running {text!r} did not end"
        time.sleep(0.1)


def workflow(name: str, command: str, **extra: str) -> str:
    lines = [
        "workflow:",
        f"  name: {name}",
        "  tasks:",
        "  - name: t",
        "    image: alpine",
        f"    command: [sh, -c, '{command}']",
    ]
    lines += [f"    {k}: {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def attempts(cluster: Cluster, wf_id: str) -> list[tuple[int, str, int | None]]:
    wf = cluster.query(wf_id, verbose=True)
    return sorted(
        (t["retry_id"], t["status"], t["exit_code"]) for g in wf["groups"] for t in g["tasks"]
    )


def log_of(cluster: Cluster, wf_id: str, retry_id: int | None = None) -> str:
    assert cluster.http is not None
    params: dict[str, Any] = {"task_name": "t"}
    if retry_id is not None:
        params["retry_id"] = retry_id
    r = cluster.http.get(f"/api/workflow/{wf_id}/logs", params=params)
    assert r.status_code == 200, r.text
    return r.text


def wait_log(cluster: Cluster, wf_id: str, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in log_of(cluster, wf_id):
        assert time.monotonic() < deadline, f"{text!r} never reached the log of {wf_id}"
        time.sleep(0.1)


def events(cluster: Cluster, wf_id: str) -> list[str]:
    """Event messages, each prefixed with its task and retry; asserted free of duplicates."""
    rows = cluster.get(f"/api/workflow/{wf_id}/events")["events"]
    out = [f"{e['task']}/{e['retry_id']}: {e['message']}" for e in rows]
    repeated = [m for m, n in Counter(out).items() if n > 1]
    assert not repeated, f"events recorded more than once: {repeated}"
    return out


def backend(cluster: Cluster, name: str = "local") -> dict[str, Any]:
    return next(b for b in cluster.get("/api/configs/backend")["backends"] if b["name"] == name)


# ---- (a) the operator dies; the task finishes without it --------------------------------------


def test_operator_killed_task_finishes_meanwhile_exit_code_and_log_recorded_once(
    cluster: Cluster,
) -> None:
    op = cluster.start_operator("local", *LOCAL)
    mark = marker()
    wf = cluster.submit(
        workflow(
            "crash",
            f"echo before 1; echo before 2; sleep 3.{mark}; echo after 1; echo after 2; exit 7",
        )
    )
    cluster.wait_tasks(wf, "RUNNING")
    wait_log(cluster, wf, "before 2\n")  # part of the log is with the server before the crash
    op.kill()
    cluster.stop_operator("local")
    # The task runs on under its supervisor and ends while no operator is there.
    assert pids_with(f"sleep 3.{mark}")
    wait_gone(f"sleep 3.{mark}")
    time.sleep(0.5)  # its supervisor records the exit code
    assert cluster.query(wf)["status"] == "RUNNING"  # nobody has told the control plane yet
    task_dir = cluster.home / "op-local" / "tasks" / wf / "t" / "0"
    assert task_dir.is_dir()

    cluster.start_operator("local", *LOCAL)
    done = cluster.wait(wf)
    assert done["status"] == "FAILED"
    assert attempts(cluster, wf) == [(0, "FAILED", 7)]
    assert log_of(cluster, wf) == "before 1\nbefore 2\nafter 1\nafter 2\n"
    history = events(cluster, wf)
    assert sum("is RUNNING" in e for e in history) == 1
    assert history.count("t/0: task t finished: FAILED (exit code 7)") == 1
    # Acknowledged: the operator forgot the task and removed its folder.
    deadline = time.monotonic() + 20
    while task_dir.exists():
        assert time.monotonic() < deadline, "the finished task's folder was never removed"
        time.sleep(0.1)


def test_exit_actions_apply_to_an_exit_code_recorded_after_the_operator_restarts(
    cluster: Cluster,
) -> None:
    op = cluster.start_operator("local", *LOCAL)
    mark = marker()
    wf = cluster.submit(
        workflow("complete7", f"echo working; sleep 2.{mark}; exit 7", exitActions="{COMPLETE: 7}")
    )
    cluster.wait_tasks(wf, "RUNNING")
    op.kill()
    cluster.stop_operator("local")
    wait_gone(f"sleep 2.{mark}")
    cluster.start_operator("local", *LOCAL)
    done = cluster.wait(wf)
    assert done["status"] == "COMPLETED"
    assert attempts(cluster, wf) == [(0, "COMPLETED", 7)]
    assert log_of(cluster, wf) == "working\n"


# ---- (b) the operator stalls past the offline window, not the error window ---------------------


def test_operator_stalled_goes_offline_then_back_and_its_task_completes(cluster: Cluster) -> None:
    op = cluster.start_operator("local", *LOCAL)
    mark = marker()
    wf = cluster.submit(workflow("stall", f"echo one; sleep 9.{mark}; echo two; exit 5"))
    cluster.wait_tasks(wf, "RUNNING")
    wait_log(cluster, wf, "one\n")
    op.send_signal(signal.SIGSTOP)
    try:
        stopped = time.monotonic()
        cluster.wait_online("local", online=False, timeout=20)
        assert time.monotonic() - stopped >= 2.0  # not before the offline window (3s)
        assert backend(cluster)["online"] is False
        pools = {p["name"]: p for p in cluster.get("/api/pool")["pools"]}
        assert pools["default"]["status"] == "OFFLINE"
        # An offline backend gets no new work.
        later = cluster.submit(workflow("later", "echo later; exit 0"))
        time.sleep(1.0)
        assert cluster.query(later)["status"] not in ("RUNNING", "COMPLETED")
    finally:
        op.send_signal(signal.SIGCONT)
    cluster.wait_online("local", timeout=20)
    # Within the error window nothing was failed: the task ends on its own, with its own code.
    done = cluster.wait(wf)
    assert done["status"] == "FAILED"
    assert attempts(cluster, wf) == [(0, "FAILED", 5)]
    assert log_of(cluster, wf) == "one\ntwo\n"
    assert not any("backend" in e for e in events(cluster, wf))
    assert cluster.wait(later)["status"] == "COMPLETED"
    assert log_of(cluster, later) == "later\n"


# ---- (c) the operator stays down past the error window --------------------------------------


def test_operator_down_past_error_window_fails_tasks_and_retries_run_on_return(
    cluster: Cluster,
) -> None:
    op = cluster.start_operator("local", *LOCAL)
    cluster.put_pool("strict", {"backend": "local"})  # no exit actions: 3001 fails the workflow
    mark = marker()
    # The first attempt sleeps long; a retry (OSMO_RETRY_ID 1) finishes at once.
    command = (
        f'echo attempt $OSMO_RETRY_ID; [ "$OSMO_RETRY_ID" = 0 ] && exec sleep 60.{mark}; exit 0'
    )
    default = cluster.submit(workflow("resched", command))
    strict = cluster.submit(workflow("strict", command), pool="strict")
    cluster.wait_tasks(default, "RUNNING")
    cluster.wait_tasks(strict, "RUNNING")
    op.kill()
    cluster.stop_operator("local")

    # Past the error window (8s after the last heartbeat) both tasks fail with 3001.
    failed = cluster.wait(strict, timeout=60)
    assert failed["status"] == "FAILED_BACKEND_ERROR"
    assert attempts(cluster, strict) == [(0, "FAILED_BACKEND_ERROR", 3001)]
    message = failed["groups"][0]["tasks"][0]["message"]
    assert "backend local offline" in message, message
    # The default pool maps 3001 to RESCHEDULE: a retry waits for the backend to come back.
    deadline = time.monotonic() + 30
    while len(attempts(cluster, default)) < 2:
        assert time.monotonic() < deadline, attempts(cluster, default)
        time.sleep(0.1)
    first, retry = attempts(cluster, default)
    assert first == (0, "RESCHEDULED", 3001)
    assert retry[0] == 1 and retry[1] not in ("RUNNING", "COMPLETED", "FAILED")
    assert cluster.query(default)["status"] not in ("COMPLETED", "FAILED")
    # The first attempts still run on the host (their supervisors outlive the operator).
    assert pids_with(f"sleep 60.{mark}")

    cluster.start_operator("local", *LOCAL)
    done = cluster.wait(default, timeout=60)
    assert done["status"] == "COMPLETED"
    assert attempts(cluster, default) == [(0, "RESCHEDULED", 3001), (1, "COMPLETED", 0)]
    assert log_of(cluster, default, retry_id=1) == "attempt 1\n"
    assert log_of(cluster, default, retry_id=0) == "attempt 0\n"
    # The returning operator is told those attempts are over: it stops them...
    wait_gone(f"sleep 60.{mark}", timeout=30)
    # ...and their outcome stays the one recorded (not the exit code of the stop).
    assert attempts(cluster, strict) == [(0, "FAILED_BACKEND_ERROR", 3001)]
    assert attempts(cluster, default)[0] == (0, "RESCHEDULED", 3001)
    assert cluster.query(strict)["status"] == "FAILED_BACKEND_ERROR"
    history = events(cluster, default)
    # (A retry that ends at once may be seen finished before it is seen running.)
    assert sum(e.startswith("t/1:") and "is RUNNING" in e for e in history) <= 1, history
    assert history.count("t/1: task t finished: COMPLETED (exit code 0)") == 1, history
    assert history.count("t/0: task t exited with code 3001; rescheduled as retry 1") == 1
    events(cluster, strict)


def test_launch_never_acknowledged_is_not_replayed_after_its_task_was_retried(
    cluster: Cluster,
) -> None:
    """A launch the operator never read (it was stopped, then killed) must not run when the
    operator comes back after the task has failed with a backend error and been retried."""
    op = cluster.start_operator("local", *LOCAL)
    mark = marker()
    command = (
        f'echo attempt $OSMO_RETRY_ID; [ "$OSMO_RETRY_ID" = 0 ] && exec sleep 60.{mark}; exit 0'
    )
    op.send_signal(signal.SIGSTOP)
    # Admitted while the backend still counts as online (3s): the launch goes into the socket
    # of an operator that never reads it.
    wf = cluster.submit(workflow("unread", command))
    admitted = cluster.wait_tasks(wf, "PROCESSING", timeout=20)
    assert admitted["groups"][0]["tasks"][0]["backend"] == "local"
    op.kill()
    cluster.stop_operator("local")
    deadline = time.monotonic() + 60
    while len(attempts(cluster, wf)) < 2:
        assert time.monotonic() < deadline, attempts(cluster, wf)
        time.sleep(0.2)
    assert attempts(cluster, wf)[0] == (0, "RESCHEDULED", 3001)

    cluster.start_operator("local", *LOCAL)
    assert cluster.wait(wf, timeout=60)["status"] == "COMPLETED"
    assert attempts(cluster, wf) == [(0, "RESCHEDULED", 3001), (1, "COMPLETED", 0)]
    assert log_of(cluster, wf, retry_id=1) == "attempt 1\n"
    # The first attempt never ran: no process, no task folder, no log.
    time.sleep(2)
    assert not pids_with(f"sleep 60.{mark}")
    assert not (cluster.home / "op-local" / "tasks" / wf / "t" / "0").exists()
    assert log_of(cluster, wf, retry_id=0) == ""
    events(cluster, wf)


def test_server_restarted_while_the_operator_is_gone_still_fails_its_tasks(
    cluster: Cluster,
) -> None:
    """The error window also runs for a backend the restarted server has never heard from."""
    op = cluster.start_operator("local", *LOCAL)
    mark = marker()
    command = (
        f'echo attempt $OSMO_RETRY_ID; [ "$OSMO_RETRY_ID" = 0 ] && exec sleep 60.{mark}; exit 0'
    )
    wf = cluster.submit(workflow("orphan", command))
    cluster.wait_tasks(wf, "RUNNING")
    op.kill()
    cluster.stop_operator("local")
    port = cluster.port
    cluster.kill_server()
    cluster.start_server(port)
    assert backend(cluster)["online"] is False
    deadline = time.monotonic() + 60
    while len(attempts(cluster, wf)) < 2:
        assert time.monotonic() < deadline, attempts(cluster, wf)
        time.sleep(0.2)
    assert attempts(cluster, wf)[0] == (0, "RESCHEDULED", 3001)
    cluster.start_operator("local", *LOCAL)
    assert cluster.wait(wf, timeout=60)["status"] == "COMPLETED"
    assert attempts(cluster, wf) == [(0, "RESCHEDULED", 3001), (1, "COMPLETED", 0)]
    wait_gone(f"sleep 60.{mark}", timeout=30)
    events(cluster, wf)


# ---- (d) the server goes away; the operator replays what happened meanwhile -----------------


@pytest.fixture
def db_cluster(tmp_path: Path, database_url: str) -> Iterator[Cluster]:
    """A cluster on SQLite or PostgreSQL (the database outlives the server process)."""
    c = Cluster(tmp_path, database_url=database_url)
    c.start_server()
    try:
        yield c
    finally:
        c.stop()


def test_server_killed_task_finishes_meanwhile_replayed_once(db_cluster: Cluster) -> None:
    cluster = db_cluster
    op = cluster.start_operator("local", *LOCAL)
    mark = marker()
    wf = cluster.submit(
        workflow("replay", f"echo one; sleep 2.{mark}; echo two; sleep 1; echo three; exit 9")
    )
    cluster.wait_tasks(wf, "RUNNING")
    wait_log(cluster, wf, "one\n")
    port = cluster.port
    cluster.kill_server()
    # The task finishes while there is no server at all.
    wait_gone(f"sleep 2.{mark}")
    time.sleep(1.5)
    cluster.start_server(port)  # same database, same port: the operator dials it again
    done = cluster.wait(wf, timeout=60)
    assert op.poll() is None  # the same operator process all along
    assert done["status"] == "FAILED"
    assert attempts(cluster, wf) == [(0, "FAILED", 9)]
    assert log_of(cluster, wf) == "one\ntwo\nthree\n"
    history = events(cluster, wf)
    assert sum("is RUNNING" in e for e in history) == 1
    assert history.count("t/0: task t finished: FAILED (exit code 9)") == 1
    assert history.count("None/None: workflow finished: FAILED") == 1
    # The backend is online again on the new server, and new work runs.
    cluster.wait_online("local")
    after = cluster.submit(workflow("after", "echo again"))
    assert cluster.wait(after)["status"] == "COMPLETED"


def test_server_paused_messages_of_the_pause_delivered_once(cluster: Cluster) -> None:
    cluster.start_operator("local", *LOCAL)
    mark = marker()
    wf = cluster.submit(workflow("pause", f"echo one; sleep 1.{mark}; echo two; exit 4"))
    cluster.wait_tasks(wf, "RUNNING")
    wait_log(cluster, wf, "one\n")
    assert cluster.server is not None
    cluster.server.send_signal(signal.SIGSTOP)
    try:
        # The task ends and the operator sends its log and exit code into the stopped server.
        wait_gone(f"sleep 1.{mark}")
        time.sleep(4)  # past the offline window, as the server sees it when it wakes
    finally:
        cluster.server.send_signal(signal.SIGCONT)
    done = cluster.wait(wf, timeout=60)
    assert done["status"] == "FAILED"
    assert attempts(cluster, wf) == [(0, "FAILED", 4)]
    assert log_of(cluster, wf) == "one\ntwo\n"
    history = events(cluster, wf)
    assert history.count("t/0: task t finished: FAILED (exit code 4)") == 1
    cluster.wait_online("local")
