"""What the operator calls to drive and observe tasks; everything goes through the task dir.

None of these talk to the supervisor other than by files and signals, so they work the same
from a restarted operator as from the one that spawned the task.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

from .launch import TaskLaunch
from .taskdir import ExitInfo, TaskDir, proc_start_time, read_json, write_json_atomic

DEFAULT_LOG_CHUNK = 1 << 20


@dataclass(frozen=True)
class TaskStatus:
    """A snapshot of a task dir.

    ``state`` is the supervisor's last state (None before it wrote one); ``exit`` is set once
    exit.json exists. ``lost`` means the supervisor died without writing exit.json (it was
    killed, or the host rebooted): the exit code is unknown and the task is not running.
    """

    state: str | None
    supervisor_pid: int | None
    supervisor_alive: bool
    started_at: float | None
    exit: ExitInfo | None

    @property
    def done(self) -> bool:
        return self.exit is not None

    @property
    def lost(self) -> bool:
        return self.supervisor_pid is not None and not self.supervisor_alive and self.exit is None


def write_task(task_dir: str | os.PathLike[str], launch: TaskLaunch) -> TaskDir:
    """Create the task dir and its task.json (atomically) before spawning a supervisor."""
    td = TaskDir(task_dir)
    td.root.mkdir(parents=True, exist_ok=True)
    tmp = td.root / ".task.json.tmp"
    tmp.write_text(launch.model_dump_json())
    os.replace(tmp, td.task_json)
    return td


def _supervisor(td: TaskDir) -> tuple[int | None, bool]:
    """(pid, alive) of the task's supervisor; alive also checks the pid was not reused."""
    info = read_json(td.supervisor_json)
    if not isinstance(info, dict) or not isinstance(info.get("pid"), int):
        return None, False
    pid: int = info["pid"]
    start = proc_start_time(pid)
    return pid, start is not None and start == info.get("start_time")


def read_status(task_dir: str | os.PathLike[str]) -> TaskStatus:
    td = TaskDir(task_dir)
    # Liveness before exit.json: the supervisor writes exit.json and then exits, so in this
    # order "dead and no exit.json" can only mean it died without writing one.
    pid, alive = _supervisor(td)
    state = read_json(td.state)
    raw_exit = read_json(td.exit_json)
    exit_info = ExitInfo.model_validate(raw_exit) if isinstance(raw_exit, dict) else None
    return TaskStatus(
        state=state.get("state") if isinstance(state, dict) else None,
        supervisor_pid=pid,
        supervisor_alive=alive,
        started_at=state.get("started_at") if isinstance(state, dict) else None,
        exit=exit_info,
    )


def signal_task(task_dir: str | os.PathLike[str], sig: int = signal.SIGTERM) -> bool:
    """Send ``sig`` to the task's supervisor. SIGTERM stops the task gracefully (its whole
    process tree, SIGKILL after the grace period) and still yields exit.json; SIGKILL kills
    the supervisor and with it the sandbox, but leaves no exit.json. False if not running."""
    td = TaskDir(task_dir)
    pid, alive = _supervisor(td)
    if pid is None or not alive:
        return False
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def release_barrier(task_dir: str | os.PathLike[str]) -> None:
    """Let a task waiting at the group barrier start its command (idempotent)."""
    path = TaskDir(task_dir).barrier
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    os.close(fd)


def read_log(
    task_dir: str | os.PathLike[str], offset: int = 0, max_bytes: int = DEFAULT_LOG_CHUNK
) -> tuple[bytes, int]:
    """Bytes of output.log from ``offset`` (at most ``max_bytes``) and the offset to resume at.

    Chunks may end inside a line or a UTF-8 sequence; callers that need lines keep the tail.
    """
    try:
        with open(TaskDir(task_dir).output_log, "rb") as f:
            f.seek(offset)
            data = f.read(max_bytes)
    except FileNotFoundError:
        return b"", offset
    return data, offset + len(data)


def read_exit(task_dir: str | os.PathLike[str]) -> ExitInfo | None:
    raw = read_json(TaskDir(task_dir).exit_json)
    return ExitInfo.model_validate(raw) if isinstance(raw, dict) else None


def write_exit_for_lost(task_dir: str | os.PathLike[str], exit_code: int, error: str) -> None:
    """For the operator, after ``read_status(...).lost``: record an outcome so later readers
    do not have to re-derive it (the caller picks the code, e.g. 2002)."""
    td = TaskDir(task_dir)
    state = read_json(td.state)
    started = state.get("started_at") if isinstance(state, dict) else None
    finished = Path(td.output_log).stat().st_mtime if td.output_log.exists() else 0.0
    info = ExitInfo(
        exit_code=exit_code,
        phase="lost",
        started_at=started,
        finished_at=finished,
        error=error,
    )
    write_json_atomic(td.exit_json, info.model_dump())
