"""The video anomalies' perspective in speed and their graded severity (oddeye.core.anomalies.video): the clip's own
speed measured in object heights per frame, pasted objects slower in px far away, near-limit copies within their
stated factor of the clip's own high quantile of speed and size, strong ones far past the usual."""

from __future__ import annotations

import numpy as np
import pytest

from oddeye.core.anomalies.video import NEAR, STRONG, make_video_anomaly, motion

H, W, T = 160, 200, 48
BOTTOMS = (24, 46, 72, 104, 146)  # one walker per row, far (top) to near (bottom); their rows never overlap
PACE = 0.2  # every walker moves 0.2 of its own height per frame: a near one covers more px than a far one


def _height(bottom: float) -> float:
    return 4 + 0.25 * bottom


def _clip() -> np.ndarray:
    """Bright boxes walking right along five rows of a dark scene, each as tall as 4 + 0.25 x its bottom row and
    moving PACE of that height per frame (T, H, W) uint8: the perspective of a camera looking down a walkway."""
    clip = np.full((T, H, W), 40, np.uint8)
    for t in range(T):
        for k, bottom in enumerate(BOTTOMS):
            h = int(_height(bottom))
            w = max(h // 3, 2)
            x = int(round(17 * k + PACE * _height(bottom) * t)) % (W - w)
            clip[t, bottom - h:bottom, x:x + w] = 200
    return clip


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    """The perspective clip."""
    return _clip()


def _positions(a) -> list[tuple[int, float, float, int]]:
    """(frame, bottom row, column centre, height) of the pasted object on each frame it lies wholly inside."""
    out = []
    for t in np.flatnonzero(a.labels):
        rows, cols = np.flatnonzero(a.masks[t].any(axis=1)), np.flatnonzero(a.masks[t].any(axis=0))
        if rows.size and 0 < rows.min() and rows.max() < H - 1 and 0 < cols.min() and cols.max() < W - 1:
            centre = float(cols.min() + cols.max()) / 2
            out.append((int(t), float(rows.max()), centre, int(rows.max() - rows.min() + 1)))
    return out


def _steps(a) -> list[tuple[float, float]]:
    """(bottom row, px moved to the next frame) of the pasted object, frames where it is wholly inside."""
    p = _positions(a)
    return [(y0, float(np.hypot(y1 - y0, x1 - x0))) for (t0, y0, x0, _), (t1, y1, x1, _) in zip(p, p[1:])
            if t1 == t0 + 1]


def test_the_clip_speed_is_measured_in_heights_per_frame(clip: np.ndarray) -> None:
    m = motion(clip)
    assert m.height_at(146) > 3 * m.height_at(24)  # the perspective is seen ...
    assert m.pace == pytest.approx(PACE, abs=0.03)  # ... and the speed per height is the same on every row
    assert m.pace <= m.pace_hi <= 1.5 * PACE and 0.9 <= m.tall_hi <= 1.3
    assert m.speed_at(146) / m.speed_at(24) == pytest.approx(m.height_at(146) / m.height_at(24))
    assert m.speed_at(100, high=True) >= m.speed_at(100)


def test_a_pasted_object_covers_fewer_px_per_frame_far_away(clip: np.ndarray) -> None:
    m = motion(clip)
    seen = []  # (bottom row, median px per frame) of an object going against the walkers, one row per seed
    for seed in range(6):
        steps = _steps(make_video_anomaly(clip, "wrong_way", seed=seed, span=(2, 46), source="drawn"))
        assert len(steps) >= 10
        row, step = float(np.median([y for y, _ in steps])), float(np.median([s for _, s in steps]))
        assert step / m.speed_at(row) == pytest.approx(1.0, abs=0.25)  # the usual speed at its row
        seen.append((row, step))
    seen.sort()
    assert seen[-1][0] - seen[0][0] > 40 and seen[0][1] < 0.7 * seen[-1][1]  # far: fewer px per frame than near
    assert np.corrcoef(*zip(*seen))[0, 1] > 0.8


@pytest.mark.parametrize("near", [False, True])
def test_fast_copies_sit_within_their_factor_of_the_clips_own_speed_at_that_row(clip: np.ndarray,
                                                                              near: bool) -> None:
    m = motion(clip)
    lo, hi = NEAR["fast"] if near else STRONG["fast"]
    for seed in range(3):
        a = make_video_anomaly(clip, "fast", seed=seed, span=(2, 46), source="drawn", near=near)
        ratio = [s / m.speed_at(y, high=near) for y, s in _steps(a)]
        assert len(ratio) >= 5
        # bounces off the frame's edges shorten a step, never lengthen it
        assert 0.8 * lo <= np.median(ratio) <= 1.1 * hi and np.quantile(ratio, 0.9) <= 1.15 * hi
    if near:  # near the limit: faster than the clip's own high quantile, but not by much
        assert lo * m.pace_hi > m.pace and hi * m.pace_hi < STRONG["fast"][0] * m.pace


def test_near_limit_big_copies_sit_within_their_factor_of_the_clips_own_size_at_that_row(clip: np.ndarray) -> None:
    m = motion(clip)
    lo, hi = NEAR["big"][0] * m.tall_hi, NEAR["big"][1] * m.tall_hi
    for seed in range(3):
        a = make_video_anomaly(clip, "big", seed=seed, span=(2, 46), source="drawn", near=True)
        ratio = [h / m.height_at(y) for _, y, _, h in _positions(a)]
        assert len(ratio) >= 5 and 0.9 * lo <= np.median(ratio) <= 1.1 * hi


def test_near_limit_copies_are_subtler_than_strong_ones(clip: np.ndarray) -> None:
    m = motion(clip)
    strong, near = (make_video_anomaly(clip, "fast", seed=4, span=(2, 46), source="drawn", near=n) for n in (0, 1))
    speed = lambda a: np.median([s / m.speed_at(y) for y, s in _steps(a)])  # noqa: E731
    assert speed(near) < 0.6 * speed(strong)
    big, big_near = (make_video_anomaly(clip, "big", seed=4, span=(2, 46), source="drawn", near=n) for n in (0, 1))
    assert big_near.masks.sum() < 0.5 * big.masks.sum()


def test_an_objects_speed_is_its_displacement_over_a_few_frames_not_its_outlines_jitter() -> None:
    clip = np.full((T, H, W), 40, np.uint8)
    for t in range(T):  # one box walking right 1 px a frame, its outline wobbling 3 px every other frame
        x = 10 + t + (3 if t % 2 else 0)
        clip[t, 60:90, x:x + 10] = 200
    m = motion(clip)
    assert m.speed > 2  # frame to frame, the wobble looks like speed ...
    assert m.pace * 30 == pytest.approx(1.0, abs=0.3) and m.pace_hi * 30 < 1.5  # ... over 4 frames it is gone
