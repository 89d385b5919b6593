"""How far an export's outputs are from the original model's: the largest absolute difference, and the largest one
relative to the magnitude of the array it was found in (a score vector, or one map), so a map's near-zero pixels do
not blow it up."""

from __future__ import annotations

import numpy as np


class Diff:
    """Running largest absolute and relative differences between original and exported arrays."""

    def __init__(self) -> None:
        self.abs = 0.0
        self.rel = 0.0

    def add(self, original: np.ndarray, exported: np.ndarray) -> None:
        """Compare one array (a score vector or a map) with its export."""
        a, b = np.asarray(original, np.float64), np.asarray(exported, np.float64)
        if a.shape != b.shape:
            raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
        if a.size == 0:
            return
        d = float(np.abs(a - b).max())
        self.abs = max(self.abs, d)
        self.rel = max(self.rel, d / max(float(np.abs(a).max()), 1e-12))
