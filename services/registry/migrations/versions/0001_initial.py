"""Registered models, their versions, aliases and tags, and the audit trail.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _time(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def _model_id(table: str) -> list[sa.SchemaItem]:
    return [
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"], ["registered_models.id"], name=f"fk_{table}_model_id_registered_models"
        ),
    ]


def upgrade() -> None:
    op.create_table(
        "registered_models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        _time("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_registered_models"),
        sa.UniqueConstraint("name", name="uq_registered_models_name"),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        *_model_id("model_versions"),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(200), nullable=False),
        sa.Column("estimator", sa.String(300), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("artifact_uri", sa.String(1000), nullable=False),
        sa.Column("artifact_sha256", sa.String(64), nullable=False),
        sa.Column("artifact_format", sa.String(20), nullable=False),
        sa.Column("artifact_size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("artifact_trusted_types", sa.JSON(), nullable=False),
        sa.Column("evaluation", sa.JSON(), nullable=False),
        sa.Column("baseline", sa.JSON(), nullable=True),
        sa.Column("lineage", sa.JSON(), nullable=False),
        sa.Column("trigger", sa.JSON(), nullable=False),
        _time("trained_at"),
        _time("created_at"),
        sa.Column("source_event_id", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_model_versions"),
        sa.UniqueConstraint("model_id", "version", name="uq_model_versions_model_id_version"),
        sa.UniqueConstraint("source_event_id", name="uq_model_versions_source_event_id"),
    )
    op.create_table(
        "model_aliases",
        *_model_id("model_aliases"),
        sa.Column("alias", sa.String(50), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        _time("updated_at"),
        sa.ForeignKeyConstraint(
            ["version_id"], ["model_versions.id"], name="fk_model_aliases_version_id_model_versions"
        ),
        sa.PrimaryKeyConstraint("model_id", "alias", name="pk_model_aliases"),
    )
    op.create_index("ix_model_aliases_version_id", "model_aliases", ["version_id"])
    op.create_table(
        "model_tags",
        *_model_id("model_tags"),
        sa.Column("key", sa.String(100), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        _time("updated_at"),
        sa.PrimaryKeyConstraint("model_id", "key", name="pk_model_tags"),
    )
    op.create_table(
        "version_tags",
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(100), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        _time("updated_at"),
        sa.ForeignKeyConstraint(
            ["version_id"], ["model_versions.id"], name="fk_version_tags_version_id_model_versions"
        ),
        sa.PrimaryKeyConstraint("version_id", "key", name="pk_version_tags"),
    )
    op.create_table(
        "audit_trail",
        sa.Column("id", sa.Integer(), nullable=False),
        *_model_id("audit_trail"),
        _time("at"),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("alias", sa.String(50), nullable=True),
        sa.Column("from_version", sa.Integer(), nullable=True),
        sa.Column("to_version", sa.Integer(), nullable=True),
        sa.Column("caused_by_event_id", sa.String(200), nullable=True),
        sa.Column("event_id", sa.String(200), nullable=True),
        sa.Column("event_type", sa.String(200), nullable=True),
        sa.Column("event_json", sa.Text(), nullable=True),
        sa.Column("trace_id", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_trail"),
    )
    op.create_index("ix_audit_trail_caused_by_event_id", "audit_trail", ["caused_by_event_id"])
    op.create_index("ix_audit_trail_model_id_id", "audit_trail", ["model_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_trail_model_id_id", "audit_trail")
    op.drop_index("ix_audit_trail_caused_by_event_id", "audit_trail")
    op.drop_table("audit_trail")
    op.drop_table("version_tags")
    op.drop_table("model_tags")
    op.drop_index("ix_model_aliases_version_id", "model_aliases")
    op.drop_table("model_aliases")
    op.drop_table("model_versions")
    op.drop_table("registered_models")
