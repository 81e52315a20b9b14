"""Lineage: the trace of each ModelTrained, the DriftDetected events read from monitoring.drift,
and the deployments serving announces.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("source_trace_id", sa.String(32), nullable=True))
    op.create_table(
        "drift_events",
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("model_name", sa.String(100), nullable=False),
        sa.Column("event_json", sa.Text(), nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_drift_events"),
    )
    op.create_index("ix_drift_events_model_name", "drift_events", ["model_name"])
    op.create_table(
        "deployments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("model_name", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("alias", sa.String(50), nullable=False),
        sa.Column("instance", sa.String(200), nullable=False),
        sa.Column("cause_event_id", sa.String(200), nullable=True),
        sa.Column("deployed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_deployments"),
        sa.UniqueConstraint("event_id", name="uq_deployments_event_id"),
    )
    op.create_index("ix_deployments_model_name_version", "deployments", ["model_name", "version"])


def downgrade() -> None:
    op.drop_index("ix_deployments_model_name_version", "deployments")
    op.drop_table("deployments")
    op.drop_index("ix_drift_events_model_name", "drift_events")
    op.drop_table("drift_events")
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("source_trace_id")
