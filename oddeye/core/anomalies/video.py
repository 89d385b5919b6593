"""Synthetic anomalies in a normal clip (T, H, W[, 3]) uint8: an object, cut from the clip's own moving foreground
(frame differencing against the median frame) or drawn, pasted in so that it moves too fast, is too big, crosses a
zone nothing uses, loiters, or goes against the usual direction; or frames frozen or replayed. Too fast and too big
come in two grades, both relative to the clip's own moving objects at the row the object stands on: strong (STRONG x
their median speed / height) and near the limit (NEAR x their HIGH_Q quantile). Seeded; each returns the clip (same
shape and dtype), per-frame labels (T,) and masks (T, H, W) of what it changed; frames and pixels outside them are
left exactly as they were.

    a = make_video_anomaly(clip, "fast", seed=1)        # a.frames, a.labels, a.masks, a.kind
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from oddeye.core.errors import InputError
from oddeye.core.synth._common import _paste
from oddeye.core.synth.video import _walker_sprite

VIDEO_ANOMALIES = ("fast", "big", "zone", "loiter", "wrong_way", "frozen", "repeat")
HIGH_Q = 0.95  # the clip's own "high" speed and size: this quantile of its moving objects' (robust to odd matches)
WINDOW = 4  # frames over which an object's speed is measured (its displacement over them / WINDOW)
STRONG = {"fast": (4.0, 8.0), "big": (2.5, 4.0)}  # x the clip's usual (median) speed / height at that row
NEAR = {"fast": (1.2, 1.6), "big": (1.2, 1.5)}  # near-limit: x the clip's HIGH_Q speed / height at that row


@dataclass
class AnomalousClip:
    """frames: the changed clip (T, H, W[, 3]) uint8; labels (T,) int 0/1; masks (T, H, W) bool; kind."""

    frames: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    kind: str


@dataclass
class Sprite:
    """An object to paste: values (h, w[, 3]) float32 and its shape mask (h, w) bool."""

    values: np.ndarray
    mask: np.ndarray
    row: float | None = None  # bottom row (px) where it was cut from the clip; None: drawn


@dataclass
class Motion:
    """What moves in a clip: activity (H, W) share of frames with foreground there, the usual step (dy, dx) in px
    per frame of the moving foreground (0, 0 if none), its typical speed (px per frame) and object height (px), and
    the object height expected at each row, a + b x (bottom row), from the clip's own objects (b = 0: none seen).
    Speed follows the perspective as size does: `pace` is the median speed in object heights per frame (an object's
    displacement over WINDOW frames of its track, in px per frame, divided by the height expected at its row),
    `pace_hi` its HIGH_Q quantile; `tall_hi` is the HIGH_Q quantile of a blob's height over the height expected at
    its row."""

    activity: np.ndarray
    step: np.ndarray
    speed: float
    height: float
    rows: tuple[float, float] = (0.0, 0.0)
    pace: float = 0.0
    pace_hi: float = 0.0
    tall_hi: float = 1.0

    def height_at(self, bottom: float) -> float:
        """Expected height (px) of an object whose bottom is on row `bottom`: the scene's perspective."""
        a, b = self.rows
        return max(a + b * bottom, 0.25 * self.height) if b > 0 else self.height

    def speed_at(self, bottom: float, high: bool = False) -> float:
        """Usual (median; `high`: HIGH_Q) speed in px per frame of an object whose bottom is on row `bottom`."""
        return (self.pace_hi if high else self.pace) * self.height_at(bottom)


def _check_clip(clip: np.ndarray) -> np.ndarray:
    a = np.asarray(clip)
    if a.dtype != np.uint8 or a.ndim not in (3, 4) or a.shape[0] < 4 or min(a.shape[1:3]) < 16 or (
            a.ndim == 4 and a.shape[3] != 3):
        raise InputError(f"clip must be uint8 (T, H, W) or (T, H, W, 3) with T >= 4 and H, W >= 16, "
                         f"got {a.dtype} {a.shape}")
    return a


