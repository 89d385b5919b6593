"""Synthetic anomalies (oddeye.core.anomalies): seeded, the mask/labels mark exactly what changed, shapes kept."""

from __future__ import annotations

import numpy as np
import pytest

from oddeye.core import synth as S
from oddeye.core.anomalies import (IMAGE_ANOMALIES, PATROL_CHANGES, POINT_ANOMALIES, VIDEO_ANOMALIES,
                                   make_defect, make_image_anomalies, make_image_anomaly, make_patrol_change,
                                   make_video_anomaly)
from oddeye.core.errors import InputError


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return S.make_image_set(seed=0, n_normal=1, n_defect=0, size=(96, 128))[0].image


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return S.make_video(seed=0, n_frames=40, size=(64, 96), anomaly=None).frames


@pytest.fixture(scope="module")
def pair() -> S.SynthPair:
    return S.make_pair(seed=0, size=(96, 96), n_changes=0)


# ------------------------------------------------------------------------------------------------ images
@pytest.mark.parametrize("kind", IMAGE_ANOMALIES)
@pytest.mark.parametrize("gray", [False, True])
def test_image_anomaly_changes_only_its_mask(image: np.ndarray, kind: str, gray: bool) -> None:
    img = image[..., 1].copy() if gray else image
    for seed in range(4):
        a = make_image_anomaly(img, kind, seed=seed)
        assert a.kind == kind and a.image.shape == img.shape and a.image.dtype == np.uint8
        assert a.mask.shape == img.shape[:2] and a.mask.dtype == bool and a.mask.any()
        changed = a.image != img if gray else (a.image != img).any(axis=2)
        assert not changed[~a.mask].any()  # nothing outside the mask moved
        assert changed[a.mask].mean() > 0.5  # and the mask is what changed


@pytest.mark.parametrize("kind", IMAGE_ANOMALIES)
def test_image_anomaly_seeded(image: np.ndarray, kind: str) -> None:
    a, b, c = (make_image_anomaly(image, kind, seed=s) for s in (5, 5, 6))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert not np.array_equal(a.mask, c.mask)


def test_image_anomalies_take_kinds_in_turn_and_refuse_bad_input(image: np.ndarray) -> None:
    out = make_image_anomalies([image] * 9, seed=1)
    assert [a.kind for a in out] == [IMAGE_ANOMALIES[i % len(IMAGE_ANOMALIES)] for i in range(9)]
    with pytest.raises(InputError, match="unknown image anomaly"):
        make_image_anomaly(image, "smudge")
    with pytest.raises(InputError, match="uint8"):
        make_image_anomaly(image.astype(np.float32))


# ------------------------------------------------------------------------------------------------ video
@pytest.mark.parametrize("kind", VIDEO_ANOMALIES)
def test_video_anomaly_labels_and_masks_mark_what_changed(clip: np.ndarray, kind: str) -> None:
    a = make_video_anomaly(clip, kind, seed=2, span=(10, 30))
    assert a.frames.shape == clip.shape and a.frames.dtype == np.uint8 and a.kind == kind
    assert a.labels.shape == (len(clip),) and a.masks.shape == clip.shape and a.masks.dtype == bool
    np.testing.assert_array_equal(a.labels, a.masks.any(axis=(1, 2)))
    changed = a.frames != clip
    assert not changed[~a.masks].any()  # nothing outside the masks moved
    assert a.labels[:10].sum() == 0 and a.labels[30:].sum() == 0 and a.labels[11:30].all()
    assert changed.any(axis=(1, 2))[a.labels == 1].all()  # every labelled frame changed


def test_video_anomaly_kinds_do_what_they_say(clip: np.ndarray) -> None:
    def centres(a):
        return np.array([np.argwhere(m).mean(axis=0) for m in a.masks if m.any()])

    fast, loiter = (make_video_anomaly(clip, k, seed=3, span=(5, 35), source="drawn") for k in ("fast", "loiter"))
    step = lambda c: np.median(np.hypot(*np.diff(c, axis=0).T))  # noqa: E731
    assert step(centres(fast)) > 3 * max(step(centres(loiter)), 0.5)
    big = make_video_anomaly(clip, "big", seed=3, span=(5, 35))
    assert big.masks[5].sum() > 3 * loiter.masks[5].sum()
    frozen = make_video_anomaly(clip, "frozen", seed=0, span=(10, 20))
    assert all(np.array_equal(frozen.frames[t], clip[9]) for t in range(10, 20))
    repeat = make_video_anomaly(clip, "repeat", seed=0, span=(20, 30))
    np.testing.assert_array_equal(repeat.frames[20:30], clip[10:20])


def test_video_anomaly_objects_come_from_the_clip(clip: np.ndarray) -> None:
    from oddeye.core.anomalies.video import cut_objects, motion

    objs = cut_objects(clip)
    assert objs and all(o.values.shape[:2] == o.mask.shape for o in objs)
    m = motion(clip)
    assert m.activity.shape == clip.shape[1:] and m.speed > 0  # the walkers move about 1 px a frame
    a, b, c = (make_video_anomaly(clip, "wrong_way", seed=s, source="clip") for s in (4, 4, 5))
    assert np.array_equal(a.frames, b.frames) and not np.array_equal(a.frames, c.frames)
    still = np.repeat(clip[:1], 8, axis=0)
    with pytest.raises(InputError, match="no moving foreground"):
        make_video_anomaly(still, "fast", source="clip")
    colour = make_video_anomaly(np.repeat(clip[..., None], 3, axis=3), "zone", seed=1)
    assert colour.frames.shape == clip.shape + (3,) and not (colour.frames != clip[..., None])[~colour.masks].any()



