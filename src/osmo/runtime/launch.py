"""``task.json``: everything the supervisor needs to run one task, written by the operator."""

from __future__ import annotations

import posixpath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Paths the sandbox owns; injected files may only go below /osmo/data/output among them.
RESERVED_PREFIXES = ("/osmo", "/proc", "/dev", "/sys")
OUTPUT_DIR = "/osmo/data/output"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileSpec(_Model):
    """A file injected into the task at an absolute path."""

    path: str
    contents: str = ""
    base64: bool = False

    @field_validator("path")
    @classmethod
    def _absolute_clean_path(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"file path {v!r} must be absolute")
        if ".." in v.split("/"):
            raise ValueError(f"file path {v!r} must not contain '..'")
        norm = posixpath.normpath(v)
        if norm == "/" or v.endswith("/"):
            raise ValueError(f"file path {v!r} must name a file")
        for prefix in RESERVED_PREFIXES:
            if norm == prefix or norm.startswith(prefix + "/"):
                if norm.startswith(OUTPUT_DIR + "/"):
                    break
                raise ValueError(
                    f"file path {v!r} is under {prefix}, which the runtime owns "
                    f"(only {OUTPUT_DIR}/... is allowed there)"
                )
        return norm


class InputSource(_Model):
    """One entry of the task's ``inputs``: downloaded to ``input/<index>`` before the command."""

    name: str | None = None  # upstream task name, for {{input:<task>}}
    url: str  # for a dataset input: its bucket
    regex: str | None = None
    manifest: list[list[Any]] | None = None  # a dataset version's [path, size, sha256] entries


class DatasetOutput(_Model):
    name: str
    tag: str | None = None
    regex: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)


class OutputTarget(_Model):
    """An ``outputs: - url:`` entry: the output folder is uploaded there after success."""

    url: str
    regex: str | None = None


class TaskLaunch(_Model):
    workflow_id: str
    group: str
    task: str
    retry_id: int = 0
    command: list[str] = Field(min_length=1)
    args: list[str] = Field(default_factory=list)
    environment: dict[str, str] = Field(default_factory=dict)
    files: list[FileSpec] = Field(default_factory=list)
    inputs: list[InputSource] = Field(default_factory=list)
    output_url: str | None = None
    outputs: list[OutputTarget] = Field(default_factory=list)
    dataset_outputs: list[DatasetOutput] = Field(default_factory=list)
    dataset_bucket: str | None = None
    # DATA credentials for storage URLs (credential payloads: endpoint, access_key_id, ...).
    data_credentials: list[dict[str, str]] = Field(default_factory=list, repr=False)
    barrier: bool = False
    hosts: dict[str, str] = Field(default_factory=dict)
    image: str = ""  # recorded only: the local executor runs on the host's own filesystem
    # Seconds between SIGTERM and SIGKILL when the task is stopped.
    kill_grace_seconds: float = Field(default=5.0, ge=0)

    @field_validator("files")
    @classmethod
    def _unique_paths(cls, v: list[FileSpec]) -> list[FileSpec]:
        seen: set[str] = set()
        for f in v:
            if f.path in seen:
                raise ValueError(f"file path {f.path!r} is given twice")
            seen.add(f.path)
        return v
