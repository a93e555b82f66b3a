"""Helpers for runtime tests: real supervisors, real bwrap; every process started is stopped."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from osmo.runtime import TaskLaunch, TaskStatus, read_status, write_task
from osmo.runtime.supervisor import detach
from osmo.runtime.taskdir import TaskDir, proc_start_time, read_json

WAIT = 60.0  # generous: CI machines can be slow; nothing here asserts on timing


def launch(**kw: Any) -> TaskLaunch:
    base: dict[str, Any] = {"workflow_id": "wf-1", "group": "g", "task": "t", "command": ["true"]}
    base.update(kw)
    return TaskLaunch.model_validate(base)


def wait_for(pred: Any, timeout: float = WAIT, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def wait_state(task_dir: Path, state: str) -> TaskStatus:
    def reached() -> bool:
        st = read_status(task_dir)
        return st.state == state or st.done

    wait_for(reached, what=f"state {state} in {task_dir}")
    return read_status(task_dir)


def wait_done(task_dir: Path) -> TaskStatus:
    wait_for(lambda: read_status(task_dir).done, what=f"exit.json in {task_dir}")
    # The supervisor exits right after writing exit.json and state; wait so nothing leaks.
    wait_for(lambda: not read_status(task_dir).supervisor_alive, what="supervisor exit")
    return read_status(task_dir)


def kill_supervisor(task_dir: Path) -> None:
    info = read_json(TaskDir(task_dir).supervisor_json)
    if isinstance(info, dict) and proc_start_time(info["pid"]) == info.get("start_time"):
        os.kill(info["pid"], signal.SIGKILL)  # its sandbox dies with it (--die-with-parent)


class Runner:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: list[Path] = []
        self._n = 0

    def start(self, name: str | None = None, **kw: Any) -> Path:
        self._n += 1
        task_dir = self.root / "tasks" / (name or f"t{self._n}")
        write_task(task_dir, launch(**kw))
        detach(task_dir)
        self.started.append(task_dir)
        return task_dir

    def run(self, name: str | None = None, **kw: Any) -> tuple[Path, TaskStatus]:
        task_dir = self.start(name, **kw)
        return task_dir, wait_done(task_dir)

    def stop_all(self) -> None:
        for task_dir in self.started:
            kill_supervisor(task_dir)


def log_text(task_dir: Path) -> str:
    try:
        return (task_dir / "output.log").read_text(errors="replace")
    except FileNotFoundError:
        return ""


def file_url(path: Path) -> str:
    return path.absolute().as_uri() + "/"
