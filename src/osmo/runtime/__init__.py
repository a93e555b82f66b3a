"""Per-task runtime of the local executor: task dirs, the supervisor, the sandbox, the zygote.

The operator's side of it:

    td = write_task(task_dir, TaskLaunch(...))     # task.json
    zygote = ZygoteClient(); await zygote.start()
    pid = await zygote.spawn(task_dir)             # supervisor.json exists on return
    read_status(task_dir)                          # state / alive / exit.json
    release_barrier(task_dir)                      # when the whole group is ready
    read_log(task_dir, offset)                     # -> (bytes, new_offset)
    signal_task(task_dir, signal.SIGTERM)          # graceful stop of the whole tree
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .control import (
    TaskStatus,
    read_exit,
    read_log,
    read_status,
    release_barrier,
    signal_task,
    write_exit_for_lost,
    write_task,
)
from .launch import FileSpec, InputSource, OutputTarget, TaskLaunch
from .taskdir import ExitInfo, TaskDir
from .tokens import TokenContext, TokenError, substitute

if TYPE_CHECKING:
    from .zygote import ZygoteClient, ZygoteError


def __getattr__(name: str) -> Any:
    # Imported lazily so that `python -m osmo.runtime.zygote` / `.supervisor` do not find
    # their own module already imported by this package (runpy warns about that).
    if name in ("ZygoteClient", "ZygoteError"):
        from . import zygote

        return getattr(zygote, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ExitInfo",
    "FileSpec",
    "InputSource",
    "OutputTarget",
    "TaskDir",
    "TaskLaunch",
    "TaskStatus",
    "TokenContext",
    "TokenError",
    "ZygoteClient",
    "ZygoteError",
    "read_exit",
    "read_log",
    "read_status",
    "release_barrier",
    "signal_task",
    "substitute",
    "write_exit_for_lost",
    "write_task",
]
