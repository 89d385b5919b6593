"""Seeded, small, fast scene generators for tests and `oddeye demo` (never for quoted accuracy).

(a) make_video: walkers on a walkway with an injected anomaly; (b) make_image_set, make_pair,
make_route: textured surfaces with defects, reference/query pairs and patrol routes with changes;
(c) make_point_cloud: sampled surfaces with dents and bulges. Same seed, same output.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from oddeye.core.errors import InputError

VIDEO_ANOMALIES = ("fast", "big", "wrong_place")
DEFECTS = ("scratch", "blob", "crack", "missing")
SHAPES = ("sphere", "box", "plate")


@dataclass
class SynthVideo:
    """frames (T, H, W) uint8 gray, labels (T,) int 0/1, masks (T, H, W) bool of the abnormal object, fps."""

    frames: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    fps: float


@dataclass
class SynthImage:
    """image (H, W, 3) uint8 RGB, mask (H, W) bool of the defect, label 0/1, kind ("good" or the defect)."""

    image: np.ndarray
    mask: np.ndarray
    label: int
    kind: str = "good"


@dataclass
class SynthPair:
    """reference, query (H, W, 3) uint8; mask (H, W) bool and boxes (K, 4) x0,y0,x1,y1 of changes in the query;
    homography (3, 3) mapping reference pixel coordinates to query pixel coordinates."""

    reference: np.ndarray
    query: np.ndarray
    mask: np.ndarray
    boxes: np.ndarray
    homography: np.ndarray


@dataclass
class SynthRoute:
    """reference, query (T, H, W, 3) uint8 runs along one route; labels (T,) and masks (T, H, W) of the query."""

    reference: np.ndarray
    query: np.ndarray
    labels: np.ndarray
    masks: np.ndarray


@dataclass
class SynthCloud:
    """points (N, 3) float32, labels (N,) int 0/1 (displaced by the defect), normals (N, 3) float32."""

    points: np.ndarray
    labels: np.ndarray
    normals: np.ndarray | None = None


# ---------------------------------------------------------------------------------------------- helpers

def _check_size(size: Sequence[int], name: str = "size", lo: int = 32) -> tuple[int, int]:
    """(H, W) as ints, each >= lo, else InputError."""
    if len(size) != 2 or min(int(size[0]), int(size[1])) < lo:
        raise InputError(f"{name} must be (H, W) with both >= {lo}, got {tuple(size)}")
    return int(size[0]), int(size[1])


def _smooth(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Smooth noise in [0, 1] of `shape`: a (cells x cells) random grid upsampled bicubically."""
    grid = rng.random((cells, cells)).astype(np.float32)
    out = cv2.resize(grid, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
    return np.clip(out, 0.0, 1.0)


def _ellipse(h: int, w: int) -> np.ndarray:
    """Bool (h, w) filled ellipse."""
    yy, xx = np.mgrid[:h, :w]
    return ((yy - (h - 1) / 2) / (h / 2)) ** 2 + ((xx - (w - 1) / 2) / (w / 2)) ** 2 <= 1.0


def _paste(canvas: np.ndarray, values: np.ndarray, shape_mask: np.ndarray, top: int, left: int,
           mask_out: np.ndarray | None = None) -> None:
    """Paste sprite `values` where `shape_mask` holds at (top, left), clipped; optionally mark mask_out."""
    h, w = shape_mask.shape
    H, W = canvas.shape[:2]
    r0, c0, r1, c1 = max(top, 0), max(left, 0), min(top + h, H), min(left + w, W)
    if r1 <= r0 or c1 <= c0:
        return
    sm = shape_mask[r0 - top:r1 - top, c0 - left:c1 - left]
    region = canvas[r0:r1, c0:c1]
    region[sm] = values[r0 - top:r1 - top, c0 - left:c1 - left][sm]
    if mask_out is not None:
        mask_out[r0:r1, c0:c1] |= sm


def _bounce(p0: float, v: float, t: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Positions p0 + v t reflected into [lo, hi] (a triangle wave)."""
    span = max(hi - lo, 1e-6)
    u = np.mod(p0 - lo + v * t, 2 * span)
    return lo + np.where(u <= span, u, 2 * span - u)


# ---------------------------------------------------------------------------------------------- (a) video

def _walker_sprite(rng: np.random.Generator, h: int, w: int, base: float) -> tuple[np.ndarray, np.ndarray]:
    """A small upright textured figure: body ellipse, slightly brighter head."""
    m = _ellipse(h, w)
    vals = base + rng.normal(0, 7, (h, w))
    vals[: max(h // 4, 2)] += 25
    return vals.astype(np.float32), m


def make_video(seed: int = 0, n_frames: int = 120, size: tuple[int, int] = (120, 160), n_walkers: int = 4,
               anomaly: str | None = "fast", anomaly_span: tuple[int, int] = (60, 100)) -> SynthVideo:
    """Walkers crossing a walkway on a static textured scene; `anomaly` is injected during anomaly_span.

    "fast": a walker-size figure 5x faster; "big": a cart-size object; "wrong_place": a walker on the grass.
    Returns frames (T, H, W) uint8, labels (T,) (1 where the abnormal object is in view), masks (T, H, W).
    """
    H, W = _check_size(size)
    if n_frames < 1:
        raise InputError(f"n_frames must be >= 1, got {n_frames}")
    if anomaly is not None and anomaly not in VIDEO_ANOMALIES:
        raise InputError(f"anomaly must be one of {VIDEO_ANOMALIES} or None, got {anomaly!r}")
    a0, a1 = int(anomaly_span[0]), int(anomaly_span[1])
    if anomaly is not None and not (0 <= a0 < a1 <= n_frames):
        raise InputError(f"anomaly_span must satisfy 0 <= start < end <= n_frames={n_frames}, got {anomaly_span}")
    rng = np.random.default_rng([seed, 0])
    band0, band1 = int(0.35 * H), int(0.8 * H)
    bg = 80 + 30 * _smooth(rng, (H, W), 12) + rng.normal(0, 6, (H, W)).astype(np.float32)
    walk = 160 + 18 * _smooth(rng, (H, W), 6)
    walk[:, ::12] -= 14  # paving joints
    bg[band0:band1] = walk[band0:band1]
    hw, ww = max(8, round(0.13 * H)), max(4, round(0.05 * H))
    t = np.arange(n_frames, dtype=np.float64)
    frames = np.repeat(bg[None].astype(np.float32), n_frames, axis=0)
    for _ in range(max(int(n_walkers), 0)):
        vals, m = _walker_sprite(rng, hw, ww, rng.uniform(35, 75))
        y0 = rng.uniform(band0, band1 - hw)
        x0, v = rng.uniform(0, W), rng.uniform(0.8, 1.2) * rng.choice([-1, 1])
        xs = np.mod(x0 + v * t, W + ww) - ww
        ys = y0 + 0.8 * np.sin(0.5 * t + rng.uniform(0, 6.3))
        for i in range(n_frames):
            _paste(frames[i], vals, m, int(round(ys[i])), int(round(xs[i])))
    masks = np.zeros((n_frames, H, W), dtype=bool)
    if anomaly is not None:
        arng = np.random.default_rng([seed, 2])
        if anomaly == "big":
            h, w = int(0.32 * H), int(0.3 * W)
            vals = (55 + 25 * (np.indices((h, w))[1] % 8 < 4) + arng.normal(0, 5, (h, w))).astype(np.float32)
            m, speed = np.ones((h, w), dtype=bool), 1.0
            y = arng.uniform(band0, max(band1 - h, band0 + 1))
        else:
            h, w = hw, ww
            vals, m = _walker_sprite(arng, h, w, arng.uniform(30, 60))
            speed = 5.0 if anomaly == "fast" else 1.0
            y = arng.uniform(band0, band1 - h) if anomaly == "fast" else arng.uniform(1, max(band0 - h - 2, 2))
        ts = np.arange(a1 - a0, dtype=np.float64)
        xs = _bounce(arng.uniform(0, W - w), speed * arng.choice([-1, 1]), ts, 0, W - w)
        for k, i in enumerate(range(a0, a1)):
            _paste(frames[i], vals, m, int(round(y)), int(round(xs[k])), masks[i])
    frames += np.random.default_rng([seed, 1]).normal(0, 2.0, frames.shape).astype(np.float32)
    out = np.clip(frames, 0, 255).astype(np.uint8)
    labels = masks.any(axis=(1, 2)).astype(np.int64)
    return SynthVideo(frames=out, labels=labels, masks=masks, fps=25.0)


def write_frames(frames: np.ndarray, directory: str | Path, ext: str = ".png") -> Path:
    """Write frames (T, H, W[, 3]) uint8 as 000000<ext>, 000001<ext>, ... into `directory`; returns it."""
    from oddeye.core.imageio import write_image

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    if not ext.startswith("."):
        ext = "." + ext
    for i, f in enumerate(frames):
        write_image(d / f"{i:06d}{ext}", f)
    return d


def write_video_file(frames: np.ndarray, path: str | Path, fps: float = 25.0) -> Path:
    """Encode frames (T, H, W[, 3]) uint8 into an mp4 (h264, else mpeg4; yuv420p) with PyAV; returns the path."""
    import av
    from fractions import Fraction

    frames = np.asarray(frames)
    if frames.ndim not in (3, 4) or frames.shape[0] == 0:
        raise InputError(f"frames must be (T, H, W) or (T, H, W, 3) with T >= 1, got {frames.shape}")
    h, w = frames.shape[1] - frames.shape[1] % 2, frames.shape[2] - frames.shape[2] % 2
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    fmt = "gray" if frames.ndim == 3 else "rgb24"
    with av.open(str(p), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "18", "preset": "veryfast"}
        for f in frames:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f[:h, :w]), format=fmt).reformat(format="yuv420p")
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return p


# ---------------------------------------------------------------------------------------------- (b) images

def _surface(rng: np.random.Generator, size: tuple[int, int], tint: np.ndarray) -> np.ndarray:
    """A tile-like textured surface (H, W, 3) float32: smooth noise + a fine woven pattern."""
    H, W = size
    yy, xx = np.mgrid[:H, :W].astype(np.float32)
    ph = rng.uniform(0, 2 * np.pi, 2)
    weave = np.sin(2 * np.pi * xx / 6 + ph[0]) * np.sin(2 * np.pi * yy / 6 + ph[1])
    lum = 0.75 + 0.1 * _smooth(rng, size, 5) + 0.05 * weave + rng.normal(0, 0.015, size).astype(np.float32)
    return lum[..., None] * tint[None, None, :]


def _random_walk_line(rng: np.random.Generator, size: tuple[int, int], steps: int, jitter: float) -> np.ndarray:
    """(steps, 2) int32 points (x, y) of a wandering line inside the central region of `size`."""
    H, W = size
    p = np.array([rng.uniform(0.25, 0.75) * W, rng.uniform(0.25, 0.75) * H])
    ang = rng.uniform(0, 2 * np.pi)
    pts = []
    for _ in range(steps):
        ang += rng.normal(0, jitter)
        p = p + 3.0 * np.array([np.cos(ang), np.sin(ang)])
        p = np.clip(p, 2, [W - 3, H - 3])
        pts.append(p.copy())
    return np.array(pts, dtype=np.int32)


def _defect(rng: np.random.Generator, img: np.ndarray, kind: str) -> np.ndarray:
    """Draw defect `kind` into img (H, W, 3) float32 in place; returns its bool mask."""
    H, W = img.shape[:2]
    m = np.zeros((H, W), dtype=np.uint8)
    s = min(H, W)
    if kind == "scratch":
        pts = _random_walk_line(rng, (H, W), max(s // 6, 6), 0.05)
        cv2.polylines(m, [pts], False, 1, thickness=max(1, s // 100))
        colour = np.array([235.0, 235.0, 225.0])
    elif kind == "crack":
        pts = _random_walk_line(rng, (H, W), max(s // 5, 8), 0.6)
        cv2.polylines(m, [pts], False, 1, thickness=max(2, s // 60))
        colour = np.array([25.0, 20.0, 20.0])
    elif kind == "blob":
        c = (int(rng.uniform(0.25, 0.75) * W), int(rng.uniform(0.25, 0.75) * H))
        axes = (int(rng.uniform(0.05, 0.1) * s), int(rng.uniform(0.04, 0.08) * s))
        cv2.ellipse(m, c, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        colour = np.array([120.0, 60.0, 40.0])
    else:  # missing patch: material gone, darker flat under-layer
        h, w = int(rng.uniform(0.1, 0.18) * H), int(rng.uniform(0.1, 0.18) * W)
        y, x = int(rng.uniform(0.2, 0.8) * H - h / 2), int(rng.uniform(0.2, 0.8) * W - w / 2)
        m[y:y + h, x:x + w] = 1
        colour = np.array([70.0, 75.0, 80.0])
    mask = m.astype(bool)
    img[mask] = colour + rng.normal(0, 4, (int(mask.sum()), 3))
    return mask


def make_image_set(seed: int = 0, n_normal: int = 20, n_defect: int = 10,
                   size: tuple[int, int] = (128, 128)) -> list[SynthImage]:
    """Textured tile images: n_normal good ones, then n_defect with a scratch, blob, crack or missing patch."""
    H, W = _check_size(size)
    if n_normal < 0 or n_defect < 0 or n_normal + n_defect == 0:
        raise InputError(f"n_normal and n_defect must be >= 0 and not both 0, got {n_normal}, {n_defect}")
    rng = np.random.default_rng([seed, 10])
    tint = np.array([200.0, 175.0, 140.0]) * rng.uniform(0.9, 1.1, 3)
    out = []
    for i in range(n_normal + n_defect):
        img = _surface(rng, (H, W), tint)
        mask = np.zeros((H, W), dtype=bool)
        kind = "good"
        if i >= n_normal:
            kind = DEFECTS[(i - n_normal) % len(DEFECTS)]
            mask = _defect(rng, img, kind)
        out.append(SynthImage(np.clip(img, 0, 255).astype(np.uint8), mask, int(mask.any()), kind))
    return out


def _scene_canvas(rng: np.random.Generator, size: tuple[int, int], n_objects: int) -> np.ndarray:
    """A textured scene (H, W, 3) float32 with n_objects coloured boxes and discs as landmarks."""
    H, W = size
    img = _surface(rng, (H, W), np.array([150.0, 165.0, 150.0]) * rng.uniform(0.9, 1.1, 3))
    img *= (0.8 + 0.4 * _smooth(rng, (H, W), 4))[..., None]
    s = min(H, W)
    for _ in range(n_objects):
        _draw_object(rng, img, None, (rng.uniform(0, W), rng.uniform(0, H)), s)
    return img


def _draw_object(rng: np.random.Generator, img: np.ndarray, mask: np.ndarray | None,
                 centre: tuple[float, float], s: int) -> None:
    """A box or disc of random colour and size ~ s/12 at centre (x, y); marks `mask` where drawn."""
    m = np.zeros(img.shape[:2], dtype=np.uint8)
    r = int(rng.uniform(0.05, 0.09) * s)
    cx, cy = int(centre[0]), int(centre[1])
    if rng.random() < 0.5:
        cv2.rectangle(m, (cx - r, cy - r), (cx + r, cy + int(r * rng.uniform(0.6, 1.4))), 1, -1)
    else:
        cv2.circle(m, (cx, cy), r, 1, -1)
    sel = m.astype(bool)
    img[sel] = rng.uniform(20, 240, 3) + rng.normal(0, 5, (int(sel.sum()), 3))
    if mask is not None:
        mask |= sel


def _random_homography(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A mild random homography (3, 3) about the image centre: rotation, scale, shift, small perspective."""
    H, W = size
    a, sc = np.deg2rad(rng.uniform(-4, 4)), rng.uniform(0.96, 1.04)
    c, s = np.cos(a) * sc, np.sin(a) * sc
    tx, ty = rng.uniform(-0.04, 0.04) * W, rng.uniform(-0.04, 0.04) * H
    A = np.array([[c, -s, 0], [s, c, 0], [rng.normal(0, 2e-5), rng.normal(0, 2e-5), 1.0]])
    T0 = np.array([[1, 0, -W / 2], [0, 1, -H / 2], [0, 0, 1.0]])
    T1 = np.array([[1, 0, W / 2 + tx], [0, 1, H / 2 + ty], [0, 0, 1.0]])
    Hm = T1 @ A @ T0
    return Hm / Hm[2, 2]


def make_pair(seed: int = 0, size: tuple[int, int] = (256, 256), n_changes: int = 3,
              warp: bool = False) -> SynthPair:
    """A reference/query pair of one scene; the query has n_changes objects inserted or removed.

    With warp, the query is seen through a random homography H (reference -> query pixels, returned);
    mask and boxes are in query pixels.
    """
    H, W = _check_size(size)
    if n_changes < 0:
        raise InputError(f"n_changes must be >= 0, got {n_changes}")
    rng = np.random.default_rng([seed, 20])
    pad = int(0.15 * max(H, W))
    big = (H + 2 * pad, W + 2 * pad)
    ref = _scene_canvas(rng, big, 10)
    qry = ref.copy()
    s = min(H, W)
    change_masks = []
    for _ in range(n_changes):
        m = np.zeros(big, dtype=bool)
        centre = (pad + rng.uniform(0.15, 0.85) * W, pad + rng.uniform(0.15, 0.85) * H)
        if rng.random() < 0.5:  # inserted in the query
            _draw_object(rng, qry, m, centre, s)
        else:  # present in the reference only: removed from the query
            _draw_object(rng, ref, m, centre, s)
        change_masks.append(m)
    Hm = _random_homography(rng, (H, W)) if warp else np.eye(3)
    shift = np.array([[1, 0, -pad], [0, 1, -pad], [0, 0, 1.0]])
    M_ref, M_q = shift, Hm @ shift
    reference = cv2.warpPerspective(ref, M_ref, (W, H), flags=cv2.INTER_LINEAR)
    gain = rng.uniform(0.95, 1.05)
    query = cv2.warpPerspective(qry, M_q, (W, H), flags=cv2.INTER_LINEAR) * gain
    query += rng.normal(0, 2.0, query.shape).astype(np.float32)
    mask = np.zeros((H, W), dtype=bool)
    boxes = []
    for m in change_masks:
        wm = cv2.warpPerspective(m.astype(np.uint8), M_q, (W, H), flags=cv2.INTER_NEAREST).astype(bool)
        if wm.any():
            ys, xs = np.nonzero(wm)
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            mask |= wm
    return SynthPair(reference=np.clip(reference, 0, 255).astype(np.uint8),
                     query=np.clip(query, 0, 255).astype(np.uint8), mask=mask,
                     boxes=np.array(boxes, dtype=np.float64).reshape(-1, 4), homography=Hm)


def make_route(seed: int = 0, n_frames: int = 60, size: tuple[int, int] = (120, 160),
               n_objects: int = 2) -> SynthRoute:
    """A camera sliding along a wide panorama: a reference run and a query run with n_objects inserted."""
    H, W = _check_size(size)
    if n_frames < 1 or n_objects < 0:
        raise InputError(f"n_frames must be >= 1 and n_objects >= 0, got {n_frames}, {n_objects}")
    rng = np.random.default_rng([seed, 30])
    step, my = max(2, W // 8, -(-3 * W // n_frames)), 6  # the route spans >= ~3 frame widths
    pano_w = W + step * (n_frames - 1) + 2 * my
    pano = _scene_canvas(rng, (H + 2 * my, pano_w), max(pano_w // 40, 4))
    qpano, qmask = pano.copy(), np.zeros(pano.shape[:2], dtype=bool)
    for k in range(n_objects):  # spread the objects along the route
        cx = my + W / 2 + (k + 0.5) / n_objects * step * (n_frames - 1) + rng.uniform(-0.2, 0.2) * W
        _draw_object(rng, qpano, qmask, (cx, my + rng.uniform(0.25, 0.75) * H), min(H, W))
    ref = np.empty((n_frames, H, W, 3), dtype=np.uint8)
    qry = np.empty_like(ref)
    masks = np.zeros((n_frames, H, W), dtype=bool)
    gain = rng.uniform(0.93, 1.07)
    dx, dy = rng.integers(-2, 3, n_frames), rng.integers(-2, 3, n_frames)
    noise = np.random.default_rng([seed, 31])
    for i in range(n_frames):
        x = my + i * step
        ref[i] = np.clip(pano[my:my + H, x:x + W], 0, 255)
        qx, qy = x + dx[i], my + dy[i]
        q = qpano[qy:qy + H, qx:qx + W] * gain + noise.normal(0, 2.0, (H, W, 3))
        qry[i] = np.clip(q, 0, 255)
        masks[i] = qmask[qy:qy + H, qx:qx + W]
    return SynthRoute(reference=ref, query=qry, labels=masks.any(axis=(1, 2)).astype(np.int64), masks=masks)


# ---------------------------------------------------------------------------------------------- (c) points

def _sample_surface(rng: np.random.Generator, n: int, shape: str) -> tuple[np.ndarray, np.ndarray]:
    """n points (N, 3) and unit normals (N, 3) on a sphere (r 0.5), a 1 x 0.7 x 0.4 box or a wavy plate."""
    if shape == "sphere":
        n_ = rng.normal(size=(n, 3))
        n_ /= np.linalg.norm(n_, axis=1, keepdims=True)
        return 0.5 * n_, n_
    if shape == "plate":
        xy = rng.uniform(-0.5, 0.5, (n, 2))
        a, k = 0.02, 2 * np.pi
        z = a * np.sin(k * xy[:, 0]) * np.cos(k * xy[:, 1])
        nrm = np.stack([-a * k * np.cos(k * xy[:, 0]) * np.cos(k * xy[:, 1]),
                        a * k * np.sin(k * xy[:, 0]) * np.sin(k * xy[:, 1]), np.ones(n)], axis=1)
        return np.column_stack([xy, z]), nrm / np.linalg.norm(nrm, axis=1, keepdims=True)
    half = np.array([0.5, 0.35, 0.2])
    areas = np.array([half[1] * half[2], half[0] * half[2], half[0] * half[1]])
    axis = rng.choice(3, size=n, p=areas / areas.sum())
    sign = rng.choice([-1.0, 1.0], size=n)
    pts = rng.uniform(-1, 1, (n, 3)) * half
    pts[np.arange(n), axis] = sign * half[axis]
    nrm = np.zeros((n, 3))
    nrm[np.arange(n), axis] = sign
    return pts, nrm


def make_point_cloud(seed: int = 0, n_points: int = 4000, shape: str = "sphere", defect: str | None = None,
                     defect_size: float = 0.05) -> SynthCloud:
    """Points sampled on a surface (unit scale) with an optional dent or bulge of depth `defect_size`.

    The defect displaces points within radius 0.15 along their normals with a smooth bump; labels mark the
    points moved by more than 20% of defect_size. Sensor noise sigma 0.002 is added to every point.
    """
    if shape not in SHAPES:
        raise InputError(f"shape must be one of {SHAPES}, got {shape!r}")
    if defect not in (None, "dent", "bulge"):
        raise InputError(f"defect must be None, 'dent' or 'bulge', got {defect!r}")
    if n_points < 1 or not defect_size > 0:
        raise InputError(f"n_points must be >= 1 and defect_size > 0, got {n_points}, {defect_size}")
    rng = np.random.default_rng([seed, 40])
    pts, nrm = _sample_surface(rng, int(n_points), shape)
    labels = np.zeros(len(pts), dtype=np.int64)
    drng = np.random.default_rng([seed, 41])
    if defect is not None:
        ok = np.flatnonzero(np.abs(pts[:, :2]).max(axis=1) < 0.3) if shape == "plate" else np.arange(len(pts))
        centre = pts[drng.choice(ok)]
        r = np.linalg.norm(pts - centre, axis=1) / 0.15
        bump = np.where(r < 1, (1 - r**2) ** 2, 0.0) * defect_size
        pts = pts + (1 if defect == "bulge" else -1) * bump[:, None] * nrm
        labels = (bump > 0.2 * defect_size).astype(np.int64)
    pts = pts + np.random.default_rng([seed, 42]).normal(0, 0.002, pts.shape)
    return SynthCloud(points=pts.astype(np.float32), labels=labels, normals=nrm.astype(np.float32))
