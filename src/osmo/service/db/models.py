"""SQLAlchemy models: the database is the source of truth for every workflow, group and task.

Times are epoch seconds (floats): portable across SQLite and PostgreSQL and cheap to compare.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Workflow(Base):
    __tablename__ = "workflows"
    # List filters page in submit order: each common filter has an index that yields that order.
    __table_args__ = (
        Index("ix_workflows_submitted", "submitted_at", "pk"),
        Index("ix_workflows_status_submitted", "status", "submitted_at", "pk"),
        Index("ix_workflows_user_submitted", "submitted_by", "submitted_at", "pk"),
        Index("ix_workflows_pool_submitted", "pool", "submitted_at", "pk"),
        Index("ix_workflows_name_submitted", "name", "submitted_at", "pk"),
    )

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workflow_id: Mapped[str] = mapped_column(String(128), unique=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32), index=True)
    pool: Mapped[str] = mapped_column(String(128), index=True)
    backend: Mapped[str | None] = mapped_column(String(128), nullable=True)
    priority: Mapped[str] = mapped_column(String(16))
    submitted_by: Mapped[str] = mapped_column(String(256), index=True)
    submitted_at: Mapped[float] = mapped_column(Float, index=True)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    spec_json: Mapped[str] = mapped_column(Text)
    rendered_spec: Mapped[str] = mapped_column(Text)
    template_spec: Mapped[str] = mapped_column(Text)
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    env_vars: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    parent_workflow_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    canceled_by: Mapped[str | None] = mapped_column(String(256), nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    exec_timeout: Mapped[float | None] = mapped_column(Float, nullable=True)
    queue_timeout: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_retry_per_task: Mapped[int] = mapped_column(Integer, default=0)


class WorkflowLabel(Base):
    """Labels as rows, so list filters (``--label k=glob``) paginate in the database."""

    __tablename__ = "workflow_labels"
    __table_args__ = (Index("ix_workflow_labels_kv", "key", "value"),)

    workflow_pk: Mapped[int] = mapped_column(
        ForeignKey("workflows.pk", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(317), primary_key=True)
    value: Mapped[str] = mapped_column(String(63))


class NameCounter(Base):
    """Last N used for ``<name>-N`` workflow ids."""

    __tablename__ = "name_counters"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    last: Mapped[int] = mapped_column(Integer)


class Group(Base):
    __tablename__ = "groups"
    __table_args__ = (
        UniqueConstraint("workflow_pk", "name"),
        Index("ix_groups_status_priority", "status", "priority_rank", "submitted_at"),
    )

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workflow_pk: Mapped[int] = mapped_column(
        ForeignKey("workflows.pk", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(128))
    position: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32))
    upstream: Mapped[list[Any]] = mapped_column(JSON, default=list)
    lead_task: Mapped[str] = mapped_column(String(128))
    barrier: Mapped[bool] = mapped_column(Boolean, default=True)
    ignore_nonlead: Mapped[bool] = mapped_column(Boolean, default=True)
    backend: Mapped[str | None] = mapped_column(String(128), nullable=True)
    pool: Mapped[str] = mapped_column(String(128))
    priority_rank: Mapped[int] = mapped_column(Integer)  # 0 HIGH, 1 NORMAL, 2 LOW
    submitted_at: Mapped[float] = mapped_column(Float)
    queued_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    running_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        UniqueConstraint("workflow_pk", "name", "retry_id"),
        Index("ix_tasks_status", "status"),
    )

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workflow_pk: Mapped[int] = mapped_column(
        ForeignKey("workflows.pk", ondelete="CASCADE"), index=True
    )
    group_pk: Mapped[int] = mapped_column(ForeignKey("groups.pk", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    retry_id: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(32))
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    lead: Mapped[bool] = mapped_column(Boolean, default=False)
    backend: Mapped[str | None] = mapped_column(String(128), nullable=True)
    node: Mapped[str | None] = mapped_column(String(256), nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)


class Event(Base):
    __tablename__ = "events"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workflow_pk: Mapped[int] = mapped_column(
        ForeignKey("workflows.pk", ondelete="CASCADE"), index=True
    )
    ts: Mapped[float] = mapped_column(Float)
    task: Mapped[str | None] = mapped_column(String(128), nullable=True)
    retry_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    message: Mapped[str] = mapped_column(Text)


class Backend(Base):
    __tablename__ = "backends"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    executor: Mapped[str] = mapped_column(String(32), default="local")
    version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Identity of the cluster or host behind the name; another one claiming it is refused.
    cluster_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    last_heartbeat: Mapped[float | None] = mapped_column(Float, nullable=True)
    capacity: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    nodes: Mapped[list[Any]] = mapped_column(JSON, default=list)


class BackendToken(Base):
    """Operator bootstrap tokens, stored as SHA-256 hashes only."""

    __tablename__ = "backend_tokens"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    backend: Mapped[str] = mapped_column(String(128), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)  # rotation overlap
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class Pool(Base):
    """A pool's configuration document (``PoolConfig``); ``backend`` is kept as a column for joins."""

    __tablename__ = "pools"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    backend: Mapped[str] = mapped_column(String(128))
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class Credential(Base):
    """A user's credential; ``payload`` is encrypted (``SecretBox``) and never returned."""

    __tablename__ = "credentials"
    __table_args__ = (UniqueConstraint("user", "name"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user: Mapped[str] = mapped_column(String(256), index=True)
    name: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(16))
    payload: Mapped[str] = mapped_column(Text)
    keys: Mapped[list[Any]] = mapped_column(JSON, default=list)  # payload key names, for listing
    endpoint: Mapped[str | None] = mapped_column(String(512), nullable=True)  # DATA: which URLs
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class Dataset(Base):
    __tablename__ = "datasets"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(256), unique=True)
    bucket: Mapped[str] = mapped_column(String(1024))
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_by: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class DatasetVersion(Base):
    """An immutable version: its manifest lists (path, size, sha256) of every file."""

    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("dataset_pk", "version"),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset_pk: Mapped[int] = mapped_column(
        ForeignKey("datasets.pk", ondelete="CASCADE"), index=True
    )
    version: Mapped[int] = mapped_column(Integer)
    files: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(BigInteger)
    manifest: Mapped[list[Any]] = mapped_column(JSON)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_by: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[float] = mapped_column(Float)
    source: Mapped[str | None] = mapped_column(
        String(256), nullable=True
    )  # workflow/task that made it


class DatasetTag(Base):
    __tablename__ = "dataset_tags"

    dataset_pk: Mapped[int] = mapped_column(
        ForeignKey("datasets.pk", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)


class DatasetObject(Base):
    """Content-addressed objects known to be in a dataset bucket (dedup across versions)."""

    __tablename__ = "dataset_objects"

    bucket: Mapped[str] = mapped_column(String(1024), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
