"""Sampled surfaces (sphere, box, plate) with dents and bulges, and point labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from oddeye.core.errors import InputError

SHAPES = ("sphere", "box", "plate")


@dataclass
class SynthCloud:
    """points (N, 3) float32, labels (N,) int 0/1 (displaced by the defect), normals (N, 3) float32."""

    points: np.ndarray
    labels: np.ndarray
    normals: np.ndarray | None = None


# ---------------------------------------------------------------------------------------------- helpers


def _sample_surface(rng: np.random.Generator, n: int, shape: str) -> tuple[np.ndarray, np.ndarray]:
    """n points (N, 3) and unit normals (N, 3) on a sphere (r 0.5), a 1 x 0.7 x 0.4 box or a wavy plate."""
    if shape == "sphere":
        n_ = rng.normal(size=(n, 3))
        n_ /= np.linalg.norm(n_, axis=1, keepdims=True)
        return 0.5 * n_, n_
    if shape == "plate":
        xy = rng.uniform(-0.5, 0.5, (n, 2))
        a, k = 0.02, 2 * np.pi
        z = a * np.sin(k * xy[:, 0]) * np.cos(k * xy[:, 1])
        nrm = np.stack([-a * k * np.cos(k * xy[:, 0]) * np.cos(k * xy[:, 1]),
                        a * k * np.sin(k * xy[:, 0]) * np.sin(k * xy[:, 1]), np.ones(n)], axis=1)
        return np.column_stack([xy, z]), nrm / np.linalg.norm(nrm, axis=1, keepdims=True)
    half = np.array([0.5, 0.35, 0.2])
    areas = np.array([half[1] * half[2], half[0] * half[2], half[0] * half[1]])
    axis = rng.choice(3, size=n, p=areas / areas.sum())
    sign = rng.choice([-1.0, 1.0], size=n)
    pts = rng.uniform(-1, 1, (n, 3)) * half
    pts[np.arange(n), axis] = sign * half[axis]
    nrm = np.zeros((n, 3))
    nrm[np.arange(n), axis] = sign
    return pts, nrm


def make_point_cloud(seed: int = 0, n_points: int = 4000, shape: str = "sphere", defect: str | None = None,
                     defect_size: float = 0.05) -> SynthCloud:
    """Points sampled on a surface (unit scale) with an optional dent or bulge of depth `defect_size`.

    The defect displaces points within radius 0.15 along their normals with a smooth bump; labels mark the
    points moved by more than 20% of defect_size. Sensor noise sigma 0.002 is added to every point.
    """
    if shape not in SHAPES:
        raise InputError(f"shape must be one of {SHAPES}, got {shape!r}")
    if defect not in (None, "dent", "bulge"):
        raise InputError(f"defect must be None, 'dent' or 'bulge', got {defect!r}")
    if n_points < 1 or not defect_size > 0:
        raise InputError(f"n_points must be >= 1 and defect_size > 0, got {n_points}, {defect_size}")
    rng = np.random.default_rng([seed, 40])
    pts, nrm = _sample_surface(rng, int(n_points), shape)
    labels = np.zeros(len(pts), dtype=np.int64)
    drng = np.random.default_rng([seed, 41])
    if defect is not None:
        ok = np.flatnonzero(np.abs(pts[:, :2]).max(axis=1) < 0.3) if shape == "plate" else np.arange(len(pts))
        centre = pts[drng.choice(ok)]
        r = np.linalg.norm(pts - centre, axis=1) / 0.15
        bump = np.where(r < 1, (1 - r**2) ** 2, 0.0) * defect_size
        pts = pts + (1 if defect == "bulge" else -1) * bump[:, None] * nrm
        labels = (bump > 0.2 * defect_size).astype(np.int64)
    pts = pts + np.random.default_rng([seed, 42]).normal(0, 0.002, pts.shape)
    return SynthCloud(points=pts.astype(np.float32), labels=labels, normals=nrm.astype(np.float32))
