"""``files: - localpath:`` — read by the client, relative to the spec file, into ``contents``."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from .errors import SpecIssue
from .model import WorkflowSpec

MAX_LOCAL_FILE_BYTES = 1024 * 1024


def _locate(lines: list[str], value: str, task: str, nth: int) -> tuple[int | None, int | None]:
    """Line and column of the ``nth`` ``localpath: value`` after the line naming ``task``."""
    name = re.compile(r"^\s*(-\s*)?name\s*:\s*['\"]?" + re.escape(task) + r"['\"]?\s*(#.*)?$")
    start = next((i for i, line in enumerate(lines) if name.match(line)), 0)
    pattern = re.compile(
        r"localpath\s*:\s*['\"]?" + re.escape(value) + r"(?=['\"]?\s*(?:[,}\]]|#|$))"
    )
    for i in range(start, len(lines)):
        m = pattern.search(lines[i])
        if m:
            if nth == 0:
                return i + 1, m.start() + 1
            nth -= 1
    return None, None


def inline_localpaths(spec: WorkflowSpec, base_dir: Path, source_text: str = "") -> list[SpecIssue]:
    """Replace each ``localpath`` with the file's contents; returns the problems found."""
    issues: list[SpecIssue] = []
    lines = source_text.splitlines()
    for task in spec.tasks:
        seen: dict[str, int] = {}
        for f in task.files:
            if f.localpath is None:
                continue
            path = (base_dir / f.localpath).expanduser()
            nth = seen.get(f.localpath, 0)
            seen[f.localpath] = nth + 1
            line, col = _locate(lines, f.localpath, task.name, nth)
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
