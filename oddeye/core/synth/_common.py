"""Helpers shared by the scene generators."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from oddeye.core.errors import InputError


def _check_size(size: Sequence[int], name: str = "size", lo: int = 32) -> tuple[int, int]:
    """(H, W) as ints, each >= lo, else InputError."""
    if len(size) != 2 or min(int(size[0]), int(size[1])) < lo:
        raise InputError(f"{name} must be (H, W) with both >= {lo}, got {tuple(size)}")
    return int(size[0]), int(size[1])


def _smooth(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Smooth noise in [0, 1] of `shape`: a (cells x cells) random grid upsampled bicubically."""
    grid = rng.random((cells, cells)).astype(np.float32)
    out = cv2.resize(grid, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
    return np.clip(out, 0.0, 1.0)


def _ellipse(h: int, w: int) -> np.ndarray:
    """Bool (h, w) filled ellipse."""
    yy, xx = np.mgrid[:h, :w]
    return ((yy - (h - 1) / 2) / (h / 2)) ** 2 + ((xx - (w - 1) / 2) / (w / 2)) ** 2 <= 1.0


def _paste(canvas: np.ndarray, values: np.ndarray, shape_mask: np.ndarray, top: int, left: int,
           mask_out: np.ndarray | None = None) -> None:
    """Paste sprite `values` where `shape_mask` holds at (top, left), clipped; optionally mark mask_out."""
    h, w = shape_mask.shape
    H, W = canvas.shape[:2]
    r0, c0, r1, c1 = max(top, 0), max(left, 0), min(top + h, H), min(left + w, W)
    if r1 <= r0 or c1 <= c0:
        return
    sm = shape_mask[r0 - top:r1 - top, c0 - left:c1 - left]
    region = canvas[r0:r1, c0:c1]
    region[sm] = values[r0 - top:r1 - top, c0 - left:c1 - left][sm]
    if mask_out is not None:
        mask_out[r0:r1, c0:c1] |= sm
