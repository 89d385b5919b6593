"""Synthetic changes on a reference/query pair of the same place: objects inserted into or removed from the query,
and local changes (brightness, blur, colour, texture), optionally after a small warp of the whole query (the robot
stands a little differently: a nuisance, not a change). Seeded; returns the query (shape and dtype of the input)
and the mask of what changed in it.

    c = make_patrol_change(reference, query, "insert", seed=2, warp=True)   # c.query, c.mask, c.homography

The normal side of such pairs: `second_run` (another exposure, noise, a slight local displacement) and
`make_patrol_normal` (the same small warp as the change of the same seed, nothing changed).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from oddeye.core.anomalies.images import GENERATORS, check_image, foreign_object
from oddeye.core.errors import InputError
from oddeye.core.synth.images import _random_homography

PATROL_CHANGES = ("insert", "remove", "local")
LOCAL = ("brightness", "blur", "colour", "texture")


@dataclass
class PatrolChange:
    """query: the changed query (shape and dtype of the input); mask (H, W) bool of the change in its pixels;
    kind; homography (3, 3) from the input query's pixels to the returned one's (identity without warp)."""

    query: np.ndarray
    mask: np.ndarray
    kind: str
    homography: np.ndarray


def _salient(rng: np.random.Generator, img: np.ndarray, s: int, tries: int = 24) -> tuple[int, int]:
    """Top-left (y, x) of the s x s window with the most edges among `tries` random ones (likely an object)."""
    H, W = img.shape[:2]
    g = img.mean(axis=2) if img.ndim == 3 else img
    energy = np.abs(cv2.Sobel(g, cv2.CV_32F, 1, 0)) + np.abs(cv2.Sobel(g, cv2.CV_32F, 0, 1))
    best, best_e = (0, 0), -1.0
    for _ in range(tries):
        y, x = int(rng.integers(0, H - s + 1)), int(rng.integers(0, W - s + 1))
        e = float(energy[y:y + s, x:x + s].mean())
        if e > best_e:
            best, best_e = (y, x), e
    return best


def _ellipse_in(s: int) -> np.ndarray:
    m = np.zeros((s, s), np.uint8)
    cv2.ellipse(m, (s // 2, s // 2), (max(s // 2 - 1, 1), max(s // 2 - 1, 1)), 0, 0, 360, 1, -1)
    return m.astype(bool)


def insert(rng: np.random.Generator, ref: np.ndarray, qry: np.ndarray, size: float) -> tuple[np.ndarray, np.ndarray]:
    """An object that is not in the reference put into the query: cut from elsewhere in the reference (half the
    time) or drawn; (query float32 (H, W, C), mask)."""
    H, W = qry.shape[:2]
    if rng.random() < 0.5:
        return foreign_object(rng, qry, size, 1.0)
    s = int(np.clip(size * min(H, W), 4, min(H, W) - 1))
    y0, x0 = _salient(rng, ref, s)
    y1, x1 = int(rng.integers(0, H - s + 1)), int(rng.integers(0, W - s + 1))
    shape = _ellipse_in(s)
    mask = np.zeros((H, W), bool)
    mask[y1:y1 + s, x1:x1 + s] = shape
    new = qry.copy()
    new[y1:y1 + s, x1:x1 + s][shape] = ref[y0:y0 + s, x0:x0 + s][shape]
    return new, mask


def remove(rng: np.random.Generator, qry: np.ndarray, size: float) -> tuple[np.ndarray, np.ndarray]:
    """Something in the query taken away: its most edge-rich window of the size, inpainted from around it."""
    H, W = qry.shape[:2]
    s = int(np.clip(size * min(H, W), 4, min(H, W) - 1))
    y, x = _salient(rng, qry, s)
    mask = np.zeros((H, W), bool)
    mask[y:y + s, x:x + s] = _ellipse_in(s)
    src = np.clip(qry, 0, 255).astype(np.uint8)
    filled = cv2.inpaint(src if src.shape[2] == 3 else src[..., 0], mask.astype(np.uint8), max(3, s // 4),
                         cv2.INPAINT_TELEA)
    return filled.reshape(qry.shape).astype(np.float32), mask


def _warped(rng: np.random.Generator, img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`img` seen through a small random homography (borders reflected) and that homography (3, 3)."""
    H, W = img.shape[:2]
    hom = _random_homography(rng, (H, W))
    out = cv2.warpPerspective(img, hom, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return out.reshape(img.shape), hom


def second_run(image: np.ndarray, seed: int = 0, strength: float = 1.0) -> np.ndarray:
    """`image` uint8 (H, W[, C]) as a second run past the same place would see it, nothing changed: another exposure
    (gain 1 +- 0.1, offset +- 8, gamma 1 +- 0.1), a slight defocus (sigma up to 0.8 px), sensor noise (sigma up to 2
    grey levels) and a smooth displacement of up to 1.5 px (per 640 px of the longest side) that no homography
    explains (parallax, lens, rolling shutter); each scaled by `strength`; seeded, same shape."""
    img = check_image(image)
    rng = np.random.default_rng([seed, 71])
    H, W = img.shape[:2]
    gain, offset = 1 + strength * rng.uniform(-0.1, 0.1), strength * rng.uniform(-8, 8)
    gamma, sigma = 1 + strength * rng.uniform(-0.1, 0.1), strength * rng.uniform(0, 2)
    blur = strength * rng.uniform(0, 0.8)
    amp = strength * 1.5 * max(H, W) / 640
    shift = [cv2.resize(rng.uniform(-amp, amp, (4, 4)).astype(np.float32), (W, H), interpolation=cv2.INTER_CUBIC)
             for _ in range(2)]
    gx, gy = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    x = cv2.remap(img, gx + shift[0], gy + shift[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    x = x.reshape(img.shape).astype(np.float32)
    if blur > 0.05:
        x = cv2.GaussianBlur(x, (0, 0), blur).reshape(img.shape)
    x = 255.0 * (np.clip(x, 0, 255) / 255.0) ** gamma * gain + offset
    x += rng.normal(0, sigma, img.shape).astype(np.float32)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def make_patrol_normal(query: np.ndarray, seed: int = 0, warp: bool = True) -> PatrolChange:
    """The query of a NORMAL pair: `query` uint8 (H, W[, C]) seen through the same small random homography as
    make_patrol_change(reference, query, seed=seed, warp=True) uses (its kind drawn by the seed), nothing changed
    (an empty mask, kind "none")."""
    qry = check_image(query, "query")
    rng = np.random.default_rng([seed, 70])
    rng.integers(len(PATROL_CHANGES))  # the draw of the kind in make_patrol_change: the same homography follows
    out, hom = _warped(rng, qry) if warp else (qry.copy(), np.eye(3))
    return PatrolChange(query=out, mask=np.zeros(qry.shape[:2], bool), kind="none", homography=hom)


def make_patrol_change(reference: np.ndarray, query: np.ndarray, kind: str | None = None, seed: int = 0,
                       warp: bool = False, size: tuple[float, float] = (0.06, 0.18)) -> PatrolChange:
    """One seeded change of `kind` (None: drawn by the seed) in the query of a reference/query pair of one place,
    both uint8 (H, W[, C]) of the same shape. With warp, the query is first seen through a small random homography
    (returned; borders reflected), and the mask is in the warped query's pixels. size: the change's extent as a
    share of min(H, W)."""
    ref, qry = check_image(reference, "reference"), check_image(query, "query")
    if ref.shape != qry.shape:
        raise InputError(f"reference {ref.shape} and query {qry.shape} must have the same shape",
                         "resize one to the other first")
    if kind is not None and kind not in PATROL_CHANGES:
        raise InputError(f"unknown patrol change {kind!r}", f"choose from {', '.join(PATROL_CHANGES)}")
    if not 0 < size[0] <= size[1] <= 1:
        raise InputError(f"size must satisfy 0 < lo <= hi <= 1, got {size}")
    rng = np.random.default_rng([seed, 70])
    kind = kind or PATROL_CHANGES[int(rng.integers(len(PATROL_CHANGES)))]
    H, W = qry.shape[:2]
    base, hom = _warped(rng, qry) if warp else (qry, np.eye(3))
    work = base.reshape(H, W, -1).astype(np.float32)
    s = float(rng.uniform(*size))
    if kind == "insert":
        new, mask = insert(rng, ref.reshape(H, W, -1).astype(np.float32), work, s)
    elif kind == "remove":
        new, mask = remove(rng, work, s)
    else:
        new, mask = GENERATORS[LOCAL[int(rng.integers(len(LOCAL)))]](rng, work, s, float(rng.uniform(0.5, 1.0)))
    out = base.copy()
    out[mask] = np.clip(np.rint(new[mask]), 0, 255).astype(np.uint8).reshape(out[mask].shape)
    return PatrolChange(query=out, mask=mask, kind=kind, homography=hom)
