"""Metrics against scikit-learn where it has them, against hand-worked cases where it has not."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from oddeye.core import metrics as M
from oddeye.core.errors import InputError


def _random_case(seed: int, n: int = 500, levels: int | None = 20) -> tuple[np.ndarray, np.ndarray]:
    """Labels with both classes and scores with many ties (rounded to `levels` values)."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < rng.uniform(0.1, 0.6)
    y[0], y[1] = True, False
    s = rng.normal(size=n) + y * rng.uniform(0, 2)
    if levels:
        s = np.round(s * levels / 8) / (levels / 8)
    return y.astype(int), s


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("levels", [None, 20, 3])
def test_auroc_ap_match_sklearn(seed: int, levels: int | None) -> None:
    y, s = _random_case(seed, levels=levels)
    assert M.auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert M.average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_f1_max_matches_sklearn_pr_curve(seed: int) -> None:
    y, s = _random_case(seed, levels=20)
    p, r, t = precision_recall_curve(y, s)
    f1 = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-300), 0)[:-1]
    f, thr = M.f1_max(y, s)
    assert f == pytest.approx(f1.max(), abs=1e-12)
    pred = s >= thr
    tp = np.sum(pred & (y == 1))
    assert 2 * tp / (pred.sum() + y.sum()) == pytest.approx(f, abs=1e-12)


def test_hand_worked_auroc_ap_f1() -> None:
    y = [0, 0, 1, 1]
    s = [0.1, 0.4, 0.35, 0.8]
    assert M.auroc(y, s) == pytest.approx(0.75)
    # thresholds 0.8 (P=1, R=.5), 0.4 (P=.5), 0.35 (P=2/3, R=1): AP = .5*1 + .5*2/3
    assert M.average_precision(y, s) == pytest.approx(0.5 + 1 / 3)
    f, thr = M.f1_max(y, s)
    assert f == pytest.approx(0.8) and thr == pytest.approx(0.35)
    assert M.auroc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    assert M.auroc([1, 0, 1], [3, 2, 1]) == pytest.approx(0.5)
    assert M.auroc(np.array([False, True]), np.array([True, False])) == 0.0


def test_roc_curve_starts_at_origin_and_ends_at_one() -> None:
    fpr, tpr, thr = M.roc_curve([0, 1, 1, 0], [1, 2, 2, 3])
    assert (fpr[0], tpr[0], thr[0]) == (0.0, 0.0, np.inf)
    assert fpr[-1] == 1.0 and tpr[-1] == 1.0
    assert len(thr) == 4  # inf + three distinct scores


