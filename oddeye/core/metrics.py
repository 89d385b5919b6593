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


def _cumulative_at_thresholds(s: np.ndarray, *weights: np.ndarray) -> tuple[np.ndarray, ...]:
    """Sort scores high to low; return (distinct thresholds, count of scores >= each, cumsum of each weight)."""
    order = np.argsort(s, kind="stable")[::-1]
    s_sorted = s[order]
    idx = np.r_[np.flatnonzero(np.diff(s_sorted)), s_sorted.size - 1]
    return (s_sorted[idx], idx + 1, *(np.cumsum(w[order])[idx] for w in weights))


def _clf_curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative (false positives, true positives, thresholds) at each distinct score, high to low."""
    thr, n_ge, tps = _cumulative_at_thresholds(s, y.astype(np.int64))
    return n_ge - tps, tps, thr


def _per_sample(masks: Sequence[ArrayLike] | np.ndarray, maps: Sequence[ArrayLike] | np.ndarray
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
        out.append((_binary(m, f"masks[{i}]").reshape(m.shape), _scores(a, f"maps[{i}]").reshape(a.shape)))
    return out


def _stack_pairs(masks: Sequence[ArrayLike] | np.ndarray, maps: Sequence[ArrayLike] | np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate lists (or stacks) of masks and maps of matching shapes into flat arrays."""
    if isinstance(masks, np.ndarray) and isinstance(maps, np.ndarray):  # stacks or flat point arrays
        if masks.shape != maps.shape:
            raise MetricInputError(f"masks and maps differ in shape: {masks.shape} vs {maps.shape}")
        return _binary(masks, "masks"), _scores(maps, "maps")
    pairs = _per_sample(masks, maps)
    return np.concatenate([m.ravel() for m, _ in pairs]), np.concatenate([a.ravel() for _, a in pairs])


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
    """Area under the ROC curve = P(anomalous > normal) + P(tie) / 2 (equal to sklearn's trapezoidal AUC)."""
    y, s = _pair(labels, scores)
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
    return _trapz(ys, xs)


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
    for m, a in _per_sample(masks, maps):
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
    pairs = _per_sample(masks, maps)
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
