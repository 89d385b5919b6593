"""Every metric of oddeye, once: image, pixel/point, region (AUPRO, AUPIMO), video and change detection.

Conventions: a higher score means more anomalous; a sample is flagged when `score >= threshold`;
labels and masks are binary (anything > 0 counts as anomalous). Ties are handled as scikit-learn does:
one ROC/PR point per distinct score value.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from oddeye.core.errors import InputError

ArrayLike = np.ndarray | Sequence[float]


class MetricInputError(InputError, ValueError):
    """Bad input to a metric (shape mismatch, NaN, a label set with one class); names the argument."""


# ---------------------------------------------------------------------------------------------- helpers

def _binary(x: ArrayLike, name: str) -> np.ndarray:
    """Flatten labels/masks to a 1-D bool array; anything > 0 is positive."""
    a = np.asarray(x)
    if a.dtype == bool:
        return a.ravel()
    if not (np.issubdtype(a.dtype, np.number)):
        raise MetricInputError(f"{name} must be numeric or bool, got dtype {a.dtype}")
    return a.ravel() > 0


def _scores(x: ArrayLike, name: str) -> np.ndarray:
    """Flatten scores to a 1-D float array; NaN is an error naming `name`."""
    a = np.asarray(x)
    if not np.issubdtype(a.dtype, np.number) and a.dtype != bool:
        raise MetricInputError(f"{name} must be numeric, got dtype {a.dtype}")
    a = a.ravel()
    if a.dtype.kind == "f":
        if np.isnan(a).any():
            raise MetricInputError(f"{name} contains NaN", "check the model output; NaN scores cannot be ranked")
    else:
        a = a.astype(np.float64)
    return a


def _pair(labels: ArrayLike, scores: ArrayLike, lname: str = "labels", sname: str = "scores",
          need_both: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Validated (bool labels, float scores) of equal length; both classes required when `need_both`."""
    y, s = _binary(labels, lname), _scores(scores, sname)
    if y.shape != s.shape:
        raise MetricInputError(f"{lname} and {sname} differ in length: {y.size} vs {s.size}")
    if y.size == 0:
        raise MetricInputError(f"{lname} is empty", "pass at least one normal and one anomalous sample")
    if need_both:
        n_pos = int(y.sum())
        if n_pos == 0 or n_pos == y.size:
            cls = "anomalous" if n_pos else "normal"
            raise MetricInputError(f"{lname} holds only one class (all {cls}, n={y.size})",
                                   "the metric needs both normal and anomalous samples")
    return y, s


def _clf_curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative (false positives, true positives, thresholds) at each distinct score, high to low."""
    order = np.argsort(s, kind="stable")[::-1]
    s_sorted = s[order]
    y_sorted = y[order]
    last = np.flatnonzero(np.diff(s_sorted))
    idx = np.r_[last, y_sorted.size - 1]
    tps = np.cumsum(y_sorted, dtype=np.int64)[idx]
    fps = idx + 1 - tps
    return fps, tps, s_sorted[idx]


def _stack_pairs(masks: Sequence[ArrayLike] | np.ndarray, maps: Sequence[ArrayLike] | np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate lists (or stacks) of masks and maps of matching shapes into flat arrays."""
    if isinstance(masks, np.ndarray) and isinstance(maps, np.ndarray):
        if masks.shape != maps.shape:
            raise MetricInputError(f"masks and maps differ in shape: {masks.shape} vs {maps.shape}")
        return _binary(masks, "masks"), _scores(maps, "maps")
    if len(masks) != len(maps):
        raise MetricInputError(f"masks and maps differ in count: {len(masks)} vs {len(maps)}")
    ys, ss = [], []
    for i, (m, a) in enumerate(zip(masks, maps)):
        m, a = np.asarray(m), np.asarray(a)
        if m.shape != a.shape:
            raise MetricInputError(f"masks[{i}] and maps[{i}] differ in shape: {m.shape} vs {a.shape}",
                                   "resize the anomaly map to the mask's size first")
        ys.append(_binary(m, f"masks[{i}]"))
        ss.append(_scores(a, f"maps[{i}]"))
    if not ys:
        raise MetricInputError("masks is empty", "pass at least one mask and map")
    return np.concatenate(ys), np.concatenate(ss)


def _trapz(y: np.ndarray, x: np.ndarray) -> float:
    """Trapezoidal integral of y over x (numpy-version independent)."""
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) * 0.5))


# ---------------------------------------------------------------------------------------------- image level

