"""Live sources (`oddeye watch`): open/closed events with a key, series chunks, the ledger, the log and health.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-09
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _run_fk(ondelete: str = "CASCADE", nullable: bool = False) -> sa.Column:
    return sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete=ondelete), nullable=nullable)


def _stamp(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    """Add events.key / events.is_open and the series_chunks, live_ledger, live_log and live_health tables."""
    op.add_column("events", sa.Column("key", sa.Text))
    op.add_column("events", sa.Column("is_open", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_index("uq_events_run_key", "events", ["run_id", "key"], unique=True)
    op.create_table(
        "series_chunks", sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sample_pk", sa.Integer, sa.ForeignKey("samples.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False), sa.Column("first_frame", sa.Integer, nullable=False),
        sa.Column("dtype", sa.String(96), nullable=False), sa.Column("length", sa.Integer, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.UniqueConstraint("sample_pk", "name", "first_frame", name="uq_series_chunks_sample_name_first"),
    )
    op.create_table(
        "live_ledger", sa.Column("id", sa.Integer, primary_key=True), _run_fk(),
        sa.Column("source", sa.Text, nullable=False), sa.Column("item", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False), sa.Column("message", sa.Text, nullable=False),
        _stamp("at"), sa.UniqueConstraint("source", "item", name="uq_live_ledger_source_item"),
    )
    op.create_index("ix_live_ledger_run", "live_ledger", ["run_id"])
    op.create_table(
        "live_log", sa.Column("id", sa.Integer, primary_key=True), _run_fk(), _stamp("at"),
        sa.Column("what", sa.String(64), nullable=False), sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_live_log_run", "live_log", ["run_id", "id"])
    op.create_table(
        "live_health", sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("source", sa.Text, nullable=False), _run_fk("SET NULL", nullable=True),
        sa.Column("state", sa.String(32), nullable=False),
        *[sa.Column(c, sa.Float, nullable=False) for c in ("fps_in", "fps_scored", "lag_s")],
        *[sa.Column(c, sa.Integer, nullable=False) for c in ("dropped_frames", "reconnects")],
        sa.Column("last_event", sa.DateTime(timezone=True)),
        *[sa.Column(c, sa.Integer, nullable=False) for c in ("frames", "items", "errors")],
        _stamp("updated"), sa.UniqueConstraint("source", name="uq_live_health_source"),
    )


def downgrade() -> None:
    """Drop the live tables and the two event columns."""
    for name in ("live_health", "live_log", "live_ledger", "series_chunks"):
        op.drop_table(name)
    op.drop_index("uq_events_run_key", "events")
    for column in ("is_open", "key"):  # plain ALTER TABLE (SQLite >= 3.35): rebuilding events would drop its labels
        op.drop_column("events", column)