def _gray(clip: np.ndarray) -> np.ndarray:
    """(T, H, W) float32 intensity of a clip (T, H, W[, C])."""
    return (clip.mean(axis=3) if clip.ndim == 4 else clip).astype(np.float32)


def foreground(clip: np.ndarray, thresh: float = 25.0) -> np.ndarray:
    """Moving foreground (T, H, W) bool: |frame - median frame| above `thresh`, opened to drop speckle."""
    g = _gray(clip)
    fg = np.abs(g - np.median(g, axis=0)) > thresh
    k = np.ones((3, 3), np.uint8)
    return np.stack([cv2.morphologyEx(f.astype(np.uint8), cv2.MORPH_OPEN, k) > 0 for f in fg])


def _blobs(fg: np.ndarray, min_area: int) -> list[tuple[int, int, int, int, int, float, float]]:
    """Connected foreground blobs of every frame: (t, top, left, h, w, cy, cx), at least min_area px."""
    out = []
    for t, f in enumerate(fg):
        n, _, stats, cents = cv2.connectedComponentsWithStats(f.astype(np.uint8), connectivity=8)
        for i in range(1, n):
            x, y, w, h, area = stats[i]
            if area >= min_area:
                out.append((t, int(y), int(x), int(h), int(w), float(cents[i][1]), float(cents[i][0])))
    return out


def _tracks(blobs: list[tuple[int, int, int, int, int, float, float]], T: int, reach: float) -> list[np.ndarray]:
    """Blobs linked frame to frame into tracks, each (n, 4) of (t, centre row, centre column, bottom row): mutual
    nearest centres within `reach` px and of similar height (0.7-1.4x), so that blobs splitting, merging or entering
    do not link."""
    by_t: dict[int, list[tuple[float, float, float, float]]] = {}
    for t, y, _, h, _, cy, cx in blobs:
        by_t.setdefault(t, []).append((cy, cx, float(h), float(y + h)))
    tracks: list[list[tuple[float, float, float, float]]] = []
    last: dict[int, int] = {}  # blob of the previous frame -> its track
    for t in range(T):
        cur, prev = np.array(by_t.get(t, [])), np.array(by_t.get(t - 1, []))
        now: dict[int, int] = {}
        if len(cur) and len(prev):
            d = np.hypot(cur[:, None, 0] - prev[None, :, 0], cur[:, None, 1] - prev[None, :, 1])
            for i in range(len(cur)):
                j = int(np.argmin(d[i]))
                if int(np.argmin(d[:, j])) == i and d[i, j] < reach and 0.7 <= cur[i, 2] / prev[j, 2] <= 1.4:
                    now[i] = last[j]
        for i in range(len(cur)):
            if i not in now:
                now[i] = len(tracks)
                tracks.append([])
            tracks[now[i]].append((t, cur[i, 0], cur[i, 1], cur[i, 3]))
        last = now
    return [np.array(tr) for tr in tracks if len(tr) > 1]


