"""Operator ↔ control-plane protocol, version 1.

One WebSocket per operator; every message is an ``Envelope`` ``{type, id, seq, body}``. Each
side keeps the messages the other has not acknowledged and resends them after a reconnect;
receivers dedupe by ``id``, and every handler is idempotent (a launch of a task that exists is a
no-op, a status a task already has changes nothing), so replays are harmless.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

PROTOCOL_VERSION = "1.0"
PROTOCOL_MAJOR = 1

__all__ = [
    "PROTOCOL_MAJOR",
    "PROTOCOL_VERSION",
    "Ack",
    "DatasetOutput",
    "Envelope",
    "Heartbeat",
    "Hello",
    "InputSource",
    "LaunchGroup",
    "LogChunk",
    "NodeInfo",
    "OutputTarget",
    "Refuse",
    "RegistryCredential",
    "StopTasks",
    "TaskFile",
    "TaskLaunchSpec",
    "TaskRef",
    "TaskReport",
    "TaskStatusBatch",
    "Welcome",
    "new_id",
]


def new_id() -> str:
    return uuid.uuid4().hex


class _Msg(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Envelope(_Msg):
    type: str
    id: str = Field(default_factory=new_id)
    seq: int = 0
    body: dict[str, Any] = Field(default_factory=dict)


class NodeInfo(_Msg):
    name: str
    cpus: float = 0
    memory_bytes: int = 0
    gpus: int = 0
    gpu_type: str | None = None
    storage_bytes: int = 0
    labels: dict[str, str] = Field(default_factory=dict)
    available: bool = True
    # Kubernetes nodes: taints ({key, value, effect}), cordon, and condition type -> status.
    taints: list[dict[str, str]] = Field(default_factory=list)
    unschedulable: bool = False
    conditions: dict[str, str] = Field(default_factory=dict)


class TaskRef(_Msg):
    workflow_id: str
    task: str
    retry_id: int = 0

    def key(self) -> tuple[str, str, int]:
        return (self.workflow_id, self.task, self.retry_id)


class TaskReport(TaskRef):
    """A task's state as the backend sees it. Terminal reports carry the exit code."""

    status: str  # INITIALIZING, RUNNING, COMPLETED, FAILED, FAILED_BACKEND_ERROR, ...
    exit_code: int | None = None
    message: str | None = None
    node: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    log_size: int | None = None  # bytes of log the backend holds for this task
    # New dataset versions the task produced: {name, tag, metadata, labels, manifest, present}.
    datasets: list[dict[str, Any]] = Field(default_factory=list)


# ---- operator → control plane -------------------------------------------------------------


class Hello(_Msg):
    type: Literal["hello"] = "hello"
    backend: str
    version: str
    protocol_version: str = PROTOCOL_VERSION
    executor: str
    # Identity of the cluster or host; another one claiming the same backend name is refused.
    cluster_id: str | None = None
    nodes: list[NodeInfo] = Field(default_factory=list)
    # Every task the backend still holds (running, or finished and not yet acknowledged).
    tasks: list[TaskReport] = Field(default_factory=list)


class TaskStatusBatch(_Msg):
    type: Literal["task_status"] = "task_status"
    reports: list[TaskReport]


class LogChunk(TaskRef):
    type: Literal["log"] = "log"
    offset: int  # byte offset of ``data`` in the task's log
    data: str  # UTF-8 with surrogateescape, so any bytes survive the JSON round trip


class Heartbeat(_Msg):
    type: Literal["heartbeat"] = "heartbeat"
    ts: float
    nodes: list[NodeInfo] | None = None


class Ack(_Msg):
    type: Literal["ack"] = "ack"
    ids: list[str]


# ---- control plane → operator -------------------------------------------------------------


class Welcome(_Msg):
    type: Literal["welcome"] = "welcome"
    backend: str
    server_version: str
    heartbeat_interval: float
    # Bytes of log the server already holds per task of the hello (``wf/task/retry`` keys).
    log_offsets: dict[str, int] = Field(default_factory=dict)
    # Tasks of the hello the server already has final: the backend may forget them.
    finished: list[TaskRef] = Field(default_factory=list)


class Refuse(_Msg):
    type: Literal["refuse"] = "refuse"
    message: str


class TaskFile(_Msg):
    path: str
    contents: str
    base64: bool = False


class InputSource(_Msg):
    name: str | None = None  # upstream task name, for {{input:<task>}}
    url: str  # for a dataset input: its bucket
    regex: str | None = None
    # A dataset version: [path, size, sha256] entries, fetched from the bucket by content.
    manifest: list[list[Any]] | None = None


class DatasetOutput(_Msg):
    """``outputs: - dataset:``: the output folder becomes a new version of ``name``."""

    name: str
    tag: str | None = None
    regex: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)


class OutputTarget(_Msg):
    url: str
    regex: str | None = None


class TaskLaunchSpec(TaskRef):
    group: str
    lead: bool = False
    image: str
    command: list[str]
    args: list[str] = Field(default_factory=list)
    environment: dict[str, str] = Field(default_factory=dict)
    files: list[TaskFile] = Field(default_factory=list)
    inputs: list[InputSource] = Field(default_factory=list)
    output_url: str | None = None
    outputs: list[OutputTarget] = Field(default_factory=list)  # user ``outputs: - url:``
    dataset_outputs: list[DatasetOutput] = Field(default_factory=list)
    dataset_bucket: str | None = None
    # DATA credentials (payloads) for the task's storage URLs; never logged.
    data_credentials: list[dict[str, str]] = Field(default_factory=list, repr=False)
    # Values to mask in the task's log (credential values of 8+ characters).
    mask: list[str] = Field(default_factory=list, repr=False)
    cpu: int | None = None
    gpu: int | None = None
    memory_bytes: int | None = None
    node: str | None = None  # the node the scheduler counted the task against
    # Used by the kubernetes executor (pod templates, platform checks); optional so that
    # older control planes keep working.
    storage_bytes: int | None = None
    platform: str | None = None
    nodes_excluded: list[str] = Field(default_factory=list)
    privileged: bool = False
    host_network: bool = False
    volume_mounts: list[str] = Field(default_factory=list)
    cache_size: str | None = None
    # GENERIC credentials resolved by the control plane: env var -> secret value, and
    # folder -> {file name: secret value}.
    secret_env: dict[str, str] = Field(default_factory=dict)
    secret_files: dict[str, dict[str, str]] = Field(default_factory=dict)


class RegistryCredential(_Msg):
    registry: str
    username: str
    password: str


class LaunchGroup(_Msg):
    type: Literal["launch_group"] = "launch_group"
    workflow_id: str
    group: str
    barrier: bool
    tasks: list[TaskLaunchSpec]
    # Optional context for backends that label and template what they create.
    pool: str | None = None
    priority: str = "NORMAL"
    submitted_by: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)  # user workflow labels
    registry_credentials: list[RegistryCredential] = Field(default_factory=list)


class StopTasks(_Msg):
    type: Literal["stop_tasks"] = "stop_tasks"
    tasks: list[TaskRef]
    reason: str = ""
