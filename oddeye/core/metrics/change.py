"""Change-detection metrics: mask F1 / IoU, boxes (IoU matrix, recall, boxes to mask)."""

from __future__ import annotations

import numpy as np

from oddeye.core.metrics._base import ArrayLike, MetricInputError, as_binary


def change_f1_iou(pred_mask: ArrayLike, gt_mask: ArrayLike) -> tuple[float, float]:
    """Pixel F1 and IoU of a binary change mask against the ground truth; both empty counts as (1, 1)."""
    p, g = np.asarray(pred_mask), np.asarray(gt_mask)
    if p.shape != g.shape:
        raise MetricInputError(f"pred_mask and gt_mask differ in shape: {p.shape} vs {g.shape}")
    p, g = as_binary(p, "pred_mask"), as_binary(g, "gt_mask")
    tp = int(np.count_nonzero(p & g))
    fp = int(np.count_nonzero(p & ~g))
    fn = int(np.count_nonzero(~p & g))
    if tp + fp + fn == 0:
        return 1.0, 1.0
    return 2 * tp / (2 * tp + fp + fn), tp / (tp + fp + fn)


def _boxes(b: ArrayLike, name: str) -> np.ndarray:
    """Boxes as a (K, 4) float array of (x0, y0, x1, y1)."""
    a = np.asarray(b, dtype=np.float64)
    if a.size == 0:
        return a.reshape(0, 4)
    if a.ndim == 1 and a.size == 4:
        a = a[None]
    if a.ndim != 2 or a.shape[1] != 4:
        raise MetricInputError(f"{name} must have shape (K, 4) as (x0, y0, x1, y1), got {a.shape}")
    return a


def boxes_to_mask(boxes: ArrayLike, shape: tuple[int, int]) -> np.ndarray:
    """Bool (H, W) mask covering boxes (K, 4) of (x0, y0, x1, y1) pixels, x1/y1 exclusive, clipped to the image."""
    h, w = int(shape[0]), int(shape[1])
    mask = np.zeros((h, w), dtype=bool)
    for x0, y0, x1, y1 in _boxes(boxes, "boxes"):
        c0, r0 = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
        c1, r1 = min(int(np.ceil(x1)), w), min(int(np.ceil(y1)), h)
        if c1 > c0 and r1 > r0:
            mask[r0:r1, c0:c1] = True
    return mask


def box_iou(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """IoU matrix (N, M) between boxes a (N, 4) and b (M, 4) given as (x0, y0, x1, y1)."""
    a, b = _boxes(a, "a"), _boxes(b, "b")
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def box_recall(gt_boxes: ArrayLike, pred_boxes: ArrayLike, iou_thr: float = 0.5, centre_hit: bool = False) -> float:
    """Share of ground-truth boxes found by some prediction (IoU >= iou_thr, or its centre inside with centre_hit).

    No ground-truth boxes gives NaN (recall is undefined).
    """
    g, p = _boxes(gt_boxes, "gt_boxes"), _boxes(pred_boxes, "pred_boxes")
    if g.shape[0] == 0:
        return float("nan")
    if p.shape[0] == 0:
        return 0.0
    hit = (box_iou(g, p) >= iou_thr).any(axis=1)
    if centre_hit:
        cx, cy = (p[:, 0] + p[:, 2]) / 2, (p[:, 1] + p[:, 3]) / 2
        inside = ((cx[None] >= g[:, None, 0]) & (cx[None] < g[:, None, 2])
                  & (cy[None] >= g[:, None, 1]) & (cy[None] < g[:, None, 3]))
        hit |= inside.any(axis=1)
    return float(hit.mean())
