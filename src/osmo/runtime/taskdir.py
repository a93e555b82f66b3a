"""Layout of a task directory, shared by the operator (writer of task.json) and the supervisor.

    <task_dir>/
      task.json        TaskLaunch, written by the operator before spawning
      supervisor.json  {pid, start_time, sandbox}: written once, exclusively, by the supervisor
      state            {"state", "time", "started_at"}:
                       initializing → ready → running → [uploading →] done
      barrier          created by the operator when every task of the group is ready
      output.log       stdout+stderr of the command, written by the command itself
      supervisor.log   the supervisor's own diagnostics (never shown as task output)
      exit.json        {exit_code, phase, started_at, finished_at, error, terminated, sandbox}
      input/<i>/       downloaded inputs        (/osmo/data/input/<i> in the sandbox, read-only)
      output/          the task's output folder (/osmo/data/output)
      tmp/             the task's private /tmp
      home/            the task's $HOME         (/osmo/home)
      files/           injected files that are bind-mounted at their absolute paths

Every JSON file is written to a temporary name and renamed, so readers see all or nothing.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

STATES = ("initializing", "ready", "running", "uploading", "done")


class TaskDir:
    __slots__ = ("root",)

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()

    def __repr__(self) -> str:
        return f"TaskDir({str(self.root)!r})"

    @property
    def task_json(self) -> Path:
        return self.root / "task.json"

    @property
    def supervisor_json(self) -> Path:
        return self.root / "supervisor.json"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def barrier(self) -> Path:
        return self.root / "barrier"

    @property
    def output_log(self) -> Path:
        return self.root / "output.log"

    @property
    def supervisor_log(self) -> Path:
        return self.root / "supervisor.log"

    @property
    def exit_json(self) -> Path:
        return self.root / "exit.json"

    @property
    def input_root(self) -> Path:
        return self.root / "input"

    def input(self, index: int) -> Path:
        return self.root / "input" / str(index)

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def files(self) -> Path:
        return self.root / "files"


def _tmp_name(path: Path) -> str:
    return f"{path.parent}/.{path.name}.{os.getpid()}.tmp"


def _write_new(name: str, data: Any) -> None:
    # One write() of the whole document: these files are written on every task's hot path.
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(json.dumps(data).encode())
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = _tmp_name(path)
    _write_new(tmp, data)
    os.replace(tmp, path)


def write_json_exclusive(path: Path, data: Any) -> bool:
    """Write ``path`` atomically unless it already exists; False if it did (no overwrite).

    link() fails on an existing target, which makes this a lock as well as an atomic write.
    """
    tmp = _tmp_name(path)
    _write_new(tmp, data)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)
    return True


def read_json(path: Path) -> Any | None:
    """Contents of a JSON file, or None when it is missing (or, never expected, torn)."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except FileNotFoundError:
        return None
    except ValueError:
        return None


def write_state(td: TaskDir, state: str, started_at: float | None = None) -> None:
    data: dict[str, Any] = {"state": state, "time": time.time()}
    if started_at is not None:
        data["started_at"] = started_at
    write_json_atomic(td.state, data)


def proc_start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (field 22 of /proc/<pid>/stat).

    Together with the pid it identifies a process: a reused pid has a different start time.
    None when the process does not exist or is a zombie (dead, merely not reaped yet).
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may contain spaces and ')'; fields resume after the last ')'.
    fields = stat[stat.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


class ExitInfo(BaseModel):
    """exit.json: how the task ended. Written once, last, by the supervisor."""

    model_config = ConfigDict(extra="ignore")

    exit_code: int
    # Where it ended: initialize | download | barrier | run | upload | done (all steps ran).
    phase: str
    started_at: float | None = None  # when the command was started (None: it never was)
    finished_at: float
    error: str | None = None
    terminated: bool = False  # stopped on request (SIGTERM); the output was not uploaded
    sandbox: str = "none"  # "bwrap" or "none" (fallback, no isolation)
