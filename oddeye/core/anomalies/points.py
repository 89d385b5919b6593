"""Synthetic anomalies on a point cloud (a real scan or a generated one): dent, bulge, hole, crack, foreign blob,
seeded, with per-point labels.

Sizes are fractions of the cloud's extent (bounding-box diagonal): the defect radius R = size * extent, with
size drawn from [0.01, 0.05] unless given. Labels (N',) mark the points the defect changed:
- dent / bulge: points pushed in / out along the local outward normal (smooth bump of depth 0.4 R, inside R);
- crack: points within a thin band along a 2R-long line through the centre, pushed in by 0.4 R;
- blob: the new points of a small sphere (radius 0.6 R) stuck onto the surface;
- hole: the points inside R are REMOVED, so they cannot be scored; the RIM points (R <= r < 1.35 R) are
  labelled instead, as the part of the surface where the hole shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from oddeye.core.errors import InputError
from oddeye.core.geometry import extent, point_spacing

KINDS = ("dent", "bulge", "hole", "crack", "blob")


@dataclass
class DefectCloud:
    """A defective copy of a cloud: points (N', 3), labels (N',) int (1 = defect), what was done in meta."""

    points: np.ndarray
    labels: np.ndarray
    kind: str
    meta: dict[str, Any] = field(default_factory=dict)


def _frame(points: np.ndarray, centre: np.ndarray, radius: float, cloud_centre: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outward unit normal and two tangent directions at `centre` from a PCA of the points within `radius`."""
    near = points[np.linalg.norm(points - centre, axis=1) < radius]
    cov = np.cov((near - near.mean(axis=0)).T) if len(near) >= 3 else np.eye(3)
    _, vecs = np.linalg.eigh(cov)
    n, t1, t2 = vecs[:, 0], vecs[:, 2], vecs[:, 1]
    if np.dot(n, centre - cloud_centre) < 0:
        n = -n
    return n, t1, t2


def _pick_centre(points: np.ndarray, radius: float, spacing: float, rng: np.random.Generator) -> np.ndarray:
    """A random surface point whose disc of `radius` is mostly covered by points (not on a scan border)."""
    expect = np.pi * radius**2 / spacing**2
    best, best_n = points[rng.integers(len(points))], -1.0
    for _ in range(60):
        c = points[rng.integers(len(points))]
        n = float((np.linalg.norm(points - c, axis=1) < radius).sum())
        if n >= 0.8 * expect:
            return c
        if n > best_n:
            best, best_n = c, n
    return best


def make_defect(points: np.ndarray, kind: str, seed: int = 0, size: float | None = None,
                size_range: tuple[float, float] = (0.01, 0.05)) -> DefectCloud:
    """Apply one seeded defect of `kind` to points (N, 3) -> DefectCloud with point labels (see module doc)."""
    if kind not in KINDS:
        raise InputError(f"unknown defect kind {kind!r}", f"choose from {', '.join(KINDS)}")
    p = np.asarray(points, dtype=np.float64).copy()
    if len(p) < 10:
        raise InputError(f"make_defect needs a cloud of at least 10 points, got {len(p)}")
    rng = np.random.default_rng(seed)
    s = float(rng.uniform(*size_range)) if size is None else float(size)
    ext = extent(p)
    radius = s * ext
    spacing = point_spacing(p)
    centre = _pick_centre(p, radius, spacing, rng)
    normal, t1, t2 = _frame(p, centre, max(radius, 3 * spacing), (p.max(axis=0) + p.min(axis=0)) / 2)
    d = p - centre
    r = np.linalg.norm(d - np.outer(d @ normal, normal), axis=1)  # distance in the tangent plane
    near = np.abs(d @ normal) < radius  # only the sheet of surface at the centre, not the far side
    depth = 0.4 * radius
    labels = np.zeros(len(p), dtype=np.int64)
    meta = {"kind": kind, "seed": seed, "size": s, "radius": radius, "centre": centre.tolist(),
            "normal": normal.tolist(), "spacing": spacing}
    if kind in ("dent", "bulge"):
        inside = near & (r < radius)
        prof = (1 - (r[inside] / radius) ** 2) ** 2
        sign = -1.0 if kind == "dent" else 1.0
        p[inside] += sign * depth * prof[:, None] * normal
        labels[inside] = 1
    elif kind == "crack":
        theta = rng.uniform(0, np.pi)
        direction = np.cos(theta) * t1 + np.sin(theta) * t2
        along = d @ direction
        across = np.linalg.norm(d - np.outer(along, direction) - np.outer(d @ normal, normal), axis=1)
        width = max(0.15 * radius, 1.5 * spacing)
        inside = near & (np.abs(along) < radius) & (across < width)
        prof = (1 - (across[inside] / width) ** 2) * (1 - (along[inside] / radius) ** 4)
        p[inside] -= depth * prof[:, None] * normal
        labels[inside] = 1
        meta["width"] = width
    elif kind == "hole":
        gone = near & (r < radius)
        rim = near & ~gone & (r < 1.35 * radius)
        labels[rim] = 1
        p, labels = p[~gone], labels[~gone]
        meta["removed"] = int(gone.sum())
    else:  # blob: a sphere of radius 0.6 R half sunk into the surface, sampled at the scan's spacing
        br = 0.6 * radius
        n_new = max(12, int(4 * np.pi * br**2 / spacing**2 * 0.5))
        v = rng.normal(size=(n_new, 3))
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        v = v[v @ normal > -0.2]  # the part that sticks out of the surface
        blob = centre + 0.5 * br * normal + br * v + rng.normal(scale=0.1 * spacing, size=v.shape)
        p = np.concatenate([p, blob])
        labels = np.concatenate([labels, np.ones(len(blob), dtype=np.int64)])
        meta["added"] = int(len(blob))
    if labels.sum() == 0:
        raise InputError(f"make_defect({kind!r}, seed={seed}) touched no points: the cloud is too sparse for size {s:.3f}",
                         "use a larger size or a denser cloud")
    return DefectCloud(p.astype(np.asarray(points).dtype if np.issubdtype(np.asarray(points).dtype, np.floating)
                                else np.float64), labels, kind, meta)
