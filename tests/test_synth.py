"""Scene generators: determinism, shapes, labels consistent with masks, anomalies actually visible, speed."""

from __future__ import annotations

import time

import av
import cv2
import numpy as np
import pytest

from oddeye.core import synth as S
from oddeye.core.errors import InputError


def _arrays(obj) -> list[np.ndarray]:
    """All ndarray fields of a synth dataclass (or list of them)."""
    if isinstance(obj, list):
        return [a for o in obj for a in _arrays(o)]
    return [v for v in vars(obj).values() if isinstance(v, np.ndarray)]


GENERATORS = {
    "video": lambda seed: S.make_video(seed=seed, n_frames=40, anomaly_span=(10, 30)),
    "images": lambda seed: S.make_image_set(seed=seed, n_normal=3, n_defect=4),
    "pair": lambda seed: S.make_pair(seed=seed, warp=True),
    "route": lambda seed: S.make_route(seed=seed, n_frames=20),
    "cloud": lambda seed: S.make_point_cloud(seed=seed, defect="dent"),
}


@pytest.mark.parametrize("name", list(GENERATORS))
def test_same_seed_same_output_other_seed_different(name: str) -> None:
    a, b, c = (_arrays(GENERATORS[name](s)) for s in (3, 3, 4))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert any(x.shape != z.shape or not np.array_equal(x, z) for x, z in zip(a, c))


@pytest.mark.parametrize("anomaly", list(S.VIDEO_ANOMALIES))
def test_video_labels_masks_and_visibility(anomaly: str) -> None:
    v = S.make_video(seed=1, anomaly=anomaly)
    assert v.frames.shape == (120, 120, 160) and v.frames.dtype == np.uint8
    assert v.masks.shape == v.frames.shape and v.masks.dtype == bool
    assert v.labels.shape == (120,) and v.fps > 0
    np.testing.assert_array_equal(v.labels, v.masks.any(axis=(1, 2)))
    expected = np.zeros(120, int)
    expected[60:100] = 1
    np.testing.assert_array_equal(v.labels, expected)
    clean = S.make_video(seed=1, anomaly=None)
    assert clean.labels.sum() == 0 and not clean.masks.any()
    diff = np.abs(v.frames.astype(int) - clean.frames.astype(int))
    assert diff[v.masks].mean() > 20  # the abnormal object is visible where its mask is
    assert diff[~v.masks].mean() < 1  # and nothing else changed


def _centroids(masks: np.ndarray) -> np.ndarray:
    """(T, 2) row/col centroid of each non-empty mask."""
    return np.array([np.argwhere(m).mean(axis=0) for m in masks if m.any()])


def test_video_anomaly_kinds_differ_as_described() -> None:
    H = 120
    fast, big, wrong = (S.make_video(seed=2, anomaly=a) for a in ("fast", "big", "wrong_place"))
    step_fast = np.median(np.abs(np.diff(_centroids(fast.masks)[:, 1])))
    step_wrong = np.median(np.abs(np.diff(_centroids(wrong.masks)[:, 1])))
    assert step_fast >= 4 * max(step_wrong, 1)
    assert big.masks[60].sum() >= 5 * fast.masks[60].sum()
    rows = np.nonzero(wrong.masks.any(axis=(0, 2)))[0]
    assert rows.max() < int(0.35 * H) or rows.min() >= int(0.8 * H)  # on the grass, off the walkway
    rows_fast = np.nonzero(fast.masks.any(axis=(0, 2)))[0]
    assert rows_fast.min() >= int(0.35 * H) and rows_fast.max() < int(0.8 * H)


def test_write_frames_and_video_file_round_trip(tmp_path) -> None:
    v = S.make_video(seed=0, n_frames=12, anomaly=None)
    d = S.write_frames(v.frames, tmp_path / "frames")
    files = sorted(d.glob("*.png"))
    assert [f.name for f in files[:2]] == ["000000.png", "000001.png"] and len(files) == 12
    np.testing.assert_array_equal(cv2.imread(str(files[3]), cv2.IMREAD_GRAYSCALE), v.frames[3])
    p = S.write_video_file(v.frames, tmp_path / "v.mp4", fps=v.fps)
    with av.open(str(p)) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.pix_fmt == "yuv420p"
        dec = [f.to_ndarray(format="gray") for f in c.decode(video=0)]
    assert len(dec) == 12 and dec[0].shape == (120, 160)
    assert np.abs(dec[5].astype(int) - v.frames[5]).mean() < 6
    with pytest.raises(InputError, match="frames must be"):
        S.write_video_file(np.zeros((0, 8, 8), np.uint8), tmp_path / "e.mp4")


def test_image_set_defects_visible_and_masks_consistent() -> None:
    items = S.make_image_set(seed=0, n_normal=4, n_defect=8, size=(96, 128))
    assert len(items) == 12
    good = items[0].image.astype(float)
    for it in items:
        assert it.image.shape == (96, 128, 3) and it.image.dtype == np.uint8
        assert it.mask.shape == (96, 128) and it.mask.dtype == bool
        assert it.label == int(it.mask.any())
    assert [it.kind for it in items[4:8]] == list(S.DEFECTS)
    assert sum(it.label for it in items) == 8
    for it in items[4:]:
        inside = it.image[it.mask].astype(float).mean(axis=0)
        assert np.abs(inside - np.median(good.reshape(-1, 3), axis=0)).max() > 30, it.kind


