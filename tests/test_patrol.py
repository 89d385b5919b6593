"""Patrol: alignment, change maps, pairing, bad input, save/load (synthetic data only, < 60 s)."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest

from oddeye.core import metrics as M
from oddeye.core import synth
from oddeye.core.errors import InputError
from oddeye.patrol.align import align, match_sizes
from oddeye.patrol.change import ChangeParams, change_map, local_min_absdiff, symmetric_min_diff
from oddeye.patrol.deeppcb import random_homography, read_boxes


def _corner_error(H_est: np.ndarray, H_true: np.ndarray, size: tuple[int, int]) -> float:
    h, w = size
    g = np.stack(np.meshgrid(np.linspace(0.15 * w, 0.85 * w, 5), np.linspace(0.15 * h, 0.85 * h, 5)), -1)
    g = g.reshape(-1, 1, 2).astype(np.float32)
    return float(np.abs(cv2.perspectiveTransform(g, H_est) - cv2.perspectiveTransform(g, H_true)).max())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_alignment_recovers_known_homography(seed: int) -> None:
    p = synth.make_pair(seed=seed, warp=True)
    al = align(p.reference, p.query)
    assert al.ok and al.method != "identity", al.message
    assert _corner_error(al.homography, p.homography, p.query.shape[:2]) < 3.0
    assert al.residual < al.residual_before


def test_already_aligned_pair_stays_put() -> None:
    p = synth.make_pair(seed=3, warp=False)
    al = align(p.reference, p.query)
    assert al.ok
    assert _corner_error(al.homography, np.eye(3), p.query.shape[:2]) < 1.5


def test_change_map_finds_inserted_objects() -> None:
    recalls = []
    for seed in range(4):
        p = synth.make_pair(seed=seed, warp=True, n_changes=3)
        al = align(p.reference, p.query)
        ch = change_map(p.query, al.warped, al.valid)
        recalls.append(M.box_recall(p.boxes, ch.boxes, centre_hit=True))
        assert M.pixel_auroc([p.mask], [ch.map]) > 0.9
    assert np.mean(recalls) >= 0.8


def test_soft_alignment_ignores_small_shifts() -> None:
    rng = np.random.default_rng(0)
    a = cv2.GaussianBlur(rng.random((64, 64)).astype(np.float32), (0, 0), 1.0)
    b = np.roll(a, 1, axis=1)
    assert local_min_absdiff(a, b, 3)[:, 2:-2].max() < 1e-6  # a one-pixel shift is inside the 3x3 window
    assert np.abs(a - b).max() > 0.01
    fa = __import__("torch").from_numpy(np.stack([a, a * 2]))
    fb = __import__("torch").from_numpy(np.stack([b, b * 2]))
    assert float(symmetric_min_diff(fa, fb, 3)[2:-2, 2:-2].max()) < 1e-5
    assert float(symmetric_min_diff(fa, fb, 1).max()) > 0.01


def test_different_sizes() -> None:
    p = synth.make_pair(seed=0)
    small = cv2.resize(p.reference, (128, 128))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        resized, msg = match_sizes(small, p.query)
    assert resized.shape == p.query.shape and "resized" in msg and w
    with pytest.raises(InputError, match="aspect"):
        align(p.reference[:, :128], p.query)


def test_textureless_and_dark_frames_are_said() -> None:
    p = synth.make_pair(seed=0)
    flat = np.full_like(p.query, 128)
    al = align(p.reference, flat)
    assert not al.ok and "textureless" in al.message
    al = align(p.reference, (p.query * 0.02).astype(np.uint8))
    assert not al.ok and "dark" in al.message


def test_random_homography_bounds_and_boxes(tmp_path) -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        H = random_homography(rng, (640, 640))
        c = cv2.perspectiveTransform(np.float32([[[320, 320]]]), H)[0, 0]
        assert np.abs(c - 320).max() <= 0.05 * 640 + 0.02 * 640 + 1
    f = tmp_path / "1.txt"
    f.write_text("1 2 30 40 3\n5 6 70 80 1\n")
    boxes, types = read_boxes(f)
    assert boxes.shape == (2, 4) and types.tolist() == [3, 1]
    (tmp_path / "bad.txt").write_text("1 2 3\n")
    with pytest.raises(InputError):
        read_boxes(tmp_path / "bad.txt")


def test_change_params_scale_with_frame_size() -> None:
    p = ChangeParams().scaled(160, 120)
    assert p.smooth == pytest.approx(ChangeParams().smooth / 4)
    assert ChangeParams().scaled(640, 480) is not None
