"""The typed result of parsing a workflow spec.

Plain tasks are wrapped into single-task groups whose task is lead, so everything downstream
(scheduler, lifecycle, executors) deals with groups only. Sizes are normalized to bytes and
durations to seconds; the original text values are kept for display.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ExitAction = Literal["COMPLETE", "FAIL", "RESCHEDULE"]
EXIT_ACTIONS: tuple[ExitAction, ...] = ("COMPLETE", "FAIL", "RESCHEDULE")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=False, extra="forbid")


class TopologySpec(_Model):
    key: str
    group: str = "default"
    requirement_type: Literal["required", "preferred"] = "required"


class ResourceSpec(_Model):
    cpu: int | None = None
    gpu: int | None = None
    memory: str | None = None
    memory_bytes: int | None = None
    storage: str | None = None
    storage_bytes: int | None = None
    platform: str | None = None
    nodes_excluded: list[str] = Field(default_factory=list)
    topology: list[TopologySpec] = Field(default_factory=list)


class FileSpec(_Model):
    path: str
    contents: str | None = None
    localpath: str | None = None
    base64: bool = False


class DatasetRef(_Model):
    name: str
    version: str | None = None  # a version number or a tag; None means latest
    regex: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)


class InputSpec(_Model):
    kind: Literal["task", "url", "dataset"]
    task: str | None = None
    # Set when the input names a task of an earlier workflow (``<workflow_id>:<task>``).
    workflow_id: str | None = None
    url: str | None = None
    dataset: DatasetRef | None = None
    regex: str | None = None


class OutputSpec(_Model):
    kind: Literal["url", "dataset"]
    url: str | None = None
    dataset: DatasetRef | None = None
    regex: str | None = None


class CheckpointSpec(_Model):
    path: str
    url: str
    frequency_s: int
    regex: str | None = None


class KpiSpec(_Model):
    index: str
    path: str


class TaskSpec(_Model):
    name: str
    image: str
    command: list[str]
    args: list[str] = Field(default_factory=list)
    lead: bool = False
    environment: dict[str, str] = Field(default_factory=dict)
    files: list[FileSpec] = Field(default_factory=list)
    inputs: list[InputSpec] = Field(default_factory=list)
    outputs: list[OutputSpec] = Field(default_factory=list)
    credentials: dict[str, dict[str, str] | str] = Field(default_factory=dict)
    resource: str = "default"
    resources: ResourceSpec = Field(default_factory=ResourceSpec)
    volume_mounts: list[str] = Field(default_factory=list)
    exit_actions: dict[ExitAction, list[tuple[int, int]]] = Field(default_factory=dict)
    checkpoint: list[CheckpointSpec] = Field(default_factory=list)
    privileged: bool = False
    host_network: bool = False
    kpis: list[KpiSpec] = Field(default_factory=list)
    download_type: str | None = None
    cache_size: str | None = None

    def upstream_tasks(self) -> list[str]:
        """Tasks of this workflow whose outputs this task reads (its dependencies)."""
        return [
            i.task for i in self.inputs if i.kind == "task" and i.task and i.workflow_id is None
        ]

    def exit_action_for(self, code: int) -> ExitAction | None:
        """The action the task's own ``exitActions`` map ``code`` to (first match wins)."""
        for action, ranges in self.exit_actions.items():
            if any(lo <= code <= hi for lo, hi in ranges):
                return action
        return None


class GroupSpec(_Model):
    name: str
    tasks: list[TaskSpec]
    barrier: bool = True
    ignore_nonlead_status: bool = True
    upstream: list[str] = Field(default_factory=list)  # names of groups this group waits on

    @property
    def lead(self) -> TaskSpec:
        return next(t for t in self.tasks if t.lead)


class TimeoutSpec(_Model):
    exec_timeout: int | None = None  # seconds
    queue_timeout: int | None = None  # seconds


class WorkflowSpec(_Model):
    """A validated workflow: groups in topological order (upstream before downstream)."""

    version: int = 2
    name: str
    groups: list[GroupSpec]
    declared_as: Literal["tasks", "groups"] = "tasks"
    resources: dict[str, ResourceSpec] = Field(default_factory=dict)
    timeout: TimeoutSpec = Field(default_factory=TimeoutSpec)
    labels: dict[str, str] = Field(default_factory=dict)
    pool: str | None = None
    default_values: dict[str, object] = Field(default_factory=dict)

    @property
    def tasks(self) -> list[TaskSpec]:
        return [t for g in self.groups for t in g.tasks]

    def group_of(self, task_name: str) -> GroupSpec:
        for g in self.groups:
            for t in g.tasks:
                if t.name == task_name:
                    return g
        raise KeyError(task_name)

    def summary(self) -> str:
        n_tasks = sum(len(g.tasks) for g in self.groups)
        return (
            f"workflow {self.name}: {len(self.groups)} group{'s' if len(self.groups) != 1 else ''}"
            f", {n_tasks} task{'s' if n_tasks != 1 else ''}"
        )
