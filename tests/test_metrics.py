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
