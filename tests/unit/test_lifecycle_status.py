"""Workflow status from group statuses, rule by rule in the order of reference §2.1:

1. any unfinished group: RUNNING if a group runs, else PENDING;
2. all finished: CANCELED > SERVER_ERROR > EXEC_TIMEOUT > QUEUE_TIMEOUT, whatever else failed;
3. else the one reason all failed groups share (FAILED_UPSTREAM aside), or FAILED when mixed;
4. all completed: COMPLETED.
"""

from __future__ import annotations

import pytest

from osmo.service.lifecycle.status import (
    FINISHED,
    TaskStatus,
    WorkflowStatus,
    aggregate_workflow,
    sibling_status,
)

S = TaskStatus
W = WorkflowStatus
UNFINISHED = [s for s in TaskStatus if not s.finished]
PRIORITY = [S.FAILED_CANCELED, S.FAILED_SERVER_ERROR, S.FAILED_EXEC_TIMEOUT, S.FAILED_QUEUE_TIMEOUT]
# Failures a whole workflow can be named after when they are the only reason.
SPECIFIC = [
    S.FAILED_BACKEND_ERROR,
    S.FAILED_IMAGE_PULL,
    S.FAILED_EVICTED,
    S.FAILED_START_ERROR,
    S.FAILED_START_TIMEOUT,
    S.FAILED_PREEMPTED,
]


def test_status_sets_are_what_the_rules_assume() -> None:
    assert {s for s in TaskStatus if s.finished} == FINISHED
    assert {s.value for s in UNFINISHED} == {
        "SUBMITTING",
        "WAITING",
        "SCHEDULING",
        "PROCESSING",
        "INITIALIZING",
        "RUNNING",
    }
    assert all(s.failed for s in PRIORITY + SPECIFIC + [S.FAILED, S.FAILED_UPSTREAM])
    assert not S.COMPLETED.failed and not S.RESCHEDULED.failed


# ---- rule 1: anything unfinished ----------------------------------------------------------


@pytest.mark.parametrize("other", [S.COMPLETED, S.FAILED, S.FAILED_CANCELED, S.WAITING])
def test_a_running_group_makes_the_workflow_running(other: TaskStatus) -> None:
    assert aggregate_workflow([other, S.RUNNING]) == W.RUNNING
    assert aggregate_workflow([S.RUNNING, other, other]) == W.RUNNING


@pytest.mark.parametrize("unfinished", [S.SUBMITTING, S.WAITING, S.SCHEDULING, S.PROCESSING])
def test_unfinished_groups_none_running_is_pending(unfinished: TaskStatus) -> None:
    assert aggregate_workflow([unfinished]) == W.PENDING
    assert aggregate_workflow([S.COMPLETED, unfinished]) == W.PENDING


@pytest.mark.parametrize("finished", sorted(FINISHED - {S.RESCHEDULED}))
def test_unfinished_wins_over_any_finished_group(finished: TaskStatus) -> None:
    """Even a cancel or a timeout waits until every group has finished (reference §2.1)."""
    assert aggregate_workflow([finished, S.WAITING]) == W.PENDING
    assert aggregate_workflow([finished, S.RUNNING]) == W.RUNNING


def test_initializing_counts_as_running() -> None:
    """A deliberate choice of this implementation: the reference names only RUNNING, but the
    lifecycle marks a workflow RUNNING as soon as a task initializes (inputs download then), so
    aggregation must agree or a workflow would flip back to PENDING."""
    assert aggregate_workflow([S.INITIALIZING]) == W.RUNNING
    assert aggregate_workflow([S.COMPLETED, S.INITIALIZING, S.WAITING]) == W.RUNNING


def test_waiting_is_never_derived() -> None:
    """WAITING is documented but disabled in the original's aggregation; so here."""
    groups = [s for s in TaskStatus if s != S.RESCHEDULED]
    seen = {aggregate_workflow([a, b]) for a in groups for b in groups}
    assert W.WAITING not in seen


