"""Export of the image heads: PatchCore (global bank, or image-conditioned with --retrieve) and Gaussian, each as one
graph from resized uint8 images to (image score, pixel map), with the learned arrays as constants."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from oddeye.export.graph import BANK_CHUNK, Bank, Blur, Features, PixelMap, float32_extractor


DISTANCE_BLOCK = 1 << 22  # float32 distances of one run's bank block at most (16 MiB)


def _flat(f: torch.Tensor) -> torch.Tensor:
    """Features (B, D, h, w) -> rows (B, h*w, D)."""
    return f.permute(0, 2, 3, 1).reshape(-1, f.shape[2] * f.shape[3], f.shape[1])


class PatchCoreGraph(nn.Module):
    """PatchCore with its coreset bank as a constant: exact nearest-bank distances per patch, the re-weighted
    image score and the pixel map (PatchCoreHead._patch_scores + to_pixel_map)."""

    def __init__(self, head: Any, features: Features, grid: tuple[int, int], size: int) -> None:
        super().__init__()
        self.head, self.features, self.grid = head, features, grid
        h, w = grid
        self.bank = Bank(head.bank)
        allowed = np.full(h * w, -np.inf, np.float32)  # the top patch is taken from the interior only
        allowed[head.interior(np.arange(h * w).reshape(1, h, w)).ravel()] = 0.0
        self.register_buffer("allowed", torch.from_numpy(allowed))
        self.k = min(head.config.num_neighbors, len(head.bank))
        self.smooth = Blur(grid, head.config.score_sigma)
        self.pixel = PixelMap(size, head.config.sigma)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (B, S, S, 3) -> (image scores (B,), pixel maps (B, S, S))."""
        h, w = self.grid
        q = _flat(self.head.with_position(self.features(images)))
        d = q.shape[2]
        pmap = self.bank.nearest(q.reshape(-1, d)).sqrt().reshape(-1, h * w)
        smooth = self.smooth(pmap.reshape(-1, h, w)).reshape(-1, h * w)
        top = (smooth + self.allowed).argmax(1, keepdim=True)  # (B, 1)
        s_star = smooth.gather(1, top)[:, 0]
        q_star = q.gather(1, top[:, :, None].expand(-1, 1, d))  # (B, 1, D)
        m_star = self.bank.rows(self.bank.nearest_k(q_star[:, 0], 1)[:, 0])  # (B, D): the top patch's neighbour
        support = self.bank.nearest_k(m_star, self.k)  # (B, k), nearest first
        dd = (self.bank.rows(support) - q_star).norm(dim=2)
        weights = 1.0 - torch.softmax(dd, dim=1)[:, 0]
        return weights * s_star, self.pixel(pmap.reshape(-1, h, w))


class ConditionedGraph(nn.Module):
    """PatchCore --retrieve: the gallery of normal-image descriptors and their kept patches as constants; each
    image is compared with the patches of its k nearest normal images (ConditionedBank.distances)."""

    def __init__(self, head: Any, features: Features, grid: tuple[int, int], size: int) -> None:
        super().__init__()
        bank = head.conditioned
        self.head, self.features, self.grid, self.border = head, features, grid, bank.border
        gallery = bank.gallery._index.reconstruct_n(0, len(bank.gallery))  # unit rows (cosine index)
        self.register_buffer("gallery", torch.from_numpy(np.ascontiguousarray(gallery, dtype=np.float32)))
        self.register_buffer("patches", torch.from_numpy(bank.patches))  # (N, m, D) float16, as stored
        self.k = min(bank.k, len(gallery))
        inner = head.interior(np.zeros((1, *grid))).shape[1:]
        self.smooth = Blur(inner, head.config.score_sigma)
        self.pixel = PixelMap(size, head.config.sigma)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (B, S, S, 3) -> (image scores (B,), pixel maps (B, S, S))."""
        h, w = self.grid
        f = self.features(images)
        b = self.border
        inner = f[:, :, b:-b, b:-b] if b > 0 and h > 2 * b and w > 2 * b else f
        desc = F.normalize(inner.mean(dim=(2, 3)), dim=1)
        near = torch.topk(desc @ self.gallery.t(), self.k, dim=1).indices  # (B, k)
        cand = self.patches[near].float()  # (B, k, m, D)
        cand = cand.reshape(cand.shape[0], -1, cand.shape[3])
        q = _flat(self.head.with_position(f))
        d2 = (q * q).sum(-1, keepdim=True) - 2.0 * q @ cand.transpose(1, 2) + (cand * cand).sum(-1)[:, None, :]
        pmap = d2.min(-1).values.clamp_min(0.0).sqrt().reshape(-1, h, w)
        inner_map = self.head.interior(pmap)
        score = self.smooth(inner_map).reshape(inner_map.shape[0], -1).amax(1)
        return score, self.pixel(pmap)


class GaussianGraph(nn.Module):
    """The Gaussian head with its means and precision matrices as constants: Mahalanobis distance per patch, image
    score = max of the smoothed interior, pixel map (GaussianHead._patch_scores + to_pixel_map)."""

    def __init__(self, head: Any, features: Features, grid: tuple[int, int], size: int) -> None:
        super().__init__()
        self.head, self.features, self.grid = head, features, grid
        self.local = head.config.mode == "local"
        self.register_buffer("mean", head.mean.float().clone())  # (L, D)
        self.register_buffer("prec", head.prec.float().clone())  # (L, D, D)
        self.smooth = Blur(grid, head.config.score_sigma)
        self.pixel = PixelMap(size, head.config.sigma)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (B, S, S, 3) -> (image scores (B,), pixel maps (B, S, S))."""
        h, w = self.grid
        x = _flat(self.features(images))  # (B, L, D)
        if self.local:
            d = (x - self.mean).transpose(0, 1)  # (L, B, D)
            m = (torch.matmul(d, self.prec) * d).sum(-1).transpose(0, 1)
        else:
            d = x - self.mean[0]
            m = (torch.matmul(d, self.prec[0]) * d).sum(-1)
        pmap = m.clamp_min(0.0).sqrt().reshape(-1, h, w)
        inner = self.head.interior(self.smooth(pmap))
        return inner.reshape(inner.shape[0], -1).amax(1), self.pixel(pmap)


