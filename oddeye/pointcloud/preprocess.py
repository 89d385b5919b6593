"""Preprocessing: voxel downsampling (with the point->voxel map), outlier and plane removal, normalisation.

Every step is seeded where it draws random numbers and writes what it did into a `record` dict, so a score can
be traced back to the exact preprocessing that produced it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from oddeye.core.errors import EmptyDataError, InputError, require_positive
from oddeye.core.geometry import bounds, extent, group_cells, point_spacing

__all__ = ["Voxelized", "bounds", "extent", "group_cells", "normalise", "point_spacing", "preprocess",
           "remove_dominant_plane", "remove_statistical_outliers", "voxel_downsample"]


@dataclass
class Voxelized:
    """Voxel centroids (M, 3) and, for every input point, the row of its voxel: inverse (N,) int64; unit normals
    (M, 3) where features were computed (else None)."""

    points: np.ndarray
    inverse: np.ndarray
    voxel_size: float
    normals: np.ndarray | None = None


def voxel_downsample(points: np.ndarray, voxel_size: float) -> Voxelized:
    """Average points (N, 3) per voxel of edge `voxel_size`; also return each point's voxel (exact, no kNN)."""
    require_positive(voxel_size, "voxel_size")
    p = np.asarray(points, dtype=np.float64)
    inverse, counts = group_cells(np.floor((p - bounds(p)[0]) / voxel_size).astype(np.int64))
    cent = np.stack([np.bincount(inverse, p[:, d], len(counts)) for d in range(3)], axis=1)
    cent /= counts[:, None]
    return Voxelized(cent, inverse, float(voxel_size))


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
