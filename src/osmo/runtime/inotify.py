"""Wait for a file to appear without burning CPU: inotify through ctypes, polling as fallback.

Many tasks may sit at a barrier at once; polling each every few ms would cost real CPU, so a
waiting supervisor sleeps in select() on an inotify descriptor instead.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import time
from pathlib import Path

_IN_MOVED_TO = 0x00000080
_IN_CREATE = 0x00000100
_IN_CLOEXEC = 0o2000000
_IN_NONBLOCK = 0o4000

_libc: ctypes.CDLL | None = None


def _load_libc() -> ctypes.CDLL | None:
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        except OSError:
            return None
    return _libc


def _inotify_fd(directory: Path) -> int | None:
    libc = _load_libc()
    if libc is None:
        return None
    fd = int(libc.inotify_init1(_IN_CLOEXEC | _IN_NONBLOCK))
    if fd < 0:
        return None
    wd = int(libc.inotify_add_watch(fd, os.fsencode(directory), _IN_CREATE | _IN_MOVED_TO))
    if wd < 0:
        os.close(fd)
        return None
    return fd


def wait_for_file(path: Path, timeout: float | None = None, poll: float = 0.01) -> bool:
    """Block until ``path`` exists; False on timeout. Signal handlers may interrupt it by raising.

    The existence check follows the watch set-up, so a file created in between is not missed.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    fd = _inotify_fd(path.parent)
    try:
        while True:
            if path.exists():
                return True
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            if fd is None:
                time.sleep(poll if remaining is None else min(poll, remaining))
                continue
            # A periodic re-check guards against lost events (e.g. queue overflow).
            wait = 1.0 if remaining is None else min(1.0, remaining)
            ready, _, _ = select.select([fd], [], [], wait)
            if ready:
                try:
                    while os.read(fd, 65536):
                        pass
                except BlockingIOError:
                    pass
    finally:
        if fd is not None:
            os.close(fd)