@pytest.mark.parametrize("fn", [M.auroc, M.average_precision, M.f1_max])
def test_single_class_is_a_clear_value_error(fn) -> None:
    with pytest.raises(ValueError, match="labels holds only one class"):
        fn([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(InputError, match="labels"):
        fn([1, 1], [0.1, 0.2])


def test_bad_inputs_name_the_argument() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        M.auroc([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="scores contains NaN"):
        M.auroc([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match="labels is empty"):
        M.auroc([], [])
    with pytest.raises(ValueError, match="masks\\[1\\] and maps\\[1\\] differ in shape"):
        M.pixel_auroc([np.zeros((2, 2)), np.zeros((3, 3))], [np.zeros((2, 2)), np.zeros((3, 2))])
    with pytest.raises(ValueError, match="fpr must be in"):
        M.threshold_at_fpr([1, 2, 3], 1.5)
    with pytest.raises(ValueError, match="normal_scores is empty"):
        M.threshold_at_fpr([], 0.1)
    with pytest.raises(ValueError, match="gt_boxes must have shape"):
        M.box_recall(np.zeros((2, 3)), np.zeros((1, 4)))
    with pytest.raises(ValueError, match="pred_mask and gt_mask differ"):
        M.change_f1_iou(np.zeros((2, 2)), np.zeros((2, 3)))


def test_pixel_auroc_lists_of_varying_sizes_stacks_and_points() -> None:
    rng = np.random.default_rng(0)
    masks = [rng.random((5, 7)) > 0.7, rng.random((9, 4)) > 0.7]
    maps = [m + rng.normal(size=m.shape) for m in masks]
    ref = roc_auc_score(np.concatenate([m.ravel() for m in masks]), np.concatenate([a.ravel() for a in maps]))
    assert M.pixel_auroc(masks, maps) == pytest.approx(ref)
    stack_m, stack_a = rng.random((3, 6, 6)) > 0.5, rng.random((3, 6, 6))
    assert M.pixel_auroc(stack_m, stack_a) == pytest.approx(roc_auc_score(stack_m.ravel(), stack_a.ravel()))
    pts_l, pts_s = np.array([0, 0, 1, 1, 0]), np.array([0.1, 0.2, 0.9, 0.8, 0.3])
    assert M.pixel_auroc([pts_l], [pts_s]) == 1.0
    assert M.pixel_auroc(pts_l, pts_s) == 1.0  # flat per-point arrays
    # masks stored as 0/255 images count as binary
    assert M.pixel_auroc([np.array([[0, 255]], np.uint8)], [np.array([[0.2, 0.7]])]) == 1.0


def test_minmax_normalize() -> None:
    np.testing.assert_allclose(M.minmax_normalize([2, 4, 3]), [0, 1, 0.5])
    np.testing.assert_array_equal(M.minmax_normalize([5, 5, 5]), [0, 0, 0])
    assert M.minmax_normalize(np.array([])).size == 0


def test_frame_auroc_micro_macro_and_normalisation() -> None:
    # video A scores live around 10, video B around 0: unnormalised micro mixes the scales
    la, sa = np.array([0, 0, 1, 1]), np.array([10.0, 10.1, 10.2, 10.3])
    lb, sb = np.array([0, 1, 1, 0]), np.array([0.0, 0.3, 0.2, 0.1])
    out = M.frame_auroc([la, lb], [sa, sb], normalize=True)
    assert out["frame_auroc_macro"] == pytest.approx(1.0)
    norm = np.concatenate([M.minmax_normalize(sa), M.minmax_normalize(sb)])
    assert out["frame_auroc_micro"] == pytest.approx(roc_auc_score(np.r_[la, lb], norm))
    raw = M.frame_auroc([la, lb], [sa, sb], normalize=False)
    assert raw["frame_auroc_micro"] == pytest.approx(roc_auc_score(np.r_[la, lb], np.r_[sa, sb]))
    assert raw["frame_auroc_micro"] < out["frame_auroc_micro"]
    # a video with one class is skipped by macro but counts in micro
    out2 = M.frame_auroc([la, np.zeros(3)], [sa, np.array([1.0, 2.0, 3.0])])
    assert out2["frame_auroc_macro"] == pytest.approx(1.0)
    assert set(out2) == {"frame_auroc_micro", "frame_auroc_macro"}
    with pytest.raises(ValueError, match="labels_per_video holds only one class"):
        M.frame_auroc([np.zeros(3)], [np.ones(3)])
    with pytest.raises(ValueError, match="differ in count"):
        M.frame_auroc([la], [sa, sb])


def test_threshold_at_fpr() -> None:
    normal = np.arange(100, dtype=float)
    t = M.threshold_at_fpr(normal, 0.05)
    assert np.mean(normal >= t) == pytest.approx(0.05)
    assert np.mean(normal >= np.nextafter(t, -np.inf)) > 0.05
    assert np.mean(normal >= M.threshold_at_fpr(normal, 0.0)) == 0.0
    assert M.threshold_at_fpr(normal, 1.0) == 0.0
    ties = np.array([1.0, 1.0, 1.0, 0.0])
    assert np.mean(ties >= M.threshold_at_fpr(ties, 0.5)) <= 0.5


def test_change_f1_iou() -> None:
    gt = np.zeros((4, 4), bool)
    gt[:2, :2] = True  # 4 px
    pred = np.zeros((4, 4), bool)
    pred[:2, :3] = True  # 6 px, 4 overlap
    f1, iou = M.change_f1_iou(pred, gt)
    assert f1 == pytest.approx(2 * 4 / (6 + 4)) and iou == pytest.approx(4 / 6)
    assert M.change_f1_iou(gt, gt) == (1.0, 1.0)
    assert M.change_f1_iou(np.zeros((3, 3)), np.zeros((3, 3))) == (1.0, 1.0)
    assert M.change_f1_iou(~gt, gt) == (0.0, 0.0)


def test_boxes_to_mask_box_iou_box_recall() -> None:
    m = M.boxes_to_mask([[1, 2, 4, 3], [-5, -5, 1, 1]], (5, 6))
    assert m.dtype == bool and m.shape == (5, 6)
    assert m.sum() == 3 + 1 and m[2, 1:4].all() and m[0, 0]
    assert not M.boxes_to_mask(np.zeros((0, 4)), (3, 3)).any()
    a = np.array([[0, 0, 2, 2], [10, 10, 12, 12]])
    b = np.array([[1, 0, 3, 2], [0, 0, 2, 2], [20, 20, 21, 21]])
    iou = M.box_iou(a, b)
    assert iou.shape == (2, 3)
    np.testing.assert_allclose(iou[0], [2 / 6, 1.0, 0.0])
    np.testing.assert_allclose(iou[1], 0.0)
    assert M.box_recall(a, b) == 0.5
    assert M.box_recall(a, b[:1], iou_thr=0.3) == 0.5
    assert M.box_recall(a, b[:1], iou_thr=0.5) == 0.0
    assert M.box_recall(a, [[9, 9, 11.5, 11.5]], iou_thr=0.9, centre_hit=True) == 0.5
    assert M.box_recall(a, np.zeros((0, 4))) == 0.0
    assert np.isnan(M.box_recall(np.zeros((0, 4)), b))


# ---------------------------------------------------------------------------------------------- AUPRO / AUPIMO

def _segment_area(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    """Brute force: integrate the polyline through (x, y) over [lo, hi], clipping each segment."""
    area = 0.0
    for k in range(1, len(x)):
        xa, xb, ya, yb = x[k - 1], x[k], y[k - 1], y[k]
        a, b = max(xa, lo), min(xb, hi)
        if b <= a or xb <= xa:
            continue
        fa = ya + (yb - ya) * (a - xa) / (xb - xa)
        fb = ya + (yb - ya) * (b - xa) / (xb - xa)
        area += (b - a) * (fa + fb) / 2
    return area


def _aupro_brute(masks: list[np.ndarray], maps: list[np.ndarray], limit: float) -> float:
    """Threshold loop over every distinct score: FPR on normal pixels, mean overlap per 8-connected region."""
    from scipy import ndimage

    regions = []
    for i, m in enumerate(masks):
        lab, n = ndimage.label(m, structure=np.ones((3, 3)))
        regions += [(i, lab == k) for k in range(1, n + 1)]
    ok = np.concatenate([~m.ravel() for m in masks])
    allsc = np.concatenate([a.ravel() for a in maps])
    fprs, pros = [0.0], [0.0]
    for t in np.unique(allsc)[::-1]:
        fprs.append(np.sum((allsc >= t) & ok) / ok.sum())
        pros.append(np.mean([np.mean(maps[i][r] >= t) for i, r in regions]))
    return _segment_area(np.array(fprs), np.array(pros), 0.0, limit) / limit


def _aupimo_brute(masks: list[np.ndarray], maps: list[np.ndarray], lo: float, hi: float) -> np.ndarray:
    """Threshold loop: shared FPR = mean per-image FPR of normal images; TPR per anomalous image; log x."""
    normal = [a for m, a in zip(masks, maps) if not m.any()]
    out = np.full(len(masks), np.nan)
    thr = np.unique(np.concatenate([a.ravel() for a in maps]))[::-1]
    fpr = np.array([np.mean([np.mean(a >= t) for a in normal]) for t in thr])
    for i, (m, a) in enumerate(zip(masks, maps)):
        if m.any():
            tpr = np.array([np.mean(a[m] >= t) for t in thr])
            keep = fpr > 0
            out[i] = _segment_area(np.log(fpr[keep]), tpr[keep], np.log(lo), np.log(hi)) / np.log(hi / lo)
    return out


def _region_case(seed: int, n: int = 6, shape: tuple[int, int] = (20, 24), levels: int = 0):
    """Small masks with a few rectangles (some images normal) and noisy maps, optionally quantised (ties)."""
    rng = np.random.default_rng(seed)
    masks, maps = [], []
    for i in range(n):
        m = np.zeros(shape, bool)
        if i % 3 != 0:
            for _ in range(rng.integers(1, 3)):
                y, x = rng.integers(0, shape[0] - 4), rng.integers(0, shape[1] - 4)
                m[y:y + rng.integers(2, 6), x:x + rng.integers(2, 7)] = True
        a = rng.normal(size=shape) + m * rng.uniform(0.5, 2.5)
        masks.append(m)
        maps.append(np.round(a * levels) / levels if levels else a)
    return masks, maps


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("levels", [0, 3])
@pytest.mark.parametrize("limit", [0.3, 0.05, 1.0])
def test_aupro_matches_brute_force(seed: int, levels: int, limit: float) -> None:
    masks, maps = _region_case(seed, levels=levels)
    assert M.aupro(masks, maps, fpr_limit=limit) == pytest.approx(_aupro_brute(masks, maps, limit), abs=1e-9)
    assert M.aupro(np.stack(masks), np.stack(maps), fpr_limit=limit) == pytest.approx(
        M.aupro(masks, maps, fpr_limit=limit), abs=1e-12)


def test_aupro_hand_worked() -> None:
    masks, maps = _region_case(0)
    m = np.stack(masks)
    assert M.aupro(m, m.astype(float)) == pytest.approx(1.0)  # perfect map
    assert M.aupro(m, -m.astype(float)) == pytest.approx(0.0)  # inverted map
    # constant map: one threshold, the curve goes straight from (0, 0) to (1, 1): area .3^2/2 / .3
    assert M.aupro(m, np.ones(m.shape)) == pytest.approx(0.15)
    # two regions, one found perfectly, one never (scored lowest): PRO is 0.5 until FPR reaches 1
    mk = np.zeros((1, 10, 10), bool)
    mk[0, 0:2, 0:2] = True
    mk[0, 7:9, 7:9] = True
    amap = np.full((1, 10, 10), 0.5)
    amap[0, 0:2, 0:2] = 1.0
    amap[0, 7:9, 7:9] = 0.0
    assert M.aupro(mk, amap) == pytest.approx(0.5)
    # 8-connectivity: diagonal pixels form ONE region, so finding one of them gives PRO 0.5, not 1
    d = np.zeros((1, 6, 6), bool)
    d[0, 1, 1] = d[0, 2, 2] = True
    dm = np.full((1, 6, 6), 0.5)
    dm[0, 1, 1], dm[0, 2, 2] = 1.0, 0.0
    assert M.aupro(d, dm) == pytest.approx(0.5)


def test_aupro_bad_input() -> None:
    with pytest.raises(ValueError, match="no anomalous pixel"):
        M.aupro(np.zeros((2, 4, 4), bool), np.ones((2, 4, 4)))
    with pytest.raises(ValueError, match="no normal pixel"):
        M.aupro(np.ones((1, 4, 4), bool), np.ones((1, 4, 4)))
    with pytest.raises(ValueError, match="fpr_limit"):
        M.aupro(np.ones((1, 4, 4), bool), np.ones((1, 4, 4)), fpr_limit=0)
    with pytest.raises(ValueError, match="masks\\[0\\] and maps\\[0\\] differ in shape"):
        M.aupro([np.ones((4, 4))], [np.ones((4, 5))])
    with pytest.raises(ValueError, match="wrap a single mask in a list"):
        M.aupro(np.ones((4, 4), bool), np.ones((4, 4)))
    one = np.zeros((6, 6), bool)
    one[1:3, 1:3] = True
    assert M.aupro([one], [one.astype(float)]) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("levels", [0, 2])
def test_aupimo_matches_brute_force(seed: int, levels: int) -> None:
    masks, maps = _region_case(seed, n=9, levels=levels)
    lo, hi = 0.01, 0.2
    mean, per = M.aupimo(masks, maps, fpr_range=(lo, hi))
    ref = _aupimo_brute(masks, maps, lo, hi)
    np.testing.assert_allclose(per, ref, atol=1e-9)
    assert np.isnan(per[::3]).all() and mean == pytest.approx(np.nanmean(ref))


def test_aupimo_varying_sizes_use_mean_per_image_fpr() -> None:
    rng = np.random.default_rng(7)
    shapes = [(10, 10), (30, 20), (16, 16), (12, 18)]
    masks = [np.zeros(s, bool) for s in shapes]
    masks[2][4:9, 4:9] = True
    masks[3][2:6, 3:12] = True
    maps = [rng.normal(size=s) + m for s, m in zip(shapes, masks)]
    _, per = M.aupimo(masks, maps, fpr_range=(0.02, 0.3))
    np.testing.assert_allclose(per, _aupimo_brute(masks, maps, 0.02, 0.3), atol=1e-9)


def test_aupimo_hand_worked() -> None:
    rng = np.random.default_rng(1)
    normal = rng.random((400, 400))
    good = np.zeros((400, 400), bool)
    # perfect and inverted maps
    m = np.zeros((400, 400), bool)
    m[100:150, 100:150] = True
    assert M.aupimo([good, m], [normal, m + normal])[0] == pytest.approx(1.0)
    assert M.aupimo([good, m], [normal, -1.0 - m])[0] == pytest.approx(0.0)
    # anomalous pixels scored exactly like the normal image: TPR == FPR, so the area is
    # integral of e^x over [ln lo, ln hi] / ln(hi / lo) = (hi - lo) / ln(hi / lo)
    lo, hi = 1e-3, 1e-1
    mean, per = M.aupimo([good, np.ones_like(good)], [normal, normal.copy()], fpr_range=(lo, hi))
    assert mean == pytest.approx((hi - lo) / np.log(hi / lo), rel=1e-3)
    assert np.isnan(per[0]) and per[1] == mean


def test_aupimo_bad_input() -> None:
    m = np.zeros((2, 8, 8), bool)
    m[1, 2:4, 2:4] = True
    a = np.random.default_rng(0).random((2, 8, 8))
    with pytest.raises(ValueError, match="cannot resolve FPR"):
        M.aupimo(m, a)  # 64 normal pixels cannot reach FPR 1e-5
    with pytest.raises(ValueError, match="no normal image"):
        M.aupimo(m[1:], a[1:], fpr_range=(0.1, 0.5))
    with pytest.raises(ValueError, match="no anomalous image"):
        M.aupimo(m[:1], a[:1], fpr_range=(0.1, 0.5))
    with pytest.raises(ValueError, match="fpr_range"):
        M.aupimo(m, a, fpr_range=(0.5, 0.1))


def test_region_metrics_fast_enough() -> None:
    import time

    rng = np.random.default_rng(0)
    masks = np.zeros((40, 128, 128), bool)
    for i in range(20):
        y, x = rng.integers(0, 100, 2)
        masks[i, y:y + 20, x:x + 15] = True
    maps = (rng.random(masks.shape) + masks).astype(np.float32)
    t = time.perf_counter()
    M.aupro(masks, maps)
    M.aupimo(masks, maps)
    assert time.perf_counter() - t < 10.0  # generous (shared machine); the benchmark records the real figure
