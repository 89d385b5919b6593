"""Synthetic anomalies in a normal clip (T, H, W[, 3]) uint8: an object, cut from the clip's own moving foreground
(frame differencing against the median frame) or drawn, pasted in so that it moves too fast, is too big, crosses a
zone nothing uses, loiters, or goes against the usual direction; or frames frozen or replayed. Seeded; each returns
the clip (same shape and dtype), per-frame labels (T,) and masks (T, H, W) of what it changed; frames and pixels
outside them are left exactly as they were.

    a = make_video_anomaly(clip, "fast", seed=1)        # a.frames, a.labels, a.masks, a.kind
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from oddeye.core.errors import InputError
from oddeye.core.synth._common import _paste
from oddeye.core.synth.video import _bounce, _walker_sprite

VIDEO_ANOMALIES = ("fast", "big", "zone", "loiter", "wrong_way", "frozen", "repeat")
MILD = {"fast": (1.5, 3.0), "big": (1.5, 2.5)}  # ranges (x the usual speed, x the usual height) of mild anomalies


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
    the object height expected at each row, a + b x (bottom row), from the clip's own objects (b = 0: none seen)."""

    activity: np.ndarray
    step: np.ndarray
    speed: float
    height: float
    rows: tuple[float, float] = (0.0, 0.0)

    def height_at(self, bottom: float) -> float:
        """Expected height (px) of an object whose bottom is on row `bottom`: the scene's perspective."""
        a, b = self.rows
        return max(a + b * bottom, 0.25 * self.height) if b > 0 else self.height


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


def motion(clip: np.ndarray) -> Motion:
    """The clip's moving foreground: where it goes (activity), its usual step per frame (blobs matched between
    neighbouring frames by nearest centre), speed and object height."""
    clip = _check_clip(clip)
    T, H, W = clip.shape[:3]
    fg = foreground(clip)
    blobs = _blobs(fg, max(8, H * W // 2000))
    steps = []
    by_t: dict[int, list[tuple[float, float]]] = {}
    for b in blobs:
        by_t.setdefault(b[0], []).append((b[5], b[6]))
    for t in range(1, T):
        if t in by_t and t - 1 in by_t:
            prev = np.array(by_t[t - 1])
            for c in by_t[t]:
                d = np.array(c) - prev
                j = int(np.argmin(np.hypot(d[:, 0], d[:, 1])))
                if np.hypot(*d[j]) < 0.1 * max(H, W):
                    steps.append(d[j])
    step = np.median(np.array(steps), axis=0) if steps else np.zeros(2)
    speed = float(np.median(np.hypot(*np.array(steps).T))) if steps else 0.0
    height = float(np.median([b[3] for b in blobs])) if blobs else 0.13 * H
    return Motion(activity=fg.mean(axis=0), step=step, speed=speed, height=height, rows=size_by_row(blobs, H))


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


def _track(kind: str, rng: np.random.Generator, m: Motion, n: int, shape: tuple[int, int], h: int, w: int,
           mild: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Top-left positions (n,), (n,) of the pasted object per frame for `kind`."""
    H, W = shape
    t = np.arange(n, dtype=np.float64)
    usual = max(m.speed, 0.01 * max(H, W))
    ang = rng.uniform(0, 2 * np.pi)
    direction = np.array([np.sin(ang), np.cos(ang)])
    if kind == "wrong_way" and np.hypot(*m.step) > 0:
        direction = -m.step / np.hypot(*m.step)
    speed = usual * ((rng.uniform(*MILD["fast"]) if mild else rng.uniform(4, 8)) if kind == "fast" else 1.0)
    if kind == "loiter":
        speed = 0.0
    if kind == "zone":
        cy, cx = _least_used(m.activity, h, w)
        y0, x0 = cy - h / 2, cx - w / 2
    else:
        y0, x0 = rng.uniform(0, max(H - h, 1)), rng.uniform(0, max(W - w, 1))
    ys = _bounce(y0, speed * direction[0], t, 0, max(H - h, 0))
    xs = _bounce(x0, speed * direction[1], t, 0, max(W - w, 0))
    if kind == "loiter":  # standing about: a pixel or two of sway
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
                       span: tuple[int, int] | None = None, source: str = "auto", mild: bool = False) -> AnomalousClip:
    """One seeded anomaly of `kind` (None: drawn by the seed) in frames span = [start, end) (None: drawn).

    Object kinds paste an object cut from the clip's moving foreground (source "clip"), a drawn figure ("drawn"),
    or the first where the clip has moving objects ("auto"): "fast" 4-8x the usual speed, "big" 2.5-4x the usual
    size, "zone" through the window the foreground uses least, "loiter" standing still, "wrong_way" against the
    usual direction. "frozen" repeats frame start-1 over the span; "repeat" replays the frames before the span.
    `mild`: subtler "fast" and "big" (MILD: 1.5-3x the speed, 1.5-2.5x the size), nearer the edge of normal.
    A pasted object follows the scene's perspective: on each frame it is scaled to the height the clip's own objects
    have at the row it stands on (Motion.height_at), so an object far away (high in the frame) is small.
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
        factor = rng.uniform(*MILD["big"]) if mild else rng.uniform(2.5, 4.0)
        sprite = _scaled(sprite, factor * max(m.height, 4) / max(sprite.mask.shape[0], 1))
    h, w = sprite.mask.shape
    ys, xs = _track(kind, rng, m, b - a, (H, W), h, w, mild)
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
