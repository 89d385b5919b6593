"""Preprocessing: voxel downsampling (with the point->voxel map), outlier and plane removal, normalisation.

Every step is seeded where it draws random numbers and writes what it did into a `record` dict, so a score can
be traced back to the exact preprocessing that produced it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from oddeye.core.errors import EmptyDataError, InputError, require_positive


@dataclass
class Voxelized:
    """Voxel centroids (M, 3) and, for every input point, the row of its voxel: inverse (N,) int64; unit normals
    (M, 3) where features were computed (else None)."""

    points: np.ndarray
    inverse: np.ndarray
    voxel_size: float
    normals: np.ndarray | None = None


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


def voxel_downsample(points: np.ndarray, voxel_size: float) -> Voxelized:
    """Average points (N, 3) per voxel of edge `voxel_size`; also return each point's voxel (exact, no kNN)."""
    require_positive(voxel_size, "voxel_size")
    p = np.asarray(points, dtype=np.float64)
    inverse, counts = group_cells(np.floor((p - bounds(p)[0]) / voxel_size).astype(np.int64))
    cent = np.stack([np.bincount(inverse, p[:, d], len(counts)) for d in range(3)], axis=1)
    cent /= counts[:, None]
    return Voxelized(cent, inverse, float(voxel_size))


def point_spacing(points: np.ndarray) -> float:
    """Typical distance between neighbouring surface points, from the area covered by voxels (no kNN)."""
    p = np.asarray(points, dtype=np.float64)
    h = extent(p) / 50.0
    area = len(voxel_downsample(p, h).points) * h * h
    return float(np.sqrt(area / len(p)))


def remove_statistical_outliers(points: np.ndarray, nb_neighbors: int = 20, std_ratio: float = 2.5) -> np.ndarray:
    """Keep-mask (N,) bool of points whose mean neighbour distance is within std_ratio sigmas (open3d)."""
    import open3d as o3d

    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(points, dtype=np.float64)))
    _, ind = pc.remove_statistical_outlier(nb_neighbors=nb_neighbors, std_ratio=std_ratio)
    keep = np.zeros(len(points), dtype=bool)
    keep[np.asarray(ind, dtype=np.int64)] = True
    return keep


def remove_dominant_plane(points: np.ndarray, distance: float, seed: int = 0, min_fraction: float = 0.2,
                          iterations: int = 500) -> tuple[np.ndarray, list[float] | None]:
    """RANSAC the largest plane (open3d, seeded); if it holds >= min_fraction of points, return a keep-mask
    (N,) without it and its (a, b, c, d); else keep everything and return None."""
    import open3d as o3d

    o3d.utility.random.seed(int(seed))
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(points, dtype=np.float64)))
    model, inliers = pc.segment_plane(distance_threshold=float(distance), ransac_n=3, num_iterations=iterations)
    keep = np.ones(len(points), dtype=bool)
    if len(inliers) < min_fraction * len(points):
        return keep, None
    keep[np.asarray(inliers, dtype=np.int64)] = False
    return keep, [float(v) for v in model]


def normalise(points: np.ndarray, centre: np.ndarray | None = None, scale: float | None = None
              ) -> tuple[np.ndarray, np.ndarray, float]:
    """Centre points (N, 3) at their bbox centre and divide by the bbox diagonal (or the given ones)."""
    p = np.asarray(points, dtype=np.float64)
    c = (p.max(axis=0) + p.min(axis=0)) / 2 if centre is None else np.asarray(centre, dtype=np.float64)
    s = extent(p) if scale is None else float(scale)
    if s <= 0:
        raise InputError("cannot normalise a cloud whose points all coincide (extent 0)")
    return (p - c) / s, c, s


def preprocess(points: np.ndarray, *, outliers: bool = True, plane: bool = False, plane_distance: float | None = None,
               normalize: bool = False, seed: int = 0, source: str = "cloud") -> tuple[np.ndarray, dict[str, Any]]:
    """Apply the optional cleaning steps to points (N, 3) -> (keep-mask (N,), record of what was done)."""
    p = np.asarray(points, dtype=np.float64)
    keep = np.ones(len(p), dtype=bool)
    rec: dict[str, Any] = {"seed": seed, "n_in": int(len(p))}
    if outliers and len(p) > 40:
        k = remove_statistical_outliers(p)
        rec["outliers_removed"] = int((~k).sum())
        keep &= k
    if plane:
        dist = plane_distance if plane_distance is not None else 0.005 * extent(p)
        k, model = remove_dominant_plane(p[keep], dist, seed=seed)
        idx = np.flatnonzero(keep)
        keep[idx[~k]] = False
        rec["plane"] = model
        rec["plane_points_removed"] = int((~k).sum())
    if keep.sum() < 2:
        raise EmptyDataError(f"{source}: preprocessing left {int(keep.sum())} points", "turn off plane/outlier removal")
    if normalize:
        _, c, s = normalise(p[keep])
        rec["centre"], rec["scale"] = c.tolist(), s
    rec["n_out"] = int(keep.sum())
    return keep, rec
