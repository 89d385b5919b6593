"""Small path helpers shared by loaders."""

from __future__ import annotations

import re
from pathlib import Path


def natural_key(path: str | Path) -> list[int | str]:
    """Sort key so that 'frame2' sorts before 'frame10'."""
    name = Path(path).name
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]
