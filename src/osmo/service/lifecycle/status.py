"""Statuses, exit codes and the aggregation rules of tasks, groups and workflows (reference §2)."""

from __future__ import annotations

from enum import StrEnum


class TaskStatus(StrEnum):
    SUBMITTING = "SUBMITTING"
    WAITING = "WAITING"  # upstream groups not done yet
    SCHEDULING = "SCHEDULING"  # ready; queued for admission by the control-plane scheduler
    PROCESSING = "PROCESSING"  # admitted; launch sent to the backend
    INITIALIZING = "INITIALIZING"  # backend started it: folders, inputs, barrier
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    RESCHEDULED = "RESCHEDULED"  # this retry ended; a new retry row exists
    FAILED = "FAILED"
    FAILED_CANCELED = "FAILED_CANCELED"
    FAILED_SERVER_ERROR = "FAILED_SERVER_ERROR"
    FAILED_BACKEND_ERROR = "FAILED_BACKEND_ERROR"
    FAILED_EXEC_TIMEOUT = "FAILED_EXEC_TIMEOUT"
    FAILED_QUEUE_TIMEOUT = "FAILED_QUEUE_TIMEOUT"
    FAILED_IMAGE_PULL = "FAILED_IMAGE_PULL"
    FAILED_UPSTREAM = "FAILED_UPSTREAM"
    FAILED_EVICTED = "FAILED_EVICTED"
    FAILED_PREEMPTED = "FAILED_PREEMPTED"
    FAILED_START_ERROR = "FAILED_START_ERROR"
    FAILED_START_TIMEOUT = "FAILED_START_TIMEOUT"

    @property
    def finished(self) -> bool:
        return self in FINISHED

    @property
    def failed(self) -> bool:
        return self.value.startswith("FAILED")


FINISHED = frozenset(
    s
    for s in TaskStatus
    if s.value.startswith("FAILED") or s in (TaskStatus.COMPLETED, TaskStatus.RESCHEDULED)
)
ACTIVE = frozenset({TaskStatus.PROCESSING, TaskStatus.INITIALIZING, TaskStatus.RUNNING})
# Group statuses are task statuses without RESCHEDULED.
GroupStatus = TaskStatus


class WorkflowStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    WAITING = "WAITING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    FAILED_SUBMISSION = "FAILED_SUBMISSION"
    FAILED_SERVER_ERROR = "FAILED_SERVER_ERROR"
    FAILED_EXEC_TIMEOUT = "FAILED_EXEC_TIMEOUT"
    FAILED_QUEUE_TIMEOUT = "FAILED_QUEUE_TIMEOUT"
    FAILED_CANCELED = "FAILED_CANCELED"
    FAILED_BACKEND_ERROR = "FAILED_BACKEND_ERROR"
    FAILED_IMAGE_PULL = "FAILED_IMAGE_PULL"
    FAILED_EVICTED = "FAILED_EVICTED"
    FAILED_START_ERROR = "FAILED_START_ERROR"
    FAILED_START_TIMEOUT = "FAILED_START_TIMEOUT"
    FAILED_PREEMPTED = "FAILED_PREEMPTED"

    @property
    def finished(self) -> bool:
        return self not in (WorkflowStatus.PENDING, WorkflowStatus.RUNNING, WorkflowStatus.WAITING)


class ExitCode:
    """Platform exit codes (reference §2.3); user codes 0-255 pass through unchanged."""

    DOWNLOAD_FAILED = 2010
    MOUNT_FAILED = 2011
    UPLOAD_FAILED = 2012
    UPSTREAM_FAILED = 3000
    BACKEND_ERROR = 3001
    SERVER_ERROR = 3002
    START_ERROR = 3003
    EVICTED = 3004
    START_TIMEOUT = 3005
    PREEMPTED = 3006
    UNKNOWN = 4000


# Exit codes the platform records for statuses it sets itself.
STATUS_EXIT_CODES: dict[TaskStatus, int] = {
    TaskStatus.FAILED_UPSTREAM: ExitCode.UPSTREAM_FAILED,
    TaskStatus.FAILED_BACKEND_ERROR: ExitCode.BACKEND_ERROR,
    TaskStatus.FAILED_SERVER_ERROR: ExitCode.SERVER_ERROR,
    TaskStatus.FAILED_START_ERROR: ExitCode.START_ERROR,
    TaskStatus.FAILED_EVICTED: ExitCode.EVICTED,
    TaskStatus.FAILED_START_TIMEOUT: ExitCode.START_TIMEOUT,
    TaskStatus.FAILED_PREEMPTED: ExitCode.PREEMPTED,
}

_WORKFLOW_PRIORITY_FAILURES = (
    WorkflowStatus.FAILED_CANCELED,
    WorkflowStatus.FAILED_SERVER_ERROR,
    WorkflowStatus.FAILED_EXEC_TIMEOUT,
    WorkflowStatus.FAILED_QUEUE_TIMEOUT,
)


def aggregate_workflow(group_statuses: list[TaskStatus]) -> WorkflowStatus:
    """Workflow status from its groups' statuses (reference §2.1)."""
    if any(not s.finished for s in group_statuses):
        if any(s in (TaskStatus.RUNNING, TaskStatus.INITIALIZING) for s in group_statuses):
            return WorkflowStatus.RUNNING
        return WorkflowStatus.PENDING
    failures = {s for s in group_statuses if s.failed}
    if not failures:
        return WorkflowStatus.COMPLETED
    for candidate in _WORKFLOW_PRIORITY_FAILURES:
        if candidate.value in failures:
            return candidate
    reasons = failures - {TaskStatus.FAILED_UPSTREAM}
    if len(reasons) == 1:
        (only,) = reasons
        try:
            return WorkflowStatus(only.value)
        except ValueError:
            return WorkflowStatus.FAILED
    return WorkflowStatus.FAILED


def sibling_status(lead_status: TaskStatus) -> TaskStatus:
    """What the other tasks of a group become when the lead ends (special failures → FAILED)."""
    if lead_status in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.FAILED_CANCELED):
        return lead_status
    if lead_status.failed:
        return TaskStatus.FAILED
    return lead_status
