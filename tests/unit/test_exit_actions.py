"""Which action an exit code leads to (reference §2.4): the task's own ``exitActions`` first,
then the pool's ``default_exit_actions``, then COMPLETE for 0 and FAIL for anything else."""

from __future__ import annotations

from typing import Any

import pytest

from osmo.service.lifecycle.exit_actions import pool_action, resolve_action
from osmo.spec.model import ExitAction, TaskSpec


def task(**exit_actions: list[tuple[int, int]]) -> TaskSpec:
    return TaskSpec(name="t", image="ubuntu", command=["true"], exit_actions=exit_actions)


NO_ACTIONS = task()
POOL = {"RESCHEDULE": "3001", "COMPLETE": "7,100-110"}


@pytest.mark.parametrize(
    ("spec", "pool", "code", "expected"),
    [
        # 1. the task's exitActions win over the pool and over the default
        (task(FAIL=[(3001, 3001)]), POOL, 3001, "FAIL"),
        (task(RESCHEDULE=[(7, 7)]), POOL, 7, "RESCHEDULE"),
        (task(FAIL=[(0, 0)]), {}, 0, "FAIL"),
        (task(COMPLETE=[(1, 255)]), {"FAIL": "1-255"}, 42, "COMPLETE"),
        # 2. codes the task does not map fall through to the pool
        (task(COMPLETE=[(1, 1)]), POOL, 3001, "RESCHEDULE"),
        (task(COMPLETE=[(1, 1)]), POOL, 105, "COMPLETE"),
        (NO_ACTIONS, POOL, 7, "COMPLETE"),
        (None, POOL, 3001, "RESCHEDULE"),
        (NO_ACTIONS, {"FAIL": "0"}, 0, "FAIL"),
        # 3. neither maps the code: 0 completes, anything else fails
        (NO_ACTIONS, POOL, 0, "COMPLETE"),
        (NO_ACTIONS, POOL, 1, "FAIL"),
        (NO_ACTIONS, POOL, 3002, "FAIL"),
        (task(RESCHEDULE=[(3001, 3001)]), {}, 0, "COMPLETE"),
        (task(RESCHEDULE=[(3001, 3001)]), {}, 137, "FAIL"),
        (None, {}, 0, "COMPLETE"),
        (None, {}, 4000, "FAIL"),
    ],
)
def test_precedence(
    spec: TaskSpec | None, pool: dict[str, Any], code: int, expected: ExitAction
) -> None:
    assert resolve_action(spec, pool, code) == expected


def test_first_matching_task_action_wins() -> None:
    spec = task(COMPLETE=[(1, 10)], FAIL=[(5, 20)])
    assert [resolve_action(spec, {}, c) for c in (1, 5, 10, 11, 20, 21)] == [
        "COMPLETE",
        "COMPLETE",
        "COMPLETE",
        "FAIL",
        "FAIL",
        "FAIL",
    ]


def test_range_edges_are_inclusive() -> None:
    spec = task(RESCHEDULE=[(3001, 3006)])
    assert resolve_action(spec, {}, 3000) == "FAIL"
    assert resolve_action(spec, {}, 3001) == "RESCHEDULE"
    assert resolve_action(spec, {}, 3006) == "RESCHEDULE"
    assert resolve_action(spec, {}, 3007) == "FAIL"


@pytest.mark.parametrize(
    ("pool", "code", "expected"),
    [
        ({"reschedule": "3001"}, 3001, "RESCHEDULE"),  # keys are case-insensitive
        ({"Complete": "1-3, 9"}, 9, "COMPLETE"),
        ({"FAIL": 0}, 0, "FAIL"),  # a bare number, as YAML gives it
        ({"RESCHEDULE": "3001-3006"}, 3004, "RESCHEDULE"),
        ({"RESCHEDULE": "3001-3006"}, 3007, None),
        ({"RESTART": "1"}, 1, None),  # not an action the validator accepts: ignored
        ({"RESCHEDULE": "not-a-range", "COMPLETE": "1"}, 1, "COMPLETE"),  # bad entry skipped
        ({}, 0, None),
    ],
)
def test_pool_defaults(pool: dict[str, Any], code: int, expected: ExitAction | None) -> None:
    assert pool_action(pool, code) == expected


def test_embedded_pool_reschedules_backend_errors() -> None:
    """The default pool's exit actions: a task lost with its backend (3001) is retried."""
    from osmo.service.context import DEFAULT_EXIT_ACTIONS
    from osmo.service.lifecycle.status import ExitCode

    assert resolve_action(NO_ACTIONS, DEFAULT_EXIT_ACTIONS, ExitCode.BACKEND_ERROR) == "RESCHEDULE"
    assert resolve_action(NO_ACTIONS, DEFAULT_EXIT_ACTIONS, ExitCode.SERVER_ERROR) == "FAIL"
