"""initial schema: workflows, labels, name counters, groups, tasks, events, backends, pools

Revision ID: 0001
Revises:
Create Date: 2026-12-04

The tables ``Base.metadata.create_all`` made before osmo had migrations; databases made that
way are stamped with this revision instead of running it (``migrate.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _workflow_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["workflow_pk"], ["workflows.pk"], ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "workflows",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("workflow_id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("pool", sa.String(length=128), nullable=False),
        sa.Column("backend", sa.String(length=128), nullable=True),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("submitted_by", sa.String(length=256), nullable=False),
        sa.Column("submitted_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("spec_json", sa.Text(), nullable=False),
        sa.Column("rendered_spec", sa.Text(), nullable=False),
        sa.Column("template_spec", sa.Text(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("env_vars", sa.JSON(), nullable=False),
        sa.Column("parent_workflow_id", sa.String(length=128), nullable=True),
        sa.Column("canceled_by", sa.String(length=256), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("exec_timeout", sa.Float(), nullable=True),
        sa.Column("queue_timeout", sa.Float(), nullable=True),
        sa.Column("max_retry_per_task", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("workflow_id"),
    )
    for column in ("name", "pool", "status", "submitted_at", "submitted_by"):
        op.create_index(f"ix_workflows_{column}", "workflows", [column])

    op.create_table(
        "workflow_labels",
        sa.Column("workflow_pk", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=317), nullable=False),
        sa.Column("value", sa.String(length=63), nullable=False),
        _workflow_fk(),
        sa.PrimaryKeyConstraint("workflow_pk", "key"),
    )
    op.create_index("ix_workflow_labels_kv", "workflow_labels", ["key", "value"])

    op.create_table(
        "name_counters",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("last", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )

    op.create_table(
        "groups",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("workflow_pk", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("upstream", sa.JSON(), nullable=False),
        sa.Column("lead_task", sa.String(length=128), nullable=False),
        sa.Column("barrier", sa.Boolean(), nullable=False),
        sa.Column("ignore_nonlead", sa.Boolean(), nullable=False),
        sa.Column("backend", sa.String(length=128), nullable=True),
        sa.Column("pool", sa.String(length=128), nullable=False),
        sa.Column("priority_rank", sa.Integer(), nullable=False),
        sa.Column("submitted_at", sa.Float(), nullable=False),
        sa.Column("queued_at", sa.Float(), nullable=True),
        sa.Column("running_at", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        _workflow_fk(),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("workflow_pk", "name"),
    )
    op.create_index("ix_groups_workflow_pk", "groups", ["workflow_pk"])
    op.create_index(
        "ix_groups_status_priority", "groups", ["status", "priority_rank", "submitted_at"]
    )

    op.create_table(
        "tasks",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("workflow_pk", sa.Integer(), nullable=False),
        sa.Column("group_pk", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("retry_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("lead", sa.Boolean(), nullable=False),
        sa.Column("backend", sa.String(length=128), nullable=True),
        sa.Column("node", sa.String(length=256), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["group_pk"], ["groups.pk"], ondelete="CASCADE"),
        _workflow_fk(),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("workflow_pk", "name", "retry_id"),
    )
    op.create_index("ix_tasks_workflow_pk", "tasks", ["workflow_pk"])
    op.create_index("ix_tasks_group_pk", "tasks", ["group_pk"])
    op.create_index("ix_tasks_status", "tasks", ["status"])

    op.create_table(
        "events",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("workflow_pk", sa.Integer(), nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("task", sa.String(length=128), nullable=True),
        sa.Column("retry_id", sa.Integer(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        _workflow_fk(),
        sa.PrimaryKeyConstraint("pk"),
    )
    op.create_index("ix_events_workflow_pk", "events", ["workflow_pk"])

    op.create_table(
        "backends",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("executor", sa.String(length=32), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=True),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.Column("last_heartbeat", sa.Float(), nullable=True),
        sa.Column("capacity", sa.JSON(), nullable=False),
        sa.Column("nodes", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )

    op.create_table(
        "pools",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("backend", sa.String(length=128), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("default_exit_actions", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    # Dropping a table drops its indexes; children before the tables they reference.
    for table in ("events", "tasks", "groups", "name_counters", "workflow_labels", "workflows"):
        op.drop_table(table)
    op.drop_table("pools")
    op.drop_table("backends")
