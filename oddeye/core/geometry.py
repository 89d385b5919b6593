"""Point-cloud geometry that core and the pointcloud head share: bounds, extent, grouping into cells, spacing."""

from __future__ import annotations

import numpy as np


def bounds(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column-wise min and max (D,) of a (N, D) array, one column at a time (numpy's axis-0 reductions over rows
    of 3 are ~10x slower)."""
    return (np.array([a[:, i].min() for i in range(a.shape[1])]),
            np.array([a[:, i].max() for i in range(a.shape[1])]))


def extent(points: np.ndarray) -> float:
    """Diagonal of the axis-aligned bounding box of points (N, 3)."""
    lo, hi = bounds(np.asarray(points))
    return float(np.linalg.norm(hi - lo))


def group_cells(ijk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer cells (N, 3) -> the group of each row (N,) int64 and each group's size (G,); groups in C order of
    the cells. Cells are numbered in their bounding box; a box too large for int64 numbers (a stray point far
    away) groups the rows themselves instead (slower, still exact)."""
    lo, hi = bounds(ijk)
    c = ijk - lo
    span = hi - lo + 1
    if float(np.prod(span.astype(np.float64))) < 2.0**62:
        key = (c[:, 0] * span[1] + c[:, 1]) * span[2] + c[:, 2]
        _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    else:
        _, inverse, counts = np.unique(c, axis=0, return_inverse=True, return_counts=True)
    return np.asarray(inverse.reshape(-1), dtype=np.int64), counts


def point_spacing(points: np.ndarray) -> float:
    """Typical distance between neighbouring surface points, from the area covered by voxels of 1/50 of the
    extent (no kNN)."""
    p = np.asarray(points, dtype=np.float64)
    h = extent(p) / 50.0
    _, counts = group_cells(np.floor((p - bounds(p)[0]) / h).astype(np.int64))
    return float(np.sqrt(len(counts) * h * h / len(p)))
