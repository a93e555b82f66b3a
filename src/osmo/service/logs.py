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
from typing import Any

log = logging.getLogger(__name__)


def _plain(name: str) -> bool:
    """A workflow id or task name usable as one path component (never a way out of the root)."""
    return name not in ("", ".", "..") and not any(c in name for c in "/\\\0")


class LogStore:
    """Logs spool to local files as they stream in; with an ``archive_url`` (workflow_log) each
    task's log is copied there when the task ends and read back from there when the local copy
    is gone (another replica, a cleaned disk)."""

    def __init__(
        self, root: Path, archive_url: str = "", archive_credential: dict[str, Any] | None = None
    ):
        self.root = root
        self.archive_url = archive_url.rstrip("/")
        self._credential = archive_credential
        self._sizes: dict[Path, int] = {}
        self._changed = asyncio.Condition()

    def _store(self) -> Any:
        from ..storage import open_store
        from ..storage.credentials import Credentials

        if self._credential:
            fields = {k: v for k, v in self._credential.items() if k in Credentials.model_fields}
            return open_store(self.archive_url, Credentials.model_validate(fields))
        return open_store(self.archive_url)

    def archive_key(self, workflow_id: str, task: str, retry_id: int) -> str:
        return f"{self.archive_url}/{workflow_id}/{task}.{retry_id}.log"

    def archive(self, workflow_id: str, task: str, retry_id: int) -> None:
        """Copy a finished task's log to the archive (blocking; run it in a thread)."""
        if not self.archive_url or not (_plain(workflow_id) and _plain(task)):
            return
        p = self.path(workflow_id, task, retry_id)
        data = p.read_bytes() if p.exists() else b""
        self._store().write_bytes(self.archive_key(workflow_id, task, retry_id), data)

    def _ensure_local(self, p: Path, workflow_id: str, task: str, retry_id: int) -> None:
        if p.exists() or not self.archive_url:
            return
        try:
            data = self._store().read_bytes(self.archive_key(workflow_id, task, retry_id))
        except Exception:  # not archived (yet): nothing to show
            return
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".fetch")
        tmp.write_bytes(data)
        tmp.replace(p)
        self._sizes.pop(p, None)

    def path(self, workflow_id: str, task: str, retry_id: int) -> Path:
        return self.root / workflow_id / f"{task}.{retry_id}.log"

    def size(self, workflow_id: str, task: str, retry_id: int) -> int:
        if not (_plain(workflow_id) and _plain(task)):
            return 0
        p = self.path(workflow_id, task, retry_id)
        if p not in self._sizes:
            self._ensure_local(p, workflow_id, task, retry_id)
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
        if not (_plain(workflow_id) and _plain(task)):
            return b""
        p = self.path(workflow_id, task, retry_id)
        self._ensure_local(p, workflow_id, task, retry_id)
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
