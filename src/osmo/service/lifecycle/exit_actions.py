"""Which action an exit code leads to: the task's ``exitActions``, then the pool's defaults."""

from __future__ import annotations

from typing import Any

from ...spec.model import ExitAction, TaskSpec
from ...spec.units import UnitError, parse_code_ranges


def pool_action(default_exit_actions: dict[str, Any], code: int) -> ExitAction | None:
    for action, ranges in default_exit_actions.items():
        try:
            parsed = parse_code_ranges(ranges)
        except UnitError:
            continue
        if any(lo <= code <= hi for lo, hi in parsed):
            upper = action.upper()
            if upper in ("COMPLETE", "FAIL", "RESCHEDULE"):
                return upper  # type: ignore[return-value]
    return None


def resolve_action(task: TaskSpec | None, pool_defaults: dict[str, Any], code: int) -> ExitAction:
    action = task.exit_action_for(code) if task is not None else None
    if action is None:
        action = pool_action(pool_defaults, code)
    if action is None:
        action = "COMPLETE" if code == 0 else "FAIL"
    return action
