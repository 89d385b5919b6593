"""Longer dtype tags: evenly spaced series are stored as `arange:<dtype>:<start>:<step>` with no bytes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Widen series.dtype and maps.dtype to 96 characters."""
    for table in ("series", "maps"):
        with op.batch_alter_table(table) as batch:
            batch.alter_column("dtype", type_=sa.String(96), existing_type=sa.String(16), existing_nullable=False)


def downgrade() -> None:
    """Narrow them back (fails if a longer tag is stored)."""
    for table in ("series", "maps"):
        with op.batch_alter_table(table) as batch:
            batch.alter_column("dtype", type_=sa.String(16), existing_type=sa.String(96), existing_nullable=False)
