"""Request and response schemas of the REST API (separate from the database models)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorItem(BaseModel):
    message: str
    line: int | None = None
    column: int | None = None
    task: str | None = None
    key: str | None = None


class ErrorResponse(BaseModel):
    error_code: str
    message: str
    errors: list[ErrorItem] | None = None


class SubmitBody(BaseModel):
    file: str = Field(description="The workflow file's text (a template is rendered by the server)")
    set_variables: list[str] = Field(
        default_factory=list, description="KEY=VALUE, cast int/float/string"
    )
    set_string_variables: list[str] = Field(
        default_factory=list, description="KEY=VALUE, kept as strings"
    )
    uploaded_templated_spec: str | None = Field(
        default=None, description="The original template text, if `file` was pre-rendered"
    )


class SubmitResponse(BaseModel):
    id: str
    overview: str | None = None


class ValidateResponse(BaseModel):
    valid: bool
    name: str
    groups: int
    tasks: int
    spec: str | None = None


class TaskOut(BaseModel):
    name: str
    status: str
    exit_code: int | None
    retry_id: int
    lead: bool
    node: str | None = None
    backend: str | None = None
    image: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    message: str | None = None


class GroupOut(BaseModel):
    name: str
    status: str
    upstream: list[str]
    message: str | None = None
    tasks: list[TaskOut]


class WorkflowSummary(BaseModel):
    id: str
    name: str
    status: str
    pool: str
    priority: str
    submitted_by: str
    submitted_at: str
    started_at: str | None = None
    finished_at: str | None = None
    labels: dict[str, Any] = Field(default_factory=dict)


class WorkflowOut(WorkflowSummary):
    backend: str | None = None
    parent_workflow_id: str | None = None
    canceled_by: str | None = None
    message: str | None = None
    groups: list[GroupOut]


class WorkflowList(BaseModel):
    workflows: list[WorkflowSummary]
    offset: int
    limit: int
    more: bool


class EventOut(BaseModel):
    time: str
    task: str | None
    retry_id: int | None
    message: str


class EventList(BaseModel):
    events: list[EventOut]


class CancelResponse(BaseModel):
    id: str
    status: str


class PoolOut(BaseModel):
    name: str
    backend: str
    description: str
    status: str
    online: bool
    default_exit_actions: dict[str, Any]
    default_platform: str | None = None
    platforms: list[str] = Field(default_factory=list)
    gpu_quota: dict[str, Any] = Field(default_factory=dict)
    queued_groups: int = 0
    capacity: dict[str, float]
    used: dict[str, float]


class PoolList(BaseModel):
    pools: list[PoolOut]


class NodeOut(BaseModel):
    name: str
    backend: str
    pools: list[str]
    platforms: list[str] = Field(default_factory=list)
    storage_bytes: int = 0
    cpus: float
    memory_bytes: int
    gpus: int
    gpu_type: str | None = None
    available: bool
    used_cpus: float
    used_memory_bytes: int
    used_gpus: int
    labels: dict[str, str] = Field(default_factory=dict)


class ResourceList(BaseModel):
    resources: list[NodeOut]


class VersionOut(BaseModel):
    version: str
    protocol_version: str


class BackendOut(BaseModel):
    name: str
    online: bool
    executor: str
    version: str | None
    cluster_id: str | None
    nodes: int
    last_heartbeat: str | None
    pools: list[str]


class BackendList(BaseModel):
    backends: list[BackendOut]


class TokenOut(BaseModel):
    backend: str
    token: str
    previous_valid_until: str | None = None
