"""Scene zones learned from normal footage: a coarse grid named by position and by how often objects use it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from oddeye.core.errors import InputError, ModelError

_ROW_WORDS = {1: ["middle"], 2: ["upper", "lower"], 3: ["upper", "middle", "lower"],
              4: ["top", "upper", "lower", "bottom"], 5: ["top", "upper", "middle", "lower", "bottom"]}
_COL_WORDS = {1: ["centre"], 2: ["left", "right"], 3: ["left", "centre", "right"],
              4: ["left", "centre-left", "centre-right", "right"],
              5: ["far-left", "left", "centre", "right", "far-right"],
              6: ["far-left", "left", "centre-left", "centre-right", "right", "far-right"]}


def _words(n: int, table: dict[int, list[str]], prefix: str) -> list[str]:
    """Position words for n grid lines (falls back to numbered words beyond the table)."""
    return table.get(n, [f"{prefix}{i + 1}" for i in range(n)])


@dataclass
class ZoneMap:
    """A rows x cols grid over the frame; each cell has a name ("lower-left walkway") and its normal occupancy."""

    rows: int = 4
    cols: int = 6
    width: int = 0  # frame size the zones were learned at (px)
    height: int = 0
    counts: list[list[int]] = field(default_factory=list)  # (rows, cols) objects seen per cell in normal footage
    names: list[list[str]] = field(default_factory=list)
    busy_share: float = 0.9  # cells holding this share of normal objects are "walkway"

    def __post_init__(self) -> None:
        if self.rows < 1 or self.cols < 1:
            raise InputError(f"zones need at least a 1x1 grid, got rows={self.rows} cols={self.cols}")

    @property
    def fitted(self) -> bool:
        """True once fit() has seen normal objects."""
        return bool(self.names)

    def cell_of(self, x: float, y: float) -> tuple[int, int]:
        """Grid cell (row, col) of point (x, y) in pixels of the frame the zones were learned at."""
        r = int(np.clip(y / max(self.height, 1) * self.rows, 0, self.rows - 1))
        c = int(np.clip(x / max(self.width, 1) * self.cols, 0, self.cols - 1))
        return r, c

    def fit(self, points: np.ndarray, width: int, height: int) -> ZoneMap:
        """Learn occupancy from the foot points (N, 2) (x, y px) of objects in normal frames; name the cells."""
        self.width, self.height = int(width), int(height)
        counts = np.zeros((self.rows, self.cols), dtype=np.int64)
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        for x, y in pts:
            r, c = self.cell_of(x, y)
            counts[r, c] += 1
        self.counts = counts.tolist()
        order = np.argsort(-counts.ravel())
        cum = np.cumsum(counts.ravel()[order]) / max(counts.sum(), 1)
        busy = np.zeros(counts.size, dtype=bool)
        busy[order[: int(np.searchsorted(cum, self.busy_share) + 1)]] = True
        busy &= counts.ravel() > 0
        rw, cw = _words(self.rows, _ROW_WORDS, "row"), _words(self.cols, _COL_WORDS, "col")
        names = []
        for r in range(self.rows):
            row = []
            for c in range(self.cols):
                k = r * self.cols + c
                kind = "walkway" if busy[k] else ("edge area" if counts.ravel()[k] > 0 else "unused area")
                row.append(f"{rw[r]} {cw[c]} {kind}")
            names.append(row)
        self.names = names
        return self

    def name(self, x: float, y: float) -> str:
        """Zone name of point (x, y); 'anywhere' before fit()."""
        if not self.fitted:
            return "anywhere"
        r, c = self.cell_of(x, y)
        return self.names[r][c]

    def band(self, zone: str) -> str:
        """The row band of a zone name ("lower left walkway" -> "lower band"), for rules with sparse support."""
        return zone.split(" ", 1)[0] + " band"

    def all_names(self) -> list[str]:
        """Every zone name, row by row."""
        return [n for row in self.names for n in row]

    def occupancy(self, zone: str) -> int:
        """How many normal objects were seen in `zone`."""
        for r, row in enumerate(self.names):
            for c, n in enumerate(row):
                if n == zone:
                    return int(self.counts[r][c])
        return 0

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for zones.yaml."""
        return {"rows": self.rows, "cols": self.cols, "width": self.width, "height": self.height,
                "busy_share": self.busy_share, "counts": self.counts, "names": self.names}

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "zones") -> ZoneMap:
        """Inverse of to_dict(); a malformed dict is a ModelError naming `source`."""
        try:
            z = cls(rows=int(d["rows"]), cols=int(d["cols"]), width=int(d["width"]), height=int(d["height"]),
                    counts=[[int(v) for v in row] for row in d["counts"]],
                    names=[[str(v) for v in row] for row in d["names"]], busy_share=float(d.get("busy_share", 0.9)))
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"{source}: malformed zone map ({e})",
                             "restore zones.yaml, or refit with `oddeye fit video-rules`") from None
        if len(z.names) != z.rows or any(len(r) != z.cols for r in z.names):
            raise ModelError(f"{source}: 'names' must be a {z.rows}x{z.cols} grid",
                             "refit with `oddeye fit video-rules`")
        return z
