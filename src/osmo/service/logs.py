"""Task logs: appended as backends stream them, kept in the log store after tasks end.

Appends carry the byte offset the backend read them at, so a replay after a reconnect or an
operator restart writes nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

log = logging.getLogger(__name__)


def _plain(name: str) -> bool:
    """A workflow id or task name usable as one path component (never a way out of the root)."""
    return name not in ("", ".", "..") and not any(c in name for c in "/\\\0")


class LogStore:
    def __init__(self, root: Path):
        self.root = root
        self._sizes: dict[Path, int] = {}
        self._changed = asyncio.Condition()

    def path(self, workflow_id: str, task: str, retry_id: int) -> Path:
        return self.root / workflow_id / f"{task}.{retry_id}.log"

    def size(self, workflow_id: str, task: str, retry_id: int) -> int:
        if not (_plain(workflow_id) and _plain(task)):
            return 0
        p = self.path(workflow_id, task, retry_id)
        if p not in self._sizes:
            try:
                self._sizes[p] = p.stat().st_size
            except FileNotFoundError:
                self._sizes[p] = 0
        return self._sizes[p]

    def append(self, workflow_id: str, task: str, retry_id: int, offset: int, data: bytes) -> None:
        if not (_plain(workflow_id) and _plain(task)):
            # Names come from operators: none may write outside the log folder.
            log.warning("log chunk for %r/%r ignored: not a task name", workflow_id, task)
            return
        p = self.path(workflow_id, task, retry_id)
        have = self.size(workflow_id, task, retry_id)
        end = offset + len(data)
        if end <= have:
            return
        if offset > have:
            # Should not happen (backends resume from the offsets we report); keep the bytes.
            log.warning(
                "log of %s/%s/%s has a gap of %d bytes", workflow_id, task, retry_id, offset - have
            )
        else:
            data = data[have - offset :]
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "ab") as f:
            f.write(data)
        self._sizes[p] = end

    async def notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_change(self, timeout: float) -> None:
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)

    def read(self, workflow_id: str, task: str, retry_id: int, offset: int = 0) -> bytes:
        p = self.path(workflow_id, task, retry_id)
        try:
            with open(p, "rb") as f:
                f.seek(offset)
                return f.read()
        except FileNotFoundError:
            return b""

    def tail(self, workflow_id: str, task: str, retry_id: int, lines: int) -> bytes:
        data = self.read(workflow_id, task, retry_id)
        if lines <= 0:
            return data
        parts = data.splitlines(keepends=True)
        return b"".join(parts[-lines:])

    async def follow(
        self, workflow_id: str, task: str, retry_id: int, offset: int = 0
    ) -> AsyncIterator[bytes]:
        while True:
            chunk = self.read(workflow_id, task, retry_id, offset)
            if chunk:
                offset += len(chunk)
                yield chunk
            else:
                yield b""
                await self.wait_change(1.0)
