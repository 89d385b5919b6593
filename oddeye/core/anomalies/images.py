"""Synthetic anomalies on a normal image: CutPaste and scar patches, DRAEM-style Perlin masks blending in a foreign
texture, local brightness / blur / colour changes, small foreign objects. Seeded; each returns the changed image
(same shape and dtype as the input) and the mask of the pixels it changed; every pixel outside the mask is left
exactly as it was.

    a = make_image_anomaly(image, seed=3)               # a kind drawn by the seed
    a = make_image_anomaly(image, "texture", seed=3)     # a.image, a.mask (H, W) bool, a.kind
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from oddeye.core.errors import InputError
from oddeye.core.synth._common import _smooth
from oddeye.core.synth.images import _draw_object

IMAGE_ANOMALIES = ("cutpaste", "scar", "texture", "brightness", "blur", "colour", "object")


@dataclass
class AnomalousImage:
    """image: the changed copy (shape and dtype of the input); mask (H, W) bool of the changed region; kind."""

    image: np.ndarray
    mask: np.ndarray
    kind: str


def check_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    """A uint8 (H, W) or (H, W, C) array of at least 16 x 16 px, else InputError."""
    a = np.asarray(image)
    if a.dtype != np.uint8 or a.ndim not in (2, 3) or min(a.shape[:2]) < 16:
        raise InputError(f"{name} must be a uint8 array (H, W) or (H, W, C) of at least 16 x 16 px, "
                         f"got {a.dtype} {a.shape}")
    return a


def perlin(shape: tuple[int, int], cells: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """2D Perlin gradient noise (H, W) float32 in about [-1, 1], with `cells` (rows, cols) lattice cells."""
    H, W = shape
    ry, rx = max(int(cells[0]), 1), max(int(cells[1]), 1)
    gy, gx = np.arange(H) * ry / H, np.arange(W) * rx / W
    yi, xi = gy.astype(np.int64), gx.astype(np.int64)
    fy, fx = (gy - yi)[:, None], (gx - xi)[None, :]
    ang = rng.uniform(0, 2 * np.pi, (ry + 1, rx + 1))
    grad = np.stack([np.cos(ang), np.sin(ang)], axis=-1)

    def corner(oy: int, ox: int) -> np.ndarray:
        g = grad[np.ix_(yi + oy, xi + ox)]
        return g[..., 0] * (fy - oy) + g[..., 1] * (fx - ox)

    def fade(t: np.ndarray) -> np.ndarray:
        return t * t * t * (t * (6 * t - 15) + 10)

    u, v = fade(fx), fade(fy)
    top = corner(0, 0) + u * (corner(0, 1) - corner(0, 0))
    bottom = corner(1, 0) + u * (corner(1, 1) - corner(1, 0))
    return (np.sqrt(2.0) * (top + v * (bottom - top))).astype(np.float32)


def region(rng: np.random.Generator, shape: tuple[int, int], size: float, irregular: bool = True) -> np.ndarray:
    """A bool (H, W) blob of diameter ~ size * min(H, W) at a random place: a rotated ellipse, cut by a Perlin
    mask (DRAEM style) when `irregular`; never empty."""
    H, W = shape
    s = max(size * min(H, W), 3.0)
    m = np.zeros((H, W), np.uint8)
    c = (int(rng.uniform(0.1, 0.9) * W), int(rng.uniform(0.1, 0.9) * H))
    axes = (max(int(s / 2), 1), max(int(s / 2 * rng.uniform(0.4, 1.0)), 1))
    cv2.ellipse(m, c, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    ell = m.astype(bool)
    if irregular:
        cells = max(1, int(round(min(H, W) / max(s / 2, 2.0))))
        blob = ell & (perlin((H, W), (cells, cells), rng) > rng.uniform(-0.1, 0.2))
        if blob.sum() >= 0.25 * ell.sum():
            return blob
    return ell


def _blend(img: np.ndarray, new: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """img (H, W, C) float32 with `new` blended in by weight (H, W) in [0, 1]; (result uint8-ready, mask)."""
    mask = weight > 0
    out = img.copy()
    w = weight[mask][:, None]
    out[mask] = (1 - w) * img[mask] + w * new[mask]
    return out, mask


def _soft(mask: np.ndarray, size_px: float) -> np.ndarray:
    """Weights (H, W) in [0, 1]: the mask with its edge feathered inwards (zero outside the mask)."""
    sigma = max(size_px / 8, 0.5)
    w = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigma)
    w = np.clip(2 * w, 0, 1)
    return np.where(mask, np.maximum(w, 0.2), 0.0).astype(np.float32)


def _box(rng: np.random.Generator, shape: tuple[int, int], h: int, w: int) -> tuple[int, int]:
    """A random top-left (y, x) of an h x w box inside shape (H, W)."""
    return int(rng.integers(0, shape[0] - h + 1)), int(rng.integers(0, shape[1] - w + 1))


def _jitter(rng: np.random.Generator, patch: np.ndarray, strength: float) -> np.ndarray:
    """CutPaste's colour jitter: patch (h, w, C) float32 times a gain and plus an offset, per channel."""
    c = patch.shape[2]
    gain = 1 + strength * rng.uniform(-0.3, 0.3, c if c == 3 else 1)
    return patch * gain + strength * rng.uniform(-25, 25, c if c == 3 else 1)