def image_graph(head: Any) -> tuple[nn.Module, dict[str, Any]]:
    """The export graph of a fitted PatchCore or Gaussian head and the manifest fields that describe it."""
    ext = float32_extractor(head)
    features = Features(ext)
    cls = GaussianGraph if head.name == "gaussian" else ConditionedGraph if head.config.retrieve else PatchCoreGraph
    graph = cls(head, features, ext.grid, ext.image_size)
    notes = []
    if head.fit_bf16:
        msg = ("this model was fitted with bfloat16 features; the export computes float32 features, so its scores "
               "differ by about a per cent from `oddeye score image` on a bf16 CPU (refit with `oddeye fit image "
               "... --no-bf16` to match)")
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
        notes.append(msg)
    kind = getattr(head, "bank_kind", None)
    if kind not in (None, "flat", "conditioned"):
        msg = (f"the model searches its bank with an approximate '{kind}' index; the export searches it exactly, so "
               "a patch's distance is the same or lower where the index missed its nearest neighbour")
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
        notes.append(msg)
    s = ext.image_size
    norm = ("per image: (x - mean) / (std + 1) over all pixels and channels" if ext.intensity == "standardize" else
            f"per channel: (x - 255 * {list(ext.backbone.mean)}) / (255 * {list(ext.backbone.std)})")
    fields = {
        "kind": "image",
        "inputs": [{"name": "images", "shape": ["batch", s, s, 3], "dtype": "uint8", "layout": "NHWC, RGB",
                    "preprocessing_hint": f"read as 8-bit RGB and resize to {s}x{s} (oddeye.runtime does both)"}],
        "preprocessing": {
            "read": "decode to 8-bit RGB: OpenCV imdecode (IMREAD_UNCHANGED), BGR to RGB; gray and RGBA to RGB; "
                    "16-bit / 257, rounded",
            "resize": {"size": [s, s], "library": "OpenCV cv2.resize",
                       "interpolation": f"INTER_AREA when the image's shorter side is above {s}, else INTER_LINEAR"},
            "in_graph": f"uint8 -> float32, normalised {norm}; backbone {ext.name} blocks, "
                        f"{ext.patch_size}x{ext.patch_size} average pooling, levels upsampled to the {ext.grid} grid"},
        "outputs": [
            {"name": "image_score", "shape": ["batch"], "dtype": "float32",
             "meaning": f"the image's anomaly score ({head.what}); above `threshold` = anomalous"},
            {"name": "pixel_map", "shape": ["batch", s, s], "dtype": "float32",
             "meaning": f"patch scores upsampled to {s}x{s} and Gaussian-smoothed (sigma {head.config.sigma:g} px); "
                        "resize to the image's (H, W) with cv2.INTER_LINEAR for the map `oddeye score image` gives"}],
        "threshold": head.threshold, "pixel_threshold": head.pixel_threshold,
        "batch_size": batch_size(head, ext),
        "features": {"precision": "float32", "fit_bf16": head.fit_bf16, "dim": ext.dim, "grid": list(ext.grid)},
        "notes": notes,
    }
    return graph, fields


def batch_size(head: Any, ext: Any) -> int:
    """Images per run of the graph: the head's batch size, less for PatchCore where a batch's distance block
    (batch x patches x bank rows) would leave the CPU's caches (measured: 40 images/s at 1-2 vs 34 at 16)."""
    if head.name != "patchcore" or head.config.retrieve:
        return head.config.batch_size
    rows = min(len(head.bank), BANK_CHUNK) * ext.grid[0] * ext.grid[1]
    return int(min(head.config.batch_size, max(1, DISTANCE_BLOCK // rows)))


def example_images(head: Any, n: int = 2) -> torch.Tensor:
    """n random uint8 images (n, S, S, 3) at the head's input size, to trace and check the graph."""
    s = head.config.extractor.image_size
    return torch.from_numpy(np.random.default_rng(0).integers(0, 256, (n, s, s, 3), dtype=np.uint8))
