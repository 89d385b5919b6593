"""Pictures a reviewer would rather look at than read: heatmap overlays and score timelines."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from oddeye.core.imageio import convert, write_image
from oddeye.core.types import Event


def colorize(amap: np.ndarray, vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """Map a float map (H, W) to an RGB uint8 jet image (H, W, 3), scaled to [vmin, vmax]."""
    a = np.asarray(amap, dtype=np.float32)
    lo = float(np.nanmin(a)) if vmin is None else vmin
    hi = float(np.nanmax(a)) if vmax is None else vmax
    norm = np.clip((a - lo) / (hi - lo + 1e-12), 0, 1)
    bgr = cv2.applyColorMap((norm * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def overlay(image: np.ndarray, amap: np.ndarray, alpha: float = 0.45,
            vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """Blend a heatmap of `amap` (h, w; resized to the image) over `image` (H, W[, C]) -> RGB (H, W, 3)."""
    img = convert(image, "rgb")
    a = np.asarray(amap, dtype=np.float32)
    if a.shape != img.shape[:2]:
        a = cv2.resize(a, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
    heat = colorize(a, vmin, vmax)
    return cv2.addWeighted(img, 1 - alpha, heat, alpha, 0)


def save_overlay(path: str | Path, image: np.ndarray, amap: np.ndarray, **kw: float) -> Path:
    """Write the side-by-side image | overlay PNG to `path` and return it."""
    ov = overlay(image, amap, **kw)
    side = np.concatenate([convert(image, "rgb"), ov], axis=1)
    return write_image(path, side)


def plot_timeline(path: str | Path, scores: np.ndarray, threshold: float | None = None,
                  times: np.ndarray | None = None, events: Sequence[Event] = (),
                  labels: np.ndarray | None = None, title: str = "") -> Path:
    """Save a score-vs-time PNG with the threshold line, events shaded and true anomalies (if known)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = np.asarray(scores, dtype=np.float64)
    t = np.arange(len(s)) if times is None else np.asarray(times)
    fig, ax = plt.subplots(figsize=(10, 2.8), dpi=100)
    if labels is not None:
        lab = np.asarray(labels).astype(bool)
        ax.fill_between(t, 0, 1, where=lab, transform=ax.get_xaxis_transform(), color="tab:red", alpha=0.12,
                        step="mid", label="true anomaly")
    ax.plot(t, s, color="tab:blue", lw=1.2, label="score")
    if threshold is not None:
        ax.axhline(threshold, color="tab:orange", ls="--", lw=1, label=f"threshold {threshold:.3g}")
    for ev in events:
        if ev.start is not None and times is not None:
            ax.axvspan(ev.start, ev.end, color="tab:orange", alpha=0.2)
        elif ev.start_frame is not None and times is None:
            ax.axvspan(ev.start_frame, ev.end_frame, color="tab:orange", alpha=0.2)
    ax.set_xlabel("time (s)" if times is not None else "frame")
    ax.set_ylabel("anomaly score")
    if title:
        ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p)
    plt.close(fig)
    return p
