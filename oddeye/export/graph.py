"""Torch modules that rebuild the image heads' arithmetic for export: the patch features of uint8 images, OpenCV's
Gaussian blur (reflected border) and bilinear upsampling, nearest-neighbour distances to a bank in chunks; and
`to_onnx`, which traces one of them into an ONNX file with a dynamic batch axis."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from oddeye.core.errors import ModelError
from oddeye.retrieval.features import PatchFeatureExtractor, standardize_intensity

OPSET = 17
BANK_CHUNK = 2048  # bank rows per distance block: (batch x patches, 2048) float32 at a time (measured best)


def reflect_index(n: int, r: int) -> list[int]:
    """Source indices of a length-n axis padded by r on both sides as OpenCV's BORDER_REFLECT (fedcba|abcdef)."""
    out = []
    for p in range(-r, n + r):
        while n > 1 and not 0 <= p < n:
            p = -p - 1 if p < 0 else 2 * n - p - 1
        out.append(min(max(p, 0), n - 1))
    return out


class Blur(nn.Module):
    """cv2.GaussianBlur(x, (k, k), sigma, borderType=BORDER_REFLECT) of maps (B, H, W) of a fixed size."""

    def __init__(self, shape: tuple[int, int], sigma: float, ksize: int | None = None) -> None:
        super().__init__()
        self.on = sigma > 0
        if not self.on:
            return
        k = ksize or (int(round(sigma * 8 + 1)) | 1)  # OpenCV's size for float maps given only sigma
        r = k // 2
        kernel = torch.from_numpy(cv2.getGaussianKernel(k, sigma, cv2.CV_64F).ravel().astype(np.float32))
        self.register_buffer("kh", kernel.view(1, 1, k, 1))
        self.register_buffer("kw", kernel.view(1, 1, 1, k))
        self.register_buffer("rows", torch.tensor(reflect_index(shape[0], r)))
        self.register_buffer("cols", torch.tensor(reflect_index(shape[1], r)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Blurred maps (B, H, W)."""
        if not self.on:
            return x
        p = x.index_select(1, self.rows).index_select(2, self.cols)[:, None]
        return F.conv2d(F.conv2d(p, self.kh), self.kw)[:, 0]


class PixelMap(nn.Module):
    """Patch scores (B, h, w) -> pixel map (B, S, S): bilinear upsampling, then the blur over `sigma` px
    (oddeye.image.common.to_pixel_map before its last resize to the image's size)."""

    def __init__(self, size: int, sigma: float) -> None:
        super().__init__()
        self.size = size
        self.blur = Blur((size, size), sigma, 2 * int(4.0 * sigma + 0.5) + 1)

    def forward(self, pmap: torch.Tensor) -> torch.Tensor:
        """(B, h, w) -> (B, S, S)."""
        up = F.interpolate(pmap[:, None], size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.blur(up[:, 0])


def pool_matrix(c: int, d: int) -> torch.Tensor:
    """(C, D) matrix whose product is adaptive average pooling of C channels to D (as F.adaptive_avg_pool1d)."""
    m = torch.zeros(c, d)
    for j in range(d):
        a, b = (j * c) // d, -((-(j + 1) * c) // d)
        m[a:b, j] = 1.0 / (b - a)
    return m


class Features(nn.Module):
    """uint8 RGB images (B, S, S, 3), already resized -> patch features (B, D, h, w) float32, as the extractor
    computes them (normalisation, backbone, 3x3 pooling and upsampling per level, channel pooling)."""

    def __init__(self, ext: PatchFeatureExtractor) -> None:
        super().__init__()
        self.ext = ext
        model = getattr(ext.backbone, "model", None)
        if isinstance(model, nn.Module):
            self.net = model  # registers the backbone's weights with this module
        self.standardize = ext.intensity == "standardize"
        self.register_buffer("mean", torch.tensor(ext.backbone.mean).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(ext.backbone.std).view(1, 3, 1, 1) * 255.0)
        pool = None
        if ext.target_dim:  # channel pooling only where target_dim is below the backbone's channels
            with torch.no_grad():
                c = int(ext.pool_levels(ext.backbone.features(torch.zeros(1, 3, ext.image_size, ext.image_size))).shape[1])
            pool = pool_matrix(c, ext.target_dim) if ext.target_dim < c else None
        self.register_buffer("pool", pool)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, S, S, 3) uint8 -> (B, D, h, w)."""
        x = images.permute(0, 3, 1, 2).float()
        x = standardize_intensity(x) if self.standardize else (x - self.mean) / self.std
        f = self.ext.pool_levels(self.ext.backbone.features(x))
        if self.pool is not None:
            f = torch.einsum("bchw,cd->bdhw", f, self.pool)
        return f


def float32_extractor(head: Any) -> PatchFeatureExtractor:
    """The head's feature extractor rebuilt in float32 PyTorch (no bf16, no compile, no ONNX Runtime) for tracing."""
    from oddeye.image.common import extractor_from_config

    cfg = head.config.extractor.replace(bf16=False, compile=False, runtime="torch")
    return extractor_from_config(cfg, device="cpu")


class Bank(nn.Module):
    """Nearest-row search in a bank (M, D) kept once, as -2 x its transpose (D, M) (exact: a power of two) and the
    rows' squared norms (M,); blocks of `chunk` rows are sliced at run time, so the file holds one copy."""

    def __init__(self, bank: np.ndarray, chunk: int = BANK_CHUNK) -> None:
        super().__init__()
        b = torch.from_numpy(np.ascontiguousarray(bank, dtype=np.float32))
        self.register_buffer("neg2t", (-2.0 * b).t().contiguous())
        self.register_buffer("norms", (b * b).sum(-1))
        self.size, self.chunk = int(b.shape[0]), int(chunk)

    def rows(self, idx: torch.Tensor) -> torch.Tensor:
        """Bank rows at indices idx (...) -> (..., D)."""
        return self.neg2t.t()[idx] * -0.5

    def nearest(self, q: torch.Tensor) -> torch.Tensor:
        """Squared L2 distance (N,) of queries q (N, D) to their nearest bank row, as FAISS's flat index computes it
        (|q|^2 + |m|^2 - 2 q.m, clamped at 0), one block of bank rows at a time: a minimum per block, no indices
        (an arg-minimum or top-1 per block measured 20-40 % slower; see nearest_k for the few that need one)."""
        best = None
        for s in range(0, self.size, self.chunk):
            part = torch.addmm(self.norms[s:s + self.chunk], q, self.neg2t[:, s:s + self.chunk]).amin(1)
            best = part if best is None else torch.minimum(best, part)
        return (best + (q * q).sum(-1)).clamp_min(0.0)

    def nearest_k(self, q: torch.Tensor, k: int) -> torch.Tensor:
        """Indices (N, k) of the k nearest bank rows of queries q (N, D), nearest first."""
        return torch.topk(torch.addmm(self.norms, q, self.neg2t), k, dim=1, largest=False).indices


def to_onnx(module: nn.Module, example: Sequence[torch.Tensor], path: Path, inputs: Sequence[str],
            outputs: Sequence[str]) -> Path:
    """Trace `module` on `example` inputs into the ONNX file `path`, the first axis of every input and output
    dynamic ('batch'); a failure is a ModelError naming what could not be exported."""
    path.parent.mkdir(parents=True, exist_ok=True)
    axes = {n: {0: "batch"} for n in [*inputs, *outputs]}
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on shape arithmetic: sizes are fixed per export
            torch.onnx.export(module.eval(), tuple(example), str(path), opset_version=OPSET, input_names=list(inputs),
                              output_names=list(outputs), dynamic_axes=axes, dynamo=False,
                              do_constant_folding=False)  # folding would store sliced copies of constants
    except Exception as e:  # noqa: BLE001 - the exporter raises many types
        raise ModelError(f"could not export {type(module).__name__} to ONNX ({type(e).__name__}: {str(e)[:300]})",
                         "the efficientnet-lite0/1/2 backbones export; report other backbones that fail") from None
    return path
