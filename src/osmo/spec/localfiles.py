"""``files: - localpath:`` — read by the client, relative to the spec file, into ``contents``."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from .errors import SpecIssue
from .model import WorkflowSpec

MAX_LOCAL_FILE_BYTES = 1024 * 1024


def _locate(text: str, value: str) -> tuple[int | None, int | None]:
    pattern = re.compile(r"localpath\s*:\s*['\"]?" + re.escape(value))
    for i, line in enumerate(text.splitlines()):
        m = pattern.search(line)
        if m:
            return i + 1, m.start() + 1
    return None, None


def inline_localpaths(spec: WorkflowSpec, base_dir: Path, source_text: str = "") -> list[SpecIssue]:
    """Replace each ``localpath`` with the file's contents; returns the problems found."""
    issues: list[SpecIssue] = []
    for task in spec.tasks:
        for f in task.files:
            if f.localpath is None:
                continue
            path = (base_dir / f.localpath).expanduser()
            line, col = _locate(source_text, f.localpath)

            where = (line, col, "files.localpath", task.name)

            if not path.exists():
                issues.append(
                    SpecIssue(
                        f"task {task.name!r}: localpath {f.localpath!r} does not exist "
                        f"(looked in {path})",
                        *where,
                    )
                )
                continue
            if not path.is_file():
                issues.append(
                    SpecIssue(
                        f"task {task.name!r}: localpath {f.localpath!r} is not a file", *where
                    )
                )
                continue
            data = path.read_bytes()
            if len(data) > MAX_LOCAL_FILE_BYTES:
                issues.append(
                    SpecIssue(
                        f"task {task.name!r}: localpath {f.localpath!r} is {len(data)} bytes; "
                        f"at most {MAX_LOCAL_FILE_BYTES} can be injected",
                        *where,
                    )
                )
                continue
            try:
                f.contents = (
                    data.decode("utf-8") if not f.base64 else base64.b64encode(data).decode()
                )
            except UnicodeDecodeError:
                f.contents = base64.b64encode(data).decode()
                f.base64 = True
            f.localpath = None
    return issues
