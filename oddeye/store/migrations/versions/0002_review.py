"""Review: labels, thresholds, and the folders the dashboard may read from.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _run_fk() -> sa.Column:
    return sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False)


def upgrade() -> None:
    """Add folders, labels and thresholds."""
    op.create_table(
        "folders", sa.Column("id", sa.Integer, primary_key=True), _run_fk(),
        sa.Column("path", sa.Text, nullable=False),
        sa.UniqueConstraint("run_id", "path", name="uq_folders_run_path"),
    )
    op.create_table(
        "labels", sa.Column("id", sa.Integer, primary_key=True), _run_fk(),
        sa.Column("event_id", sa.Integer, sa.ForeignKey("events.id", ondelete="CASCADE")),
        sa.Column("sample_pk", sa.Integer, sa.ForeignKey("samples.id", ondelete="CASCADE")),
        sa.Column("label", sa.String(16), nullable=False), sa.Column("by", sa.String(128), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False), sa.Column("note", sa.Text, nullable=False),
    )
    op.create_index("ix_labels_run", "labels", ["run_id"])
    op.create_table(
        "thresholds", sa.Column("id", sa.Integer, primary_key=True), _run_fk(),
        sa.Column("value", sa.Float, nullable=False), sa.Column("source", sa.String(32), nullable=False),
        sa.Column("max_false_alarm_rate", sa.Float), sa.Column("by", sa.String(128), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False), sa.Column("note", sa.Text, nullable=False),
    )
    op.create_index("ix_thresholds_run", "thresholds", ["run_id"])


def downgrade() -> None:
    """Drop labels, thresholds and folders."""
    for name in ("thresholds", "labels", "folders"):
        op.drop_table(name)