def cutpaste(rng: np.random.Generator, img: np.ndarray, size: float, strength: float) -> tuple[np.ndarray, np.ndarray]:
    """CutPaste: a rectangle of the image (area ~ size^2, aspect 0.3-3.3), colour-jittered, pasted elsewhere."""
    H, W = img.shape[:2]
    area = (size * min(H, W)) ** 2
    aspect = float(np.exp(rng.uniform(np.log(0.3), np.log(3.3))))
    h = int(np.clip(np.sqrt(area * aspect), 2, H - 1))
    w = int(np.clip(np.sqrt(area / aspect), 2, W - 1))
    (y0, x0), (y1, x1) = _box(rng, (H, W), h, w), _box(rng, (H, W), h, w)
    patch = _jitter(rng, img[y0:y0 + h, x0:x0 + w], strength)
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    new = img.copy()
    new[y1:y1 + h, x1:x1 + w] = patch
    mask = np.zeros((H, W), bool)
    mask[y1:y1 + h, x1:x1 + w] = True
    return new, mask


def scar(rng: np.random.Generator, img: np.ndarray, size: float, strength: float) -> tuple[np.ndarray, np.ndarray]:
    """CutPaste-scar: a thin long strip of the image (2-6 % of the side wide), jittered, rotated, pasted elsewhere."""
    H, W = img.shape[:2]
    s = min(H, W)
    length = int(np.clip(size * s * rng.uniform(1.0, 2.0), 4, s - 2))
    width = int(np.clip(rng.uniform(0.02, 0.06) * s, 2, length))
    y0, x0 = _box(rng, (H, W), width, length)
    strip = _jitter(rng, img[y0:y0 + width, x0:x0 + length], strength)
    cy, cx = rng.uniform(0.15, 0.85) * H, rng.uniform(0.15, 0.85) * W
    rot = cv2.getRotationMatrix2D((length / 2, width / 2), float(rng.uniform(-90, 90)), 1.0)
    rot[:, 2] += (cx - length / 2, cy - width / 2)
    new_full = cv2.warpAffine(strip.astype(np.float32), rot, (W, H), flags=cv2.INTER_LINEAR)
    inside = cv2.warpAffine(np.ones((width, length), np.uint8), rot, (W, H), flags=cv2.INTER_NEAREST) > 0
    new = img.copy()
    new[inside] = new_full.reshape(H, W, -1)[inside]
    return new, inside