# ---- rule 2: priority failures ------------------------------------------------------------


@pytest.mark.parametrize("index", range(len(PRIORITY)))
def test_priority_failures_in_order(index: int) -> None:
    winner = PRIORITY[index]
    lower = PRIORITY[index + 1 :]
    groups = [S.COMPLETED, *lower, S.FAILED, S.FAILED_UPSTREAM, *SPECIFIC, winner]
    assert aggregate_workflow(groups) == W(winner.value)
    assert aggregate_workflow(list(reversed(groups))) == W(winner.value)


@pytest.mark.parametrize("status", PRIORITY)
def test_one_priority_failure_among_completed_groups(status: TaskStatus) -> None:
    assert aggregate_workflow([S.COMPLETED, status, S.COMPLETED]) == W(status.value)


def test_canceled_beats_everything() -> None:
    every_failure = [s for s in TaskStatus if s.failed]
    assert aggregate_workflow(every_failure) == W.FAILED_CANCELED


# ---- rule 3: one shared reason, else FAILED -----------------------------------------------


@pytest.mark.parametrize("status", SPECIFIC)
def test_one_specific_reason_names_the_workflow(status: TaskStatus) -> None:
    assert aggregate_workflow([status]) == W(status.value)
    assert aggregate_workflow([S.COMPLETED, status, status]) == W(status.value)


@pytest.mark.parametrize("status", [*SPECIFIC, S.FAILED])
def test_upstream_failures_do_not_count_as_a_reason(status: TaskStatus) -> None:
    groups = [status, S.FAILED_UPSTREAM, S.FAILED_UPSTREAM, S.COMPLETED]
    assert aggregate_workflow(groups) == W(status.value)


@pytest.mark.parametrize(
    "groups",
    [
        [S.FAILED_BACKEND_ERROR, S.FAILED_EVICTED],
        [S.FAILED, S.FAILED_IMAGE_PULL],
        [S.FAILED_PREEMPTED, S.FAILED_START_ERROR, S.FAILED_UPSTREAM],
        [S.FAILED_START_TIMEOUT, S.FAILED_BACKEND_ERROR, S.COMPLETED],
    ],
)
def test_mixed_reasons_are_plain_failed(groups: list[TaskStatus]) -> None:
    assert aggregate_workflow(groups) == W.FAILED


def test_plain_failure_is_failed() -> None:
    assert aggregate_workflow([S.FAILED, S.COMPLETED]) == W.FAILED
    assert aggregate_workflow([S.FAILED, S.FAILED]) == W.FAILED


def test_only_upstream_failures_is_failed() -> None:
    assert aggregate_workflow([S.FAILED_UPSTREAM, S.COMPLETED]) == W.FAILED


# ---- rule 4: all completed ----------------------------------------------------------------


def test_all_completed_is_completed() -> None:
    assert aggregate_workflow([S.COMPLETED]) == W.COMPLETED
    assert aggregate_workflow([S.COMPLETED] * 5) == W.COMPLETED


def test_every_finished_combination_is_a_finished_workflow() -> None:
    finished = sorted(FINISHED - {S.RESCHEDULED})
    for a in finished:
        for b in finished:
            assert aggregate_workflow([a, b]).finished, (a, b)


# ---- siblings of a finished lead ----------------------------------------------------------


@pytest.mark.parametrize(
    ("lead", "siblings"),
    [
        (S.COMPLETED, S.COMPLETED),
        (S.FAILED, S.FAILED),
        (S.FAILED_CANCELED, S.FAILED_CANCELED),
        (S.FAILED_BACKEND_ERROR, S.FAILED),
        (S.FAILED_EVICTED, S.FAILED),
        (S.FAILED_EXEC_TIMEOUT, S.FAILED),
    ],
)
def test_sibling_status(lead: TaskStatus, siblings: TaskStatus) -> None:
    assert sibling_status(lead) == siblings
