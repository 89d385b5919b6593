"""Readable folders come only from recorded files that exist: drop the store's own folder and the folders of
inputs that never were files (a source such as `synth` resolved against the working directory).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Keep a folder row only where an existing artefact of its run is that folder or lies directly in it."""
    bind = op.get_bind()
    keep = set()
    for run_id, path in bind.execute(sa.text("SELECT run_id, path FROM artefacts")):
        p = Path(path)
        if p.exists():
            keep.add((run_id, str(p if p.is_dir() else p.parent)))
    drop = [i for i, run_id, path in bind.execute(sa.text("SELECT id, run_id, path FROM folders"))
            if (run_id, path) not in keep]
    for start in range(0, len(drop), 500):
        bind.execute(sa.text("DELETE FROM folders WHERE id IN :ids").bindparams(sa.bindparam("ids", expanding=True)),
                     {"ids": drop[start:start + 500]})


def downgrade() -> None:
    """Nothing to undo: the dropped rows only widened what the dashboard could read."""
