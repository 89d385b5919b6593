"""Shared pieces of the metrics: input checks, cumulative curves, trapezoids."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from oddeye.core.errors import InputError

ArrayLike = np.ndarray | Sequence[float]


class MetricInputError(InputError, ValueError):
    """Bad input to a metric (shape mismatch, NaN, a label set with one class); names the argument."""


def as_binary(x: ArrayLike, name: str) -> np.ndarray:
    """Flatten labels/masks to a 1-D bool array; anything > 0 is positive."""
    a = np.asarray(x)
    if a.dtype == bool:
        return a.ravel()
    if not (np.issubdtype(a.dtype, np.number)):
        raise MetricInputError(f"{name} must be numeric or bool, got dtype {a.dtype}")
    return a.ravel() > 0


def as_scores(x: ArrayLike, name: str) -> np.ndarray:
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


def check_pair(labels: ArrayLike, scores: ArrayLike, lname: str = "labels", sname: str = "scores",
          need_both: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Validated (bool labels, float scores) of equal length; both classes required when `need_both`."""
    y, s = as_binary(labels, lname), as_scores(scores, sname)
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


def cumulative_at_thresholds(s: np.ndarray, *weights: np.ndarray) -> tuple[np.ndarray, ...]:
    """Sort scores high to low; return (distinct thresholds, count of scores >= each, cumsum of each weight)."""
    order = np.argsort(s, kind="stable")[::-1]
    s_sorted = s[order]
    idx = np.r_[np.flatnonzero(np.diff(s_sorted)), s_sorted.size - 1]
    return (s_sorted[idx], idx + 1, *(np.cumsum(w[order])[idx] for w in weights))


def clf_curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative (false positives, true positives, thresholds) at each distinct score, high to low."""
    thr, n_ge, tps = cumulative_at_thresholds(s, y.astype(np.int64))
    return n_ge - tps, tps, thr


def per_sample(masks: Sequence[ArrayLike] | np.ndarray, maps: Sequence[ArrayLike] | np.ndarray
                ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Validated per-sample (bool mask, float map) pairs of equal shape; a stack (N, H, W) is split on axis 0."""
    if isinstance(masks, np.ndarray) and masks.ndim < 3:
        raise MetricInputError(f"masks must be a list of masks or a stack (N, H, W), got one array {masks.shape}",
                               "wrap a single mask in a list: [mask]")
    if len(masks) != len(maps):
        raise MetricInputError(f"masks and maps differ in count: {len(masks)} vs {len(maps)}")
    if len(masks) == 0:
        raise MetricInputError("masks is empty", "pass at least one mask and map")
    out = []
    for i, (m, a) in enumerate(zip(masks, maps)):
        m, a = np.asarray(m), np.asarray(a)
        if m.shape != a.shape:
            raise MetricInputError(f"masks[{i}] and maps[{i}] differ in shape: {m.shape} vs {a.shape}",
                                   "resize the anomaly map to the mask's size first")
        out.append((as_binary(m, f"masks[{i}]").reshape(m.shape), as_scores(a, f"maps[{i}]").reshape(a.shape)))
    return out


def stack_pairs(masks: Sequence[ArrayLike] | np.ndarray, maps: Sequence[ArrayLike] | np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate lists (or stacks) of masks and maps of matching shapes into flat arrays."""
    if isinstance(masks, np.ndarray) and isinstance(maps, np.ndarray):  # stacks or flat point arrays
        if masks.shape != maps.shape:
            raise MetricInputError(f"masks and maps differ in shape: {masks.shape} vs {maps.shape}")
        return as_binary(masks, "masks"), as_scores(maps, "maps")
    pairs = per_sample(masks, maps)
    return np.concatenate([m.ravel() for m, _ in pairs]), np.concatenate([a.ravel() for _, a in pairs])


def trapz(y: np.ndarray, x: np.ndarray) -> float:
    """Trapezoidal integral of y over x (numpy-version independent)."""
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) * 0.5))
