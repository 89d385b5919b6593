"""Change map of a query frame vs its aligned reference: soft-aligned patch features + a shift-robust photometric term."""

from __future__ import annotations

from dataclasses import dataclass, field
import cv2
import numpy as np
import torch
import torch.nn.functional as F

from oddeye.core.headconfig import HeadConfig, param
from oddeye.core.imageio import convert


@dataclass
class ChangeParams(HeadConfig):
    """Knobs of the change map; defaults are the ones benchmarked in docs/patrol.md.

    The pixel sizes (windows, sigmas, grow, pad, area) are for frames whose longest side is 640 px; other frame
    sizes scale them by (longest side / 640).
    """

    feature_window: int = param(3, ge=1, doc="k x k reference patches each query patch may match (soft alignment)")
    photo_window: int = param(5, ge=1, doc="k x k pixel shifts the photometric term is robust to")
    photo_blur: float = param(1.0, ge=0, doc="Gaussian sigma (px) before the photometric difference")
    photo_weight: float = param(1.0, ge=0, doc="weight of the photometric term")
    feature_weight: float = param(0.5, ge=0, le=1,
                                  doc="how much the features may lower (gate) the photometric change where they see none")
    feature_floor: float = param(0.35, ge=0, doc="cosine-type patch distance below this is texture noise, not change")
    feature_scale: float = param(0.5, gt=0, doc="distance above the floor that counts as 1.0 (full change)")
    smooth: float = param(12.0, ge=0, doc="Gaussian sigma (px) of the change map (the per-pixel score)")
    box_smooth: float = param(2.0, ge=0, doc="Gaussian sigma (px) of the sharper map that boxes are cut from")
    threshold: float = param(0.15, ge=0, doc="level of the sharper map that makes a box")
    box_grow: int = param(2, ge=0, doc="px: components closer than twice this merge into one box")
    box_pad: int = param(10, ge=0, doc="px added on every side of a box (annotators draw boxes with a margin)")
    min_area: int = param(16, ge=1, doc="px; smaller components are dropped")
    work_side: int = param(640, ge=8, doc="the photometric term is computed at most this size (longest side)")

    def scaled(self, h: int, w: int) -> ChangeParams:
        """A copy with the pixel-sized knobs scaled from a 640 px frame to an (h, w) frame."""
        s = max(h, w) / 640.0
        if abs(s - 1.0) < 1e-6:
            return self
        return self.replace(
            photo_window=max(3, int(round(self.photo_window * s)) | 1) if self.photo_window > 1 else 1,
            photo_blur=self.photo_blur * s, smooth=self.smooth * s, box_smooth=self.box_smooth * s,
            box_grow=int(round(self.box_grow * s)), box_pad=int(round(self.box_pad * s)),
            min_area=max(1, int(round(self.min_area * s * s))), work_side=max(8, h, w))


@dataclass
class Change:
    """The change map (H, W) float32 in [0, ~1], its boxes (K, 4) x1 y1 x2 y2, a frame score and the parts."""

    map: np.ndarray
    mask: np.ndarray  # (H, W) bool: the thresholded sharper map
    boxes: np.ndarray
    box_scores: np.ndarray
    score: float
    parts: dict[str, np.ndarray] = field(default_factory=dict)


def local_min_diff(a: torch.Tensor, b: torch.Tensor, k: int) -> torch.Tensor:
    """Soft alignment: for a (C, h, w) and b (C, h, w), min over a k x k window of b of ||a(x) - b(x+d)|| -> (h, w)."""
    c, h, w = a.shape
    if k <= 1:
        return (a - b).norm(dim=0)
    pad = k // 2
    bp = F.pad(b[None], (pad, pad, pad, pad), mode="replicate")
    win = F.unfold(bp, kernel_size=k).view(c, k * k, h * w)  # every shift of b at every position
    d = (a.reshape(c, 1, h * w) - win).norm(dim=0)  # (k*k, h*w)
    return d.min(dim=0).values.view(h, w)


def symmetric_min_diff(a: torch.Tensor, b: torch.Tensor, k: int) -> torch.Tensor:
    """max(a vs window of b, b vs window of a): catches things added to a AND things missing from it, (h, w)."""
    return torch.maximum(local_min_diff(a, b, k), local_min_diff(b, a, k))


def local_min_absdiff(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """Single-channel soft alignment: min over k x k shifts d of |a(x) - b(x + d)| for float32 (H, W) -> (H, W)."""
    if k <= 1:
        return np.abs(a - b)
    pad = k // 2
    h, w = a.shape
    bp = cv2.copyMakeBorder(b, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    out = np.full_like(a, np.inf)
    tmp = np.empty_like(a)
    for dy in range(k):
        for dx in range(k):
            np.subtract(a, bp[dy:dy + h, dx:dx + w], out=tmp)
            np.abs(tmp, out=tmp)
            np.minimum(out, tmp, out=out)
    return out


def _channels(img: np.ndarray) -> np.ndarray:
    """(H, W, C) float32 in [0, 1]: RGB kept when the image has colour, else one gray channel."""
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[2] >= 3:
        a = a[..., :3]
        if not (np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 1], a[..., 2])):
            return a.astype(np.float32) / 255.0
    return convert(a, "gray").astype(np.float32)[..., None] / 255.0


