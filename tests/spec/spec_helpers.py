"""Shared helpers for the spec tests."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from osmo.spec import SpecError

FILES = Path(__file__).parent / "files"
VALID = FILES / "valid"
INVALID = FILES / "invalid"
REPO = Path(__file__).resolve().parents[2]

_PART_RE = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def dig(data: Any, path: str) -> Any:
    """``dig(d, "groups[0].tasks[1].name")`` on plain data from ``model_dump()``."""
    for name, index in _PART_RE.findall(path):
        data = data[int(index)] if index else data[name]
    return data


def issue_lines(error: SpecError) -> list[str]:
    """Each issue as ``LINE:COL: message`` (or just ``message`` when it has no position)."""
    return [issue.format("")[1:].lstrip() for issue in error.issues]


def read_expected(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