def roc_curve(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve as (fpr, tpr, thresholds), starting at (0, 0) with threshold +inf, like sklearn."""
    y, s = _pair(labels, scores)
    fps, tps, thr = _clf_curve(y, s)
    fpr = np.r_[0.0, fps / fps[-1]]
    tpr = np.r_[0.0, tps / tps[-1]]
    return fpr, tpr, np.r_[np.inf, thr]


def auroc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve (trapezoidal over distinct thresholds; ties count one half)."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return _trapz(tpr, fpr)


def _precision_recall(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and thresholds at each distinct score, high to low threshold."""
    y, s = _pair(labels, scores)
    fps, tps, thr = _clf_curve(y, s)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return precision, recall, thr


def average_precision(labels: ArrayLike, scores: ArrayLike) -> float:
    """Average precision, sum of (R_n - R_{n-1}) * P_n over distinct thresholds (sklearn's definition)."""
    precision, recall, _ = _precision_recall(labels, scores)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def f1_max(labels: ArrayLike, scores: ArrayLike) -> tuple[float, float]:
    """Best F1 over all thresholds and that threshold (flag `score >= threshold`)."""
    precision, recall, thr = _precision_recall(labels, scores)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    i = int(np.argmax(f1))
    return float(f1[i]), float(thr[i])


def threshold_at_fpr(normal_scores: ArrayLike, fpr: float) -> float:
    """Lowest threshold t such that at most `fpr` of the normal scores satisfy `score >= t`."""
    s = _scores(normal_scores, "normal_scores")
    if s.size == 0:
        raise MetricInputError("normal_scores is empty", "pass the scores of some normal samples")
    if not (0.0 <= fpr <= 1.0):
        raise MetricInputError(f"fpr must be in [0, 1], got {fpr}")
    s = np.sort(s)[::-1]
    k = int(np.floor(fpr * s.size + 1e-9))  # false positives allowed
    if k >= s.size:
        return float(s[-1])
    # every score strictly above s[k] may be flagged; ties with s[k] may not
    return float(np.nextafter(s[k], np.inf))


def minmax_normalize(x: ArrayLike) -> np.ndarray:
    """(x - min) / (max - min) as float64; a constant input gives zeros."""
    a = np.asarray(x, dtype=np.float64)
    if a.size == 0:
        return a.copy()
    lo, hi = float(np.min(a)), float(np.max(a))
    if hi - lo <= 0 or not np.isfinite(hi - lo):
        return np.zeros_like(a)
    return (a - lo) / (hi - lo)


# ---------------------------------------------------------------------------------------------- pixels / points

def pixel_auroc(masks: Sequence[ArrayLike] | np.ndarray, maps: Sequence[ArrayLike] | np.ndarray) -> float:
    """AUROC over all pixels (or points) of all samples; masks/maps are lists of equal-shaped pairs or stacks."""
    y, s = _stack_pairs(masks, maps)
    return auroc(y, s)


# ---------------------------------------------------------------------------------------------- video

def frame_auroc(labels_per_video: Sequence[ArrayLike], scores_per_video: Sequence[ArrayLike],
                normalize: bool = True) -> dict[str, float]:
    """Frame-level AUROC: micro (all test frames concatenated) and macro (mean over videos with both classes).

    With `normalize`, each video's scores are min-max normalised first, as the video-anomaly field does.
    """
    if len(labels_per_video) != len(scores_per_video):
        raise MetricInputError(f"labels_per_video and scores_per_video differ in count: "
                               f"{len(labels_per_video)} vs {len(scores_per_video)}")
    if len(labels_per_video) == 0:
        raise MetricInputError("labels_per_video is empty", "pass one label array per test video")
    ys, ss, per_video = [], [], []
    for i, (lab, sc) in enumerate(zip(labels_per_video, scores_per_video)):
        y, s = _pair(lab, sc, f"labels_per_video[{i}]", f"scores_per_video[{i}]", need_both=False)
        if normalize:
            s = minmax_normalize(s)
        ys.append(y)
        ss.append(s)
        if 0 < y.sum() < y.size:
            per_video.append(auroc(y, s))
    y_all, s_all = np.concatenate(ys), np.concatenate(ss)
    micro = auroc(_pair(y_all, s_all, "labels_per_video", "scores_per_video")[0], s_all)
    macro = float(np.mean(per_video)) if per_video else float("nan")
    return {"frame_auroc_micro": micro, "frame_auroc_macro": macro}


# ---------------------------------------------------------------------------------------------- change / boxes

def change_f1_iou(pred_mask: ArrayLike, gt_mask: ArrayLike) -> tuple[float, float]:
    """Pixel F1 and IoU of a binary change mask against the ground truth; both empty counts as (1, 1)."""
    p, g = np.asarray(pred_mask), np.asarray(gt_mask)
    if p.shape != g.shape:
        raise MetricInputError(f"pred_mask and gt_mask differ in shape: {p.shape} vs {g.shape}")
    p, g = _binary(p, "pred_mask"), _binary(g, "gt_mask")
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
