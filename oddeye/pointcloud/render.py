"""Review pictures of scored clouds: three orthographic views coloured by score (matplotlib, no GPU/EGL)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from oddeye.pointcloud.plyfile import write_ply_scores


def render_scores(path: str | Path, points: np.ndarray, scores: np.ndarray, title: str = "",
                  labels: np.ndarray | None = None, max_points: int = 30000, seed: int = 0) -> Path:
    """Save a PNG of points (N, 3) seen along x, y and z (principal axes), coloured by scores (N,), hot on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = np.asarray(points, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    if len(p) > max_points:
        keep = np.random.default_rng(seed).choice(len(p), max_points, replace=False)
        p, s = p[keep], s[keep]
        labels = None if labels is None else np.asarray(labels)[keep]
    c = p - p.mean(axis=0)
    _, _, vt = np.linalg.svd(c[:: max(1, len(c) // 5000)], full_matrices=False)
    q = c @ vt.T  # principal axes: view 0 looks along the thinnest one
    views = [(0, 1, "front"), (0, 2, "top"), (1, 2, "side")]
    ncol = 3 + (labels is not None)
    fig, axes = plt.subplots(1, ncol, figsize=(4 * ncol, 4), dpi=100)
    order = np.argsort(s)
    lo, hi = np.percentile(s, 1), np.max(s)
    for ax, (a, b, name) in zip(axes, views):
        sc = ax.scatter(q[order, a], q[order, b], c=s[order], s=1.5, cmap="jet", vmin=lo, vmax=hi, linewidths=0)
        ax.set_title(name, fontsize=9)
        ax.set_aspect("equal")
        ax.axis("off")
    if labels is not None:
        lab = np.asarray(labels) > 0
        ax = axes[3]
        ax.scatter(q[~lab, 0], q[~lab, 1], c="lightgrey", s=1, linewidths=0)
        ax.scatter(q[lab, 0], q[lab, 1], c="red", s=2, linewidths=0)
        ax.set_title("ground truth (front)", fontsize=9)
        ax.set_aspect("equal")
        ax.axis("off")
    fig.colorbar(sc, ax=list(axes), shrink=0.7, label="anomaly score")
    if title:
        fig.suptitle(title, fontsize=10)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def write_review(directory: str | Path, name: str, points: np.ndarray, scores: np.ndarray, title: str = "",
                 labels: np.ndarray | None = None) -> dict[str, str]:
    """Write <name>.ply (score colours) and <name>.png (views) under `directory`; return {'ply', 'png'} paths."""
    d = Path(directory)
    ply = write_ply_scores(d / f"{name}.ply", points, scores)
    png = render_scores(d / f"{name}.png", points, scores, title=title or name, labels=labels)
    return {"ply": str(ply), "png": str(png)}
