"""Initial review store: runs, samples, series, maps, events, artefacts.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _id() -> sa.Column:
    return sa.Column("id", sa.Integer, primary_key=True)


def _sample_fk(nullable: bool = False) -> sa.Column:
    return sa.Column("sample_pk", sa.Integer, sa.ForeignKey("samples.id", ondelete="CASCADE"), nullable=nullable)


def _run_fk() -> sa.Column:
    return sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False)


def upgrade() -> None:
    """Create the first tables."""
    op.create_table(
        "runs", _id(),
        sa.Column("head", sa.String(64), nullable=False), sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("model", sa.Text), sa.Column("data", sa.Text),
        sa.Column("parameters", sa.JSON, nullable=False), sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("meta", sa.JSON, nullable=False), sa.Column("threshold", sa.Float),
        sa.Column("n_samples", sa.Integer, nullable=False), sa.Column("n_events", sa.Integer, nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("oddeye_version", sa.String(32), nullable=False),
    )
    op.create_table(
        "samples", _id(), _run_fk(),
        sa.Column("sample_id", sa.Text, nullable=False), sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("path", sa.Text), sa.Column("label", sa.Integer), sa.Column("score", sa.Float),
        sa.Column("frame_start", sa.Integer), sa.Column("frame_end", sa.Integer), sa.Column("n_frames", sa.Integer),
        sa.Column("reason", sa.Text, nullable=False), sa.Column("meta", sa.JSON, nullable=False),
    )
    op.create_index("ix_samples_run_sample", "samples", ["run_id", "sample_id"])
    op.create_index("ix_samples_run_score", "samples", ["run_id", "score"])
    op.create_table(
        "series", _id(), _sample_fk(),
        sa.Column("name", sa.String(64), nullable=False), sa.Column("dtype", sa.String(16), nullable=False),
        sa.Column("length", sa.Integer, nullable=False), sa.Column("data", sa.LargeBinary, nullable=False),
        sa.UniqueConstraint("sample_pk", "name", name="uq_series_sample_name"),
    )
    op.create_table(
        "maps", _id(), _sample_fk(),
        sa.Column("name", sa.String(64), nullable=False), sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("shape", sa.JSON, nullable=False), sa.Column("dtype", sa.String(16), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_maps_sample", "maps", ["sample_pk"])
    op.create_table(
        "events", _id(), _run_fk(), _sample_fk(nullable=True),
        sa.Column("sample_id", sa.Text, nullable=False), sa.Column("score", sa.Float),
        sa.Column("start", sa.Float), sa.Column("end", sa.Float),
        sa.Column("start_frame", sa.Integer), sa.Column("end_frame", sa.Integer),
        sa.Column("x1", sa.Float), sa.Column("y1", sa.Float), sa.Column("x2", sa.Float), sa.Column("y2", sa.Float),
        sa.Column("reason", sa.Text, nullable=False), sa.Column("meta", sa.JSON, nullable=False),
    )
    op.create_index("ix_events_run_sample", "events", ["run_id", "sample_pk"])
    op.create_table(
        "artefacts", _id(), _run_fk(), _sample_fk(nullable=True),
        sa.Column("name", sa.String(128), nullable=False), sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
    )
    op.create_index("ix_artefacts_run", "artefacts", ["run_id"])
    op.create_index("ix_artefacts_sample", "artefacts", ["sample_pk"])


def downgrade() -> None:
    """Drop the first tables."""
    for name in ("artefacts", "events", "maps", "series", "samples", "runs"):
        op.drop_table(name)
