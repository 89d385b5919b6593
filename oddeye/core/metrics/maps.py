"""Pixel / point metrics: pixel AUROC, AUPRO (MVTec AD), AUPIMO (anomalib)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from oddeye.core.metrics._base import ArrayLike, MetricInputError, per_sample, stack_pairs, trapz
from oddeye.core.metrics.scores import auroc


def pixel_auroc(masks: Sequence[ArrayLike] | np.ndarray, maps: Sequence[ArrayLike] | np.ndarray) -> float:
    """AUROC over all pixels (or points) of all samples; masks/maps are lists of equal-shaped pairs or stacks."""
    y, s = stack_pairs(masks, maps)
    return auroc(y, s)


def _trapz_between(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    """Integral of the piecewise-linear curve (x non-decreasing) over [lo, hi], interpolating at the bounds."""
    i = int(np.searchsorted(x, lo, side="right"))  # x[i-1] <= lo < x[i]
    j = int(np.searchsorted(x, hi, side="left"))  # x[j-1] < hi <= x[j]
    if i == 0 or j >= x.size:
        raise MetricInputError(f"the curve does not cover [{lo}, {hi}] (it spans [{x[0]}, {x[-1]}])")

    def at(k: int, v: float) -> float:
        """y on the segment (k-1, k) at x = v."""
        dx = x[k] - x[k - 1]
        return float(y[k - 1] + (y[k] - y[k - 1]) * (v - x[k - 1]) / dx) if dx > 0 else float(y[k])

    xs = np.r_[lo, x[i:j], hi]
    ys = np.r_[at(i, lo), y[i:j], at(j, hi)]
    return trapz(ys, xs)


def aupro(masks: Sequence[ArrayLike] | np.ndarray, maps: Sequence[ArrayLike] | np.ndarray,
          fpr_limit: float = 0.3) -> float:
    """Area under the per-region-overlap curve up to FPR `fpr_limit`, divided by it (MVTec AD's evaluation).

    Regions are the 8-connected components of every ground-truth mask; PRO at a threshold is the mean
    overlap over all regions, FPR is over all normal pixels; the curve is linear between distinct
    thresholds. Computed exactly without a threshold loop: each normal pixel in the top `fpr_limit`
    adds a strip of width 1/n_normal at the PRO of the anomalous pixels above it.
    """
    from scipy import ndimage

    if not (0 < fpr_limit <= 1):
        raise MetricInputError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    pos, pos_w, neg = [], [], []
    n_regions = 0
    for m, a in per_sample(masks, maps):
        lab, n = ndimage.label(m, structure=np.ones((3,) * m.ndim, dtype=bool))
        if n:
            sizes = np.bincount(lab.ravel(), minlength=n + 1)
            pos.append(a[m])
            pos_w.append(1.0 / sizes[lab[m]])
        neg.append(a[~m])
        n_regions += n
    neg_s = np.concatenate(neg)
    n_ok = neg_s.size
    if n_regions == 0:
        raise MetricInputError("masks hold no anomalous pixel", "AUPRO needs at least one defect region")
    if n_ok == 0:
        raise MetricInputError("masks hold no normal pixel", "AUPRO needs normal pixels to measure FPR")
    ps, pw = np.concatenate(pos), np.concatenate(pos_w) / n_regions
    order = np.argsort(ps)
    ps = ps[order]
    cum = np.r_[0.0, np.cumsum(pw[order])]  # cum[k] = PRO weight of the k lowest anomalous pixels
    total = cum[-1]

    def pro_gt_eq(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """PRO of anomalous pixels scoring > v, and of those tied with v."""
        lo, hi = np.searchsorted(ps, v, side="left"), np.searchsorted(ps, v, side="right")
        return total - cum[hi], cum[hi] - cum[lo]

    kk = min(max(int(np.ceil(fpr_limit * n_ok - 1e-9)), 1), n_ok)  # first count reaching the limit
    v_star = np.partition(neg_s, n_ok - kk)[n_ok - kk]
    above = neg_s[neg_s > v_star]
    gt, eq = pro_gt_eq(above)
    area = float(np.sum(gt) + 0.5 * np.sum(eq)) / n_ok
    # the segment at v_star crosses fpr_limit: integrate its linear part up to the limit
    f_prev = above.size / n_ok
    f_next = (above.size + int(np.count_nonzero(neg_s == v_star))) / n_ok
    gt_s, eq_s = pro_gt_eq(np.array([v_star]))
    p_prev, p_next = min(float(gt_s[0]), 1.0), min(float(gt_s[0] + eq_s[0]), 1.0)
    d = fpr_limit - f_prev
    y = p_prev + (p_next - p_prev) * d / (f_next - f_prev)
    area += d * (p_prev + y) / 2
    return float(np.clip(area / fpr_limit, 0.0, 1.0))


def aupimo(masks: Sequence[ArrayLike] | np.ndarray, maps: Sequence[ArrayLike] | np.ndarray,
           fpr_range: tuple[float, float] = (1e-5, 1e-4)) -> tuple[float, np.ndarray]:
    """AUPIMO (Bertoldi et al. 2024): per anomalous image, TPR vs log shared FPR integrated over fpr_range.

    The shared FPR at a threshold is the mean per-image FPR of the NORMAL images (all-zero masks);
    each anomalous image's area is divided by log(hi / lo), so it lies in [0, 1].
    Returns (mean over anomalous images, per-image array with NaN for normal images).
    """
    lo, hi = float(fpr_range[0]), float(fpr_range[1])
    if not (0 < lo < hi <= 1):
        raise MetricInputError(f"fpr_range must satisfy 0 < lo < hi <= 1, got {fpr_range}")
    pairs = per_sample(masks, maps)
    normal = [(m, a) for m, a in pairs if not m.any()]
    if not normal:
        raise MetricInputError("masks has no normal image (all-zero mask)",
                               "AUPIMO takes its FPR from normal images; include some")
    if len(normal) == len(pairs):
        raise MetricInputError("masks has no anomalous image", "AUPIMO is averaged over anomalous images")
    # shared FPR(t) = sum of weights of normal pixels with score >= t, weight 1 / (n_images * image size)
    ns = np.concatenate([a.ravel() for _, a in normal])
    if len({a.size for _, a in normal}) == 1:  # equal sizes: the mean per-image FPR is the pooled FPR
        asc = np.sort(ns)
        w_ge = (ns.size - np.arange(ns.size + 1)) / ns.size
    else:
        nw = np.concatenate([np.full(a.size, 1.0 / (len(normal) * a.size)) for _, a in normal])
        order = np.argsort(ns)
        asc = ns[order]
        w_ge = np.r_[np.cumsum(nw[order][::-1])[::-1], 0.0]  # w_ge[k] = FPR at threshold asc[k]

    def shared_fpr(t: np.ndarray) -> np.ndarray:
        """Shared FPR at thresholds t (flag score >= t)."""
        return w_ge[np.searchsorted(asc, t, side="left")]

    first = np.flatnonzero(np.r_[True, np.diff(asc) != 0])
    thr_n, f_n = asc[first][::-1], w_ge[first][::-1]  # distinct normal scores high to low, FPR rising
    k0 = int(np.searchsorted(f_n, lo, side="right")) - 1  # last normal threshold with FPR <= lo
    if k0 < 0:
        raise MetricInputError(f"the normal images' pixels cannot resolve FPR {lo:g} (smallest FPR {f_n[0]:.3g})",
                               "use more or larger normal images, or a larger fpr_range lower bound")
    k1 = min(int(np.searchsorted(f_n, hi, side="left")), thr_n.size - 1)
    t_top, t_bot = thr_n[k0], thr_n[k1]
    per_image = np.full(len(pairs), np.nan)
    for i, (m, a) in enumerate(pairs):
        if not m.any():
            continue
        pos = np.sort(a[m])
        inside = pos[(pos >= t_bot) & (pos <= t_top)]
        t = np.unique(np.r_[thr_n[k0:k1 + 1], inside])[::-1]
        fpr = shared_fpr(t)
        tpr = (pos.size - np.searchsorted(pos, t, side="left")) / pos.size
        per_image[i] = _trapz_between(np.log(fpr), tpr, np.log(lo), np.log(hi)) / np.log(hi / lo)
    return float(np.nanmean(per_image)), per_image