def motion(clip: np.ndarray) -> Motion:
    """The clip's moving foreground: where it goes (activity), its usual step per frame (blobs linked between
    neighbouring frames), speed and object height, and both in units of the height expected at each row (speed
    over WINDOW frames of a track, so that the jitter of a blob's outline is not taken for speed)."""
    clip = _check_clip(clip)
    T, H, W = clip.shape[:3]
    fg = foreground(clip)
    blobs = _blobs(fg, max(8, H * W // 2000))
    height = float(np.median([b[3] for b in blobs])) if blobs else 0.13 * H
    m = Motion(activity=fg.mean(axis=0), step=np.zeros(2), speed=0.0, height=height, rows=size_by_row(blobs, H))
    if blobs:
        m.tall_hi = float(np.quantile([b[3] / max(m.height_at(b[1] + b[3]), 1e-6) for b in blobs], HIGH_Q))
    tracks = _tracks(blobs, T, 0.1 * max(H, W))
    if tracks:
        d = np.concatenate([np.diff(tr[:, 1:3], axis=0) for tr in tracks])
        m.step, m.speed = np.median(d, axis=0), float(np.median(np.hypot(d[:, 0], d[:, 1])))
        paces = []
        for tr in tracks:
            n = min(WINDOW, len(tr) - 1)  # a short track: over its whole length
            for k in range(len(tr) - n):
                moved = np.hypot(*(tr[k + n, 1:3] - tr[k, 1:3])) / (tr[k + n, 0] - tr[k, 0])
                paces.append(moved / max(m.height_at(0.5 * (tr[k, 3] + tr[k + n, 3])), 1e-6))
        m.pace, m.pace_hi = float(np.median(paces)), float(np.quantile(paces, HIGH_Q))
    if m.pace <= 0:  # nothing seen moving: a slow walk, 1 % of the frame per frame
        m.pace = 0.01 * max(H, W) / max(m.height, 1e-6)
    m.pace_hi = max(m.pace_hi, m.pace)
    return m


def size_by_row(blobs: list[tuple[int, int, int, int, int, float, float]], H: int, bands: int = 6,
                min_per_band: int = 3) -> tuple[float, float]:
    """(a, b) of the object height a + b x bottom row, fitted to the median height of the blobs in each of `bands`
    horizontal bands (those with at least `min_per_band` blobs, weighted by count); (0, 0) when fewer than three
    bands have objects or the height does not grow down the frame (no perspective to follow)."""
    if len(blobs) < 3 * min_per_band:
        return 0.0, 0.0
    bottom = np.array([b[1] + b[3] for b in blobs], np.float64)
    height = np.array([b[3] for b in blobs], np.float64)
    band = np.minimum((bottom / H * bands).astype(int), bands - 1)
    xs, ys, ws = [], [], []
    for k in range(bands):
        sel = band == k
        if sel.sum() >= min_per_band:
            xs.append(float(np.median(bottom[sel])))
            ys.append(float(np.median(height[sel])))
            ws.append(float(np.sqrt(sel.sum())))
    if len(xs) < 3:
        return 0.0, 0.0
    b, a = np.polyfit(xs, ys, 1, w=ws)
    return (float(a), float(b)) if b > 0 else (0.0, 0.0)


def cut_objects(clip: np.ndarray, limit: int = 8) -> list[Sprite]:
    """Up to `limit` objects cut from the clip's moving foreground (the largest blobs), pixels and shape."""
    clip = _check_clip(clip)
    H, W = clip.shape[1:3]
    fg = foreground(clip)
    blobs = [b for b in _blobs(fg, max(12, H * W // 1000)) if b[3] < 0.6 * H and b[4] < 0.6 * W]
    blobs.sort(key=lambda b: -b[3] * b[4])
    out = []
    for t, y, x, h, w, _, _ in blobs[:limit]:
        vals = clip[t, y:y + h, x:x + w].astype(np.float32)
        out.append(Sprite(vals, fg[t, y:y + h, x:x + w].copy(), row=float(y + h)))
    return out


def drawn_object(rng: np.random.Generator, height: float, channels: int) -> Sprite:
    """A walker-like figure (oddeye.core.synth's) of `height` px, gray or tinted."""
    h = max(int(round(height)), 6)
    vals, m = _walker_sprite(rng, h, max(h * 2 // 5, 3), rng.uniform(30, 200))
    if channels == 3:
        vals = vals[..., None] * rng.uniform(0.6, 1.4, 3)
    return Sprite(vals.astype(np.float32), m)


def _scaled(s: Sprite, factor: float) -> Sprite:
    if factor == 1.0:
        return s
    h, w = s.mask.shape
    size = (max(int(round(w * factor)), 2), max(int(round(h * factor)), 2))
    vals = cv2.resize(s.values, size, interpolation=cv2.INTER_LINEAR).reshape(size[1], size[0], *s.values.shape[2:])
    return Sprite(vals, cv2.resize(s.mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0, s.row)


def _least_used(activity: np.ndarray, h: int, w: int) -> tuple[float, float]:
    """Centre (y, x) of the h x w window with the least foreground activity."""
    H, W = activity.shape
    box = cv2.boxFilter(activity.astype(np.float32), -1, (max(w, 1), max(h, 1)))
    ys, xs = slice(h // 2, max(H - h // 2, h // 2 + 1)), slice(w // 2, max(W - w // 2, w // 2 + 1))
    sub = box[ys, xs]
    iy, ix = np.unravel_index(int(np.argmin(sub)), sub.shape)
    return float(iy + ys.start), float(ix + xs.start)


def _walk(y0: float, x0: float, direction: np.ndarray, speed: Callable[[float], float], n: int,
          hi: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """n top-left positions from (y0, x0) along `direction`, `speed(top row)` px per frame, bouncing off [0, hi]."""
    p, d = np.array([y0, x0], np.float64), np.asarray(direction, np.float64).copy()
    top = np.maximum(np.asarray(hi, np.float64), 0.0)
    out = np.empty((n, 2))
    for k in range(n):
        out[k] = p
        p = p + d * speed(p[0])
        for i in (0, 1):
            if p[i] < 0 or p[i] > top[i]:
                p[i], d[i] = (-p[i] if p[i] < 0 else 2 * top[i] - p[i]), -d[i]
        p = np.clip(p, 0.0, top)
    return out[:, 0], out[:, 1]


def _track(kind: str, rng: np.random.Generator, m: Motion, n: int, shape: tuple[int, int], h: int, w: int,
           near: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Top-left positions (n,), (n,) of the pasted object per frame for `kind`; its speed in px per frame is a
    multiple of the clip's own speed at the row it stands on (the usual one; "fast": STRONG x the usual, or NEAR x
    the high one when `near`), so it slows down far away as the clip's objects do."""
    H, W = shape
    ang = rng.uniform(0, 2 * np.pi)
    direction = np.array([np.sin(ang), np.cos(ang)])
    if kind == "wrong_way" and np.hypot(*m.step) > 0:
        direction = -m.step / np.hypot(*m.step)
    pace = m.pace
    if kind == "fast":
        pace = rng.uniform(*NEAR["fast"]) * m.pace_hi if near else rng.uniform(*STRONG["fast"]) * m.pace
    if kind == "loiter":
        pace = 0.0
    if kind == "zone":
        cy, cx = _least_used(m.activity, h, w)
        y0, x0 = cy - h / 2, cx - w / 2
    else:
        y0, x0 = rng.uniform(0, max(H - h, 1)), rng.uniform(0, max(W - w, 1))
    ys, xs = _walk(y0, x0, direction, lambda top: pace * m.height_at(top + h), n, (H - h, W - w))
    if kind == "loiter":  # standing about: a pixel or two of sway
        t = np.arange(n, dtype=np.float64)
        ys, xs = ys + np.round(np.sin(0.3 * t)), xs + np.round(np.cos(0.2 * t))
    return ys, xs


def _span(rng: np.random.Generator, T: int, span: tuple[int, int] | None) -> tuple[int, int]:
    if span is None:
        n = max(2, int(round(T * rng.uniform(0.25, 0.5))))
        a = int(rng.integers(1, max(T - n, 1) + 1))
        return a, min(a + n, T)
    a, b = int(span[0]), int(span[1])
    if not 0 <= a < b <= T:
        raise InputError(f"span must satisfy 0 <= start < end <= T={T}, got {span}")
    return a, b


def make_video_anomaly(clip: np.ndarray, kind: str | None = None, seed: int = 0,
                       span: tuple[int, int] | None = None, source: str = "auto", near: bool = False) -> AnomalousClip:
    """One seeded anomaly of `kind` (None: drawn by the seed) in frames span = [start, end) (None: drawn).

    Object kinds paste an object cut from the clip's moving foreground (source "clip"), a drawn figure ("drawn"),
    or the first where the clip has moving objects ("auto"): "fast" 4-8x the usual speed, "big" 2.5-4x the usual
    size (STRONG), "zone" through the window the foreground uses least, "loiter" standing still, "wrong_way" against
    the usual direction (those two and "zone" at the usual speed). "frozen" repeats frame start-1 over the span;
    "repeat" replays the frames before the span. `near`: "fast" and "big" just past the clip's own high quantile
    (NEAR: 1.2-1.6x its HIGH_Q speed, 1.2-1.5x its HIGH_Q height, at that row), at the edge of normal.
    A pasted object follows the scene's perspective in size and speed: on each frame it is scaled to the height the
    clip's own objects have at the row it stands on (Motion.height_at) and moves a multiple of their speed there
    (Motion.speed_at), so an object far away (high in the frame) is small and covers fewer px per frame.
    """
    clip = _check_clip(clip)
    if kind is not None and kind not in VIDEO_ANOMALIES:
        raise InputError(f"unknown video anomaly {kind!r}", f"choose from {', '.join(VIDEO_ANOMALIES)}")
    if source not in ("auto", "clip", "drawn"):
        raise InputError(f"source must be auto, clip or drawn, got {source!r}")
    rng = np.random.default_rng([seed, 60])
    kind = kind or VIDEO_ANOMALIES[int(rng.integers(len(VIDEO_ANOMALIES)))]
    T, H, W = clip.shape[:3]
    a, b = _span(rng, T, span)
    frames = clip.copy()
    masks = np.zeros((T, H, W), bool)
    if kind in ("frozen", "repeat"):
        a = max(a, 1)
        n = min(b - a, a)  # "repeat": the n frames before the span, replayed over it
        src = np.full(b - a, a - 1) if kind == "frozen" else a - n + np.arange(b - a) % n
        frames[a:b] = clip[src]
        changed = np.array([not np.array_equal(frames[t], clip[t]) for t in range(T)])
        masks[changed] = True
        return AnomalousClip(frames, changed.astype(np.int64), masks, kind)
    m = motion(clip)
    objects = cut_objects(clip) if source != "drawn" else []
    if source == "clip" and not objects:
        raise InputError("the clip has no moving foreground to cut objects from", "use source='drawn' or 'auto'")
    sprite = objects[int(rng.integers(len(objects)))] if objects else drawn_object(
        rng, m.height, 3 if clip.ndim == 4 else 1)
    if kind == "big":
        factor = rng.uniform(*NEAR["big"]) * m.tall_hi if near else rng.uniform(*STRONG["big"])
        sprite = _scaled(sprite, factor * max(m.height, 4) / max(sprite.mask.shape[0], 1))
    h, w = sprite.mask.shape
    ys, xs = _track(kind, rng, m, b - a, (H, W), h, w, near)
    work = frames.astype(np.float32)
    vals = sprite.values if clip.ndim == 4 or sprite.values.ndim == 2 else sprite.values.mean(axis=2)
    if clip.ndim == 4 and vals.ndim == 2:
        vals = np.repeat(vals[..., None], 3, axis=2)
    base = Sprite(vals, sprite.mask, sprite.row)
    ref = m.height if kind == "big" or sprite.row is None else m.height_at(sprite.row)
    sized: dict[float, Sprite] = {}
    for k, t in enumerate(range(a, b)):
        bottom, centre = ys[k] + h, xs[k] + w / 2  # the object stands on its bottom row
        f = round(m.height_at(bottom) / max(ref, 1e-6) * 20) / 20  # 5 % steps: few resizes
        s = sized.setdefault(f, _scaled(base, f))
        sh, sw = s.mask.shape
        _paste(work[t], s.values, s.mask, int(round(bottom - sh)), int(round(centre - sw / 2)), masks[t])
    frames[masks] = np.clip(np.rint(work[masks]), 0, 255).astype(np.uint8)
    return AnomalousClip(frames, masks.any(axis=(1, 2)).astype(np.int64), masks, kind)
