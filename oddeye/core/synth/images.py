"""Textured surfaces with defects, reference/query pairs and patrol routes with changes."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from oddeye.core.errors import InputError
from oddeye.core.synth._common import _check_size, _smooth

DEFECTS = ("scratch", "blob", "crack", "missing")


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