def photometric_change(query: np.ndarray, reference: np.ndarray, p: ChangeParams) -> np.ndarray:
    """Shift-robust absolute difference of blurred, gain/offset-matched images (max over colour) -> (H, W) in [0, 1]."""
    qc, rc = _channels(query), _channels(reference)
    if qc.shape[2] != rc.shape[2]:
        qc, rc = qc.mean(axis=2, keepdims=True), rc.mean(axis=2, keepdims=True)
    h, w = qc.shape[:2]
    s = min(1.0, p.work_side / max(h, w))
    k = max(1, int(round(p.photo_window * s)) | 1) if p.photo_window > 1 else 1
    out = None
    for c in range(qc.shape[2]):
        q, r = qc[..., c], rc[..., c]
        if s < 1.0:
            size = (max(8, round(w * s)), max(8, round(h * s)))
            q = cv2.resize(q, size, interpolation=cv2.INTER_AREA)
            r = cv2.resize(r, size, interpolation=cv2.INTER_AREA)
        if p.photo_blur > 0:
            q = cv2.GaussianBlur(q, (0, 0), p.photo_blur)
            r = cv2.GaussianBlur(r, (0, 0), p.photo_blur)
        # match the reference's brightness and contrast to the query's (lighting differs between runs)
        r = (r - r.mean()) * (q.std() / (r.std() + 1e-6)) + q.mean()
        d = np.maximum(local_min_absdiff(q, r, k), local_min_absdiff(r, q, k))
        out = d if out is None else np.maximum(out, d)
    if out.shape != (h, w):
        out = cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(out, 0, 1)


def feature_change(fq: torch.Tensor, fr: torch.Tensor, p: ChangeParams, shape: tuple[int, int]) -> np.ndarray:
    """Soft-aligned distance of L2-normalised query patches fq (D, h, w) vs reference fr (D, h, w) -> (H, W) in [0, 1]."""
    d = symmetric_min_diff(F.normalize(fq.float(), dim=0), F.normalize(fr.float(), dim=0), p.feature_window)
    d = ((d - p.feature_floor) / p.feature_scale).clamp(0, 1)
    up = F.interpolate(d[None, None], size=shape, mode="bilinear", align_corners=False)[0, 0]
    return up.numpy()


def boxes_from_map(cmap: np.ndarray, threshold: float, min_area: int = 16, grow: int = 0,
                   pad: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Components of cmap (H, W) > threshold (merged within 2 x `grow` px), boxes padded by `pad` -> (K, 4), peaks (K,)."""
    above = cmap > threshold
    binary = above.astype(np.uint8)
    if grow > 0:
        binary = cv2.dilate(binary, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    n, lab, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    boxes, scores = [], []
    for i in range(1, n):
        x, y, w, h, _ = stats[i]
        inside = (lab[y:y + h, x:x + w] == i) & above[y:y + h, x:x + w]
        if inside.sum() < min_area:
            continue
        peak = float(cmap[y:y + h, x:x + w][inside].max())
        if grow > 0:  # undo the dilation: the box of the pixels above threshold
            ys, xs = np.nonzero(inside)
            x, y, w, h = x + xs.min(), y + ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
        H, W = cmap.shape
        boxes.append((max(0, x - pad), max(0, y - pad), min(W, x + w + pad), min(H, y + h + pad)))
        scores.append(peak)
    order = np.argsort(scores)[::-1]
    b = np.asarray(boxes, np.float32).reshape(-1, 4)[order]
    return b, np.asarray(scores, np.float32)[order]


def change_map(query: np.ndarray, reference: np.ndarray, valid: np.ndarray | None = None,
               fq: torch.Tensor | None = None, fr: torch.Tensor | None = None,
               params: ChangeParams | None = None) -> Change:
    """Fuse the photometric and (if features fq/fr (D, h, w) are given) feature terms into a change map (H, W)."""
    h, w = query.shape[:2]
    p = (params or ChangeParams()).scaled(h, w)
    parts = {"photometric": photometric_change(query, reference, p)}
    fused = p.photo_weight * parts["photometric"]
    if fq is not None and fr is not None and p.feature_weight > 0:
        parts["feature"] = feature_change(fq, fr, p, (h, w))
        # features gate the photometric term: where patches agree it is dimmed, where they differ it is kept
        w = min(max(p.feature_weight, 0.0), 1.0)
        fused = fused * ((1.0 - w) + w * np.clip(2.0 * parts["feature"] + 0.5, 0.0, 1.0))
    fused = fused.astype(np.float32)
    if valid is not None:
        fused[~valid] = 0.0
    sharp = cv2.GaussianBlur(fused, (0, 0), p.box_smooth) if p.box_smooth > 0 else fused
    smooth = cv2.GaussianBlur(fused, (0, 0), p.smooth) if p.smooth > 0 else fused
    boxes, box_scores = boxes_from_map(sharp, p.threshold, p.min_area, p.box_grow, p.box_pad)
    score = float(smooth.max()) if smooth.size else 0.0
    return Change(smooth, sharp > p.threshold, boxes, box_scores, score, parts)