def texture(rng: np.random.Generator, shape: tuple[int, int], channels: int) -> np.ndarray:
    """A procedural foreign texture (H, W, C) float32 in 0-255: stripes, checks, Perlin marble or speckle."""
    H, W = shape
    yy, xx = np.mgrid[:H, :W].astype(np.float32)
    kind = int(rng.integers(4))
    period = rng.uniform(3, 12)
    if kind == 0:
        a = rng.uniform(0, np.pi)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * (np.cos(a) * xx + np.sin(a) * yy) / period)
    elif kind == 1:
        t = ((xx // period + yy // period) % 2).astype(np.float32)
    elif kind == 2:
        n = perlin((H, W), (max(H // 16, 1), max(W // 16, 1)), rng)
        t = 0.5 + 0.5 * np.sin(xx / period + 6 * n)
    else:
        t = (_smooth(rng, (H, W), max(min(H, W) // 4, 2)) > 0.5).astype(np.float32)
    lo, hi = rng.uniform(0, 255, channels), rng.uniform(0, 255, channels)
    return (lo + (hi - lo) * t[..., None]).astype(np.float32)


def draem(rng: np.random.Generator, img: np.ndarray, size: float, strength: float) -> tuple[np.ndarray, np.ndarray]:
    """DRAEM: a Perlin-noise mask in which a foreign texture is blended with opacity 0.2-1 (by strength)."""
    mask = region(rng, img.shape[:2], size)
    beta = 0.2 + 0.8 * strength
    return _blend(img, texture(rng, img.shape[:2], img.shape[2]), np.where(mask, beta, 0.0))


def brightness(rng: np.random.Generator, img: np.ndarray, size: float, strength: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """A region made brighter or darker by 8-50 % (by strength), with a feathered edge."""
    mask = region(rng, img.shape[:2], size)
    gain = 1 + rng.choice([-1, 1]) * (0.08 + 0.42 * strength)
    return _blend(img, img * gain, _soft(mask, size * min(img.shape[:2])))


def blur(rng: np.random.Generator, img: np.ndarray, size: float, strength: float) -> tuple[np.ndarray, np.ndarray]:
    """A region Gaussian-blurred with sigma 1-5 px (by strength), with a feathered edge."""
    mask = region(rng, img.shape[:2], size)
    sigma = 1 + 4 * strength
    blurred = cv2.GaussianBlur(img, (0, 0), sigma).reshape(img.shape)
    return _blend(img, blurred, _soft(mask, size * min(img.shape[:2])))


def colour(rng: np.random.Generator, img: np.ndarray, size: float, strength: float) -> tuple[np.ndarray, np.ndarray]:
    """A region with its hue turned by 15-90 degrees and saturation scaled (colour), or its gamma changed (gray)."""
    mask = region(rng, img.shape[:2], size)
    if img.shape[2] == 3:
        hsv = cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
        hsv[..., 0] = (hsv[..., 0] + rng.choice([-1, 1]) * (7.5 + 37.5 * strength)) % 180
        hsv[..., 1] = np.clip(hsv[..., 1] * (1 + strength) + 40 * strength, 0, 255)
        new = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    else:
        gamma = float(np.exp(rng.choice([-1, 1]) * (0.2 + 0.8 * strength)))
        new = 255.0 * (np.clip(img, 0, 255) / 255.0) ** gamma
    return _blend(img, new, _soft(mask, size * min(img.shape[:2])))


def foreign_object(rng: np.random.Generator, img: np.ndarray, size: float, strength: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """A small foreign object (a box or disc of random colour, oddeye.core.synth's), opacity 0.4-1 (by strength)."""
    H, W = img.shape[:2]
    canvas = np.zeros((H, W, 3), np.float32)
    mask = np.zeros((H, W), bool)
    _draw_object(rng, canvas, mask, (rng.uniform(0.1, 0.9) * W, rng.uniform(0.1, 0.9) * H), int(size * 8 * min(H, W)))
    if not mask.any():  # the object fell outside: a disc in the middle
        mask = region(rng, (H, W), size, irregular=False)
        canvas[mask] = rng.uniform(20, 240, 3)
    new = canvas if img.shape[2] == 3 else canvas.mean(axis=2, keepdims=True)
    return _blend(img, new, np.where(mask, 0.4 + 0.6 * strength, 0.0))


GENERATORS: dict[str, Callable[[np.random.Generator, np.ndarray, float, float], tuple[np.ndarray, np.ndarray]]] = {
    "cutpaste": cutpaste, "scar": scar, "texture": draem, "brightness": brightness, "blur": blur, "colour": colour,
    "object": foreign_object,
}


def make_image_anomaly(image: np.ndarray, kind: str | None = None, seed: int = 0,
                       size: tuple[float, float] = (0.05, 0.2), strength: tuple[float, float] = (0.2, 1.0)
                       ) -> AnomalousImage:
    """One seeded anomaly of `kind` (None: drawn by the seed) on a uint8 image (H, W[, C]).

    size: the anomaly's extent as a share of min(H, W), drawn from the range; strength in [0, 1] (how far it
    departs from the image: jitter, opacity, gain, blur, hue turn), drawn from the range. The mask marks the
    pixels it changed; all others are left exactly as they were.
    """
    img = check_image(image)
    if kind is not None and kind not in GENERATORS:
        raise InputError(f"unknown image anomaly {kind!r}", f"choose from {', '.join(IMAGE_ANOMALIES)}")
    if not (0 < size[0] <= size[1] <= 1 and 0 <= strength[0] <= strength[1] <= 1):
        raise InputError(f"size must satisfy 0 < lo <= hi <= 1 and strength 0 <= lo <= hi <= 1, got {size}, {strength}")
    rng = np.random.default_rng([seed, 50])
    kind = kind or IMAGE_ANOMALIES[int(rng.integers(len(IMAGE_ANOMALIES)))]
    work = img.reshape(img.shape[0], img.shape[1], -1).astype(np.float32)
    new, mask = GENERATORS[kind](rng, work, float(rng.uniform(*size)), float(rng.uniform(*strength)))
    out = img.copy()
    out[mask] = np.clip(np.rint(new[mask]), 0, 255).astype(np.uint8).reshape(out[mask].shape)
    return AnomalousImage(image=out, mask=mask, kind=kind)


def make_image_anomalies(images: list[np.ndarray], seed: int = 0, kinds: tuple[str, ...] = IMAGE_ANOMALIES,
                         **ranges: tuple[float, float]) -> list[AnomalousImage]:
    """One anomaly per image, the kinds taken in turn (a balanced mix), each seeded by (seed, index)."""
    if not kinds:
        raise InputError("kinds must name at least one image anomaly", f"choose from {', '.join(IMAGE_ANOMALIES)}")
    return [make_image_anomaly(im, kinds[i % len(kinds)], seed=seed * 100_003 + i, **ranges)
            for i, im in enumerate(images)]
