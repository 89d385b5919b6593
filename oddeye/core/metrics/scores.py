"""Image-level (and any per-sample) metrics: ROC, AUROC, AP, F1-max, thresholds, normalisation."""

from __future__ import annotations

import numpy as np

from oddeye.core.metrics._base import ArrayLike, MetricInputError, as_scores, check_pair, clf_curve


def roc_curve(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve as (fpr, tpr, thresholds), starting at (0, 0) with threshold +inf, like sklearn."""
    y, s = check_pair(labels, scores)
    fps, tps, thr = clf_curve(y, s)
    fpr = np.r_[0.0, fps / fps[-1]]
    tpr = np.r_[0.0, tps / tps[-1]]
    return fpr, tpr, np.r_[np.inf, thr]


def auroc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve = P(anomalous > normal) + P(tie) / 2 (equal to sklearn's trapezoidal AUC)."""
    y, s = check_pair(labels, scores)
    pos, neg = s[y], s[~y]
    small, big = (pos, neg) if pos.size <= neg.size else (neg, pos)
    small = np.sort(small)
    left = np.searchsorted(small, big, side="left")
    right = np.searchsorted(small, big, side="right")
    ties = int(np.sum(right - left))
    if pos.size <= neg.size:  # count positives above each negative
        wins = int(np.sum(small.size - right, dtype=np.int64))
    else:  # count negatives below each positive
        wins = int(np.sum(left, dtype=np.int64))
    return (wins + 0.5 * ties) / (pos.size * neg.size)


def _precision_recall(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and thresholds at each distinct score, high to low threshold."""
    y, s = check_pair(labels, scores)
    fps, tps, thr = clf_curve(y, s)
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
    s = as_scores(normal_scores, "normal_scores")
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