def test_pair_changes_boxes_and_homography() -> None:
    p = S.make_pair(seed=5, n_changes=3, warp=False)
    assert p.reference.shape == p.query.shape == (256, 256, 3) and p.query.dtype == np.uint8
    np.testing.assert_array_equal(p.homography, np.eye(3))
    assert p.boxes.shape == (3, 4)
    diff = np.abs(p.reference.astype(int) - p.query.astype(int)).mean(axis=2)
    assert diff[p.mask].mean() > 25 and diff[~p.mask].mean() < 10
    from oddeye.core.metrics import boxes_to_mask
    box_mask = boxes_to_mask(p.boxes, p.mask.shape)
    assert box_mask[p.mask].all()  # every changed pixel lies in a box

    w = S.make_pair(seed=5, n_changes=3, warp=True)
    assert not np.allclose(w.homography, np.eye(3))
    aligned = cv2.warpPerspective(w.reference, w.homography, (256, 256)).astype(int)
    inner = np.zeros((256, 256), bool)
    inner[30:-30, 30:-30] = True
    keep = inner & ~w.mask
    err_aligned = np.abs(aligned - w.query).mean(axis=2)[keep].mean()
    err_raw = np.abs(w.reference.astype(int) - w.query).mean(axis=2)[keep].mean()
    assert err_aligned < 8 and err_aligned < 0.5 * err_raw
    assert S.make_pair(seed=5, n_changes=0).boxes.shape == (0, 4)


def test_route_labels_masks_and_visibility() -> None:
    r = S.make_route(seed=0, n_frames=40, size=(96, 128), n_objects=2)
    assert r.reference.shape == r.query.shape == (40, 96, 128, 3) and r.query.dtype == np.uint8
    assert r.masks.shape == (40, 96, 128) and r.masks.dtype == bool
    np.testing.assert_array_equal(r.labels, r.masks.any(axis=(1, 2)))
    assert 0 < r.labels.sum() < 40
    i = int(np.argmax(r.masks.sum(axis=(1, 2))))
    diff = np.abs(r.reference[i].astype(int) - r.query[i].astype(int)).mean(axis=2)
    assert diff[r.masks[i]].mean() > 2 * diff[~r.masks[i]].mean()
    # the camera moves: consecutive reference frames differ, the route repeats nothing
    assert np.abs(r.reference[0].astype(int) - r.reference[10]).mean() > 5


@pytest.mark.parametrize("shape", S.SHAPES)
@pytest.mark.parametrize("defect", ["dent", "bulge"])
def test_point_cloud_defects_move_labelled_points(shape: str, defect: str) -> None:
    size = 0.05
    c = S.make_point_cloud(seed=0, n_points=3000, shape=shape, defect=defect, defect_size=size)
    clean = S.make_point_cloud(seed=0, n_points=3000, shape=shape, defect=None)
    assert c.points.shape == (3000, 3) and c.points.dtype == np.float32
    assert c.labels.shape == (3000,) and clean.labels.sum() == 0
    assert 0 < c.labels.sum() < 300
    moved = np.linalg.norm(c.points - clean.points, axis=1)
    lab = c.labels.astype(bool)
    assert moved[lab].min() > 0.2 * size - 1e-4 and moved[~lab].max() <= 0.2 * size + 1e-4
    sign = np.sum((c.points - clean.points)[lab] * c.normals[lab], axis=1)
    assert (sign > 0).all() if defect == "bulge" else (sign < 0).all()
    if shape == "sphere":
        r = np.linalg.norm(c.points[lab], axis=1)
        assert (r < 0.5).all() if defect == "dent" else (r > 0.5).all()


def test_bad_arguments_are_input_errors() -> None:
    with pytest.raises(InputError, match="anomaly must be one of"):
        S.make_video(anomaly="slow")
    with pytest.raises(InputError, match="anomaly_span"):
        S.make_video(n_frames=50, anomaly_span=(40, 60))
    with pytest.raises(InputError, match="size must be"):
        S.make_image_set(size=(8, 8))
    with pytest.raises(InputError, match="n_normal and n_defect"):
        S.make_image_set(n_normal=0, n_defect=0)
    with pytest.raises(InputError, match="shape must be one of"):
        S.make_point_cloud(shape="cone")
    with pytest.raises(InputError, match="defect must be"):
        S.make_point_cloud(defect="hole")
    with pytest.raises(InputError, match="n_changes"):
        S.make_pair(n_changes=-1)


@pytest.mark.parametrize("fn", [S.make_video, S.make_image_set, S.make_pair, S.make_route, S.make_point_cloud])
def test_defaults_are_fast(fn) -> None:
    t = time.perf_counter()
    fn()
    assert time.perf_counter() - t < 3.0  # generous: the machine is shared; typical is ~0.1 s