def _perspective_clip(n: int = 48, H: int = 120, W: int = 160) -> np.ndarray:
    """Bright boxes walking down and up a dark scene, each as tall as 4 + 0.25 x its bottom row (T, H, W) uint8."""
    clip = np.full((n, H, W), 40, np.uint8)
    for t in range(n):
        for k, x in enumerate((20, 70, 120)):
            bottom = 20 + (t * 2 + k * 30) % (H - 24)
            h = int(4 + 0.25 * bottom)
            clip[t, bottom - h:bottom, x:x + max(h // 3, 2)] = 200
    return clip


def test_pasted_objects_follow_the_scenes_perspective() -> None:
    from oddeye.core.anomalies.video import motion, size_by_row

    clip = _perspective_clip()
    m = motion(clip)
    assert m.rows[1] == pytest.approx(0.25, abs=0.06) and m.height_at(100) > 2 * m.height_at(30)
    a = make_video_anomaly(clip, "fast", seed=2, source="drawn")
    seen = []  # (bottom row, height) of the pasted object on each frame
    for t in np.flatnonzero(a.labels):
        rows = np.flatnonzero(a.masks[t].any(axis=1))
        if rows.size and 0 < rows.min() and rows.max() < clip.shape[1] - 1:  # wholly inside the frame
            seen.append((rows.max(), rows.max() - rows.min() + 1))
    seen.sort()
    assert len(seen) > 4 and seen[-1][0] - seen[0][0] > 20 and seen[-1][1] > 1.3 * seen[0][1]
    assert all(abs(h - m.height_at(bottom)) <= 0.2 * m.height_at(bottom) + 2 for bottom, h in seen)
    flat = [(0, 10 * i, 0, 12, 5, 0.0, 0.0) for i in range(12)]  # blobs of one size on every row
    assert size_by_row(flat, 120) == (0.0, 0.0) and size_by_row(flat[:5], 120) == (0.0, 0.0)

# ------------------------------------------------------------------------------------------------ points
@pytest.mark.parametrize("kind", POINT_ANOMALIES)
def test_point_anomaly_labels_mark_what_changed(kind: str) -> None:
    pts = S.make_point_cloud(seed=0, n_points=3000, shape="plate").points
    a, b, c = (make_defect(pts, kind, seed=s, size=0.12) for s in (1, 1, 2))
    assert np.array_equal(a.points, b.points) and not np.array_equal(a.points, c.points)
    assert a.points.dtype == pts.dtype and a.points.shape[1] == 3 and a.labels.shape == (len(a.points),)
    assert a.labels.sum() > 0
    if kind in ("dent", "bulge", "crack"):  # moved in place: unlabelled points are untouched, labelled ones moved
        assert len(a.points) == len(pts)
        moved = (a.points != pts).any(axis=1)
        np.testing.assert_array_equal(moved, a.labels == 1)
    elif kind == "blob":  # points added after the scan, all labelled
        assert np.array_equal(a.points[:len(pts)], pts) and a.labels[len(pts):].all() and not a.labels[:len(pts)].any()
    else:  # hole: points removed; the rest untouched
        assert len(a.points) < len(pts)
        kept = {tuple(p) for p in pts.tolist()}
        assert all(tuple(p) in kept for p in a.points.tolist())


def test_pointcloud_head_still_reads_the_shared_generator() -> None:
    from oddeye.pointcloud import defects, preprocess

    assert defects.make_defect is make_defect and defects.KINDS == POINT_ANOMALIES
    pts = S.make_point_cloud(seed=1, n_points=2000).points
    assert preprocess.point_spacing(pts) == pytest.approx(
        np.sqrt(len(preprocess.voxel_downsample(pts, preprocess.extent(pts) / 50).points)
                * (preprocess.extent(pts) / 50) ** 2 / len(pts)))


# ------------------------------------------------------------------------------------------------ patrol
@pytest.mark.parametrize("kind", PATROL_CHANGES)
def test_patrol_change_marks_what_changed(pair: S.SynthPair, kind: str) -> None:
    a, b, c = (make_patrol_change(pair.reference, pair.query, kind, seed=s) for s in (3, 3, 4))
    assert np.array_equal(a.query, b.query) and not np.array_equal(a.query, c.query)
    assert a.query.shape == pair.query.shape and a.query.dtype == np.uint8 and a.kind == kind
    assert np.array_equal(a.homography, np.eye(3))
    changed = (a.query != pair.query).any(axis=2)
    assert a.mask.any() and not changed[~a.mask].any() and changed[a.mask].mean() > 0.5


def test_patrol_change_under_a_warp(pair: S.SynthPair) -> None:
    import cv2

    a = make_patrol_change(pair.reference, pair.query, "insert", seed=1, warp=True)
    assert not np.allclose(a.homography, np.eye(3))
    warped = cv2.warpPerspective(pair.query, a.homography, pair.query.shape[1::-1], flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REFLECT)
    changed = (a.query != warped).any(axis=2)
    assert not changed[~a.mask].any() and changed[a.mask].mean() > 0.5
    with pytest.raises(InputError, match="same shape"):
        make_patrol_change(pair.reference[:50], pair.query)
