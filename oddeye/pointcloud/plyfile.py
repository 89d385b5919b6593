"""Write point clouds as binary PLY: plain (with per-point labels) for inputs, coloured by score for review."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from oddeye.core.errors import InputError


def write_ply(path: str | Path, points: np.ndarray, labels: np.ndarray | None = None) -> Path:
    """Write a binary PLY of points (N, 3) as float32, with an int `label` property when labels (N,) are given."""
    pts = np.asarray(points, dtype=np.float32)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise InputError(f"write_ply: points must have shape (N, 3), got {pts.shape}")
    columns = [("x", "<f4", pts[:, 0]), ("y", "<f4", pts[:, 1]), ("z", "<f4", pts[:, 2])]
    if labels is not None:
        lab = np.asarray(labels).reshape(-1)
        if len(lab) != len(pts):
            raise InputError(f"write_ply: {len(lab)} labels for {len(pts)} points")
        columns.append(("label", "<i4", lab.astype(np.int32)))
    return _write_ply(path, columns, "oddeye point cloud")


def write_ply_scores(path: str | Path, points: np.ndarray, scores: np.ndarray, vmin: float | None = None,
                     vmax: float | None = None) -> Path:
    """Write a binary PLY of points (N, 3) coloured by scores (N,) (jet), with the raw score as a property."""
    from oddeye.core.viz import colorize

    pts = np.asarray(points, dtype=np.float32)
    s = np.asarray(scores, dtype=np.float32).reshape(-1)
    if pts.ndim != 2 or pts.shape[1] != 3 or len(s) != len(pts):
        raise InputError(f"write_ply_scores: points {pts.shape} and scores {s.shape} do not match")
    rgb = colorize(s.reshape(1, -1), vmin, vmax).reshape(-1, 3)
    columns = [("x", "<f4", pts[:, 0]), ("y", "<f4", pts[:, 1]), ("z", "<f4", pts[:, 2]), ("red", "u1", rgb[:, 0]),
               ("green", "u1", rgb[:, 1]), ("blue", "u1", rgb[:, 2]), ("score", "<f4", s)]
    return _write_ply(path, columns, "oddeye point anomaly scores (jet colour)")


def _write_ply(path: str | Path, columns: list[tuple[str, str, np.ndarray]], comment: str) -> Path:
    """Write vertex columns [(name, '<f4' | '<i4' | 'u1', values (N,))] as a binary little-endian PLY."""
    names = {"<f4": "float", "<i4": "int", "u1": "uchar"}
    rec = np.empty(len(columns[0][2]), dtype=np.dtype([(n, t) for n, t, _ in columns]))
    for n, _, v in columns:
        rec[n] = v
    header = (f"ply\nformat binary_little_endian 1.0\ncomment {comment}\nelement vertex {len(rec)}\n"
              + "".join(f"property {names[t]} {n}\n" for n, t, _ in columns) + "end_header\n")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(header.encode("ascii") + rec.tobytes())
    return out
