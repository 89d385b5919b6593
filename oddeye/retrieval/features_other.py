"""Backbones users bring: a transformers vision model (local folder or HF cache) or a TorchScript file."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from oddeye.core.errors import InputError, MissingWeightsError, ModelError
from oddeye.retrieval.backbone import IMAGENET_MEAN, IMAGENET_STD, Backbone


def _hf_where(ref: str) -> str:
    """Where the user can put a transformers model so it loads offline."""
    import os

    cache = os.environ.get("HF_HOME", str(Path.home() / ".cache" / "huggingface"))
    return (f"download it once (e.g. `huggingface-cli download {ref}`) into the HF cache ({cache}/hub), "
            f"or pass hf:<local folder> holding config.json and the weights")


class HFBackbone(Backbone):
    """A transformers vision model by local folder or hub id (offline: local_files_only=True).

    CNNs (ResNet, ConvNeXt, ...) give hidden states (B, C, h, w); ViT-like models give tokens (B, 1 + h*w, C),
    which are reshaped to a grid. `layers` picks hidden-state indices (default: two middle ones).
    """

    def __init__(self, ref: str, layers: Sequence[int] | None = None, **_: Any) -> None:
        try:
            from transformers import AutoConfig, AutoModel
        except ImportError:
            raise MissingWeightsError("the transformers package is not installed", "pip install transformers") from None
        self.name = f"hf:{ref}"
        local = Path(ref).expanduser()
        src = str(local) if local.exists() else ref
        if local.exists() and not (local / "config.json").is_file():
            raise MissingWeightsError(f"{local} holds no config.json: not a transformers model folder", _hf_where(ref))
        try:
            config = AutoConfig.from_pretrained(src, local_files_only=True)
            self.model = AutoModel.from_pretrained(src, local_files_only=True).eval()
        except (OSError, ValueError) as e:
            raise MissingWeightsError(f"transformers model {ref!r} is not available offline ({str(e)[:160]})",
                                      _hf_where(ref)) from None
        self.layers = tuple(layers) if layers else None
        self.patch = int(getattr(config, "patch_size", 0) or 0)
        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD
        try:
            from transformers import AutoImageProcessor

            proc = AutoImageProcessor.from_pretrained(src, local_files_only=True)
            if getattr(proc, "image_mean", None) and getattr(proc, "image_std", None):
                self.mean, self.std = tuple(proc.image_mean)[:3], tuple(proc.image_std)[:3]
        except (OSError, ValueError, ImportError):
            pass

    def _hidden(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = self.model(pixel_values=x, output_hidden_states=True)
        hs = list(getattr(out, "hidden_states", None) or [])
        if not hs:
            raise ModelError(f"{self.name} returns no hidden states", "use a vision backbone (ResNet, ConvNeXt, ViT)")
        maps = []
        for h in hs:
            if h.ndim == 4:
                maps.append(h)
            elif h.ndim == 3:
                b, n, c = h.shape
                side = int(round((n - 1) ** 0.5))
                body = h[:, 1:] if side * side == n - 1 else h
                side = int(round(body.shape[1] ** 0.5))
                if side * side != body.shape[1]:
                    raise ModelError(f"{self.name}: cannot arrange {body.shape[1]} tokens into a square grid")
                maps.append(body.transpose(1, 2).reshape(b, c, side, side))
        return maps

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Chosen hidden states as (B, C, h, w) maps, finest first."""
        maps = self._hidden(x)
        idx = self.layers or (len(maps) // 2, (3 * len(maps)) // 4)
        try:
            chosen = [maps[i] for i in idx]
        except IndexError:
            raise InputError(f"layers {list(idx)}: {self.name} has {len(maps)} hidden states (0..{len(maps) - 1})") from None
        return sorted(chosen, key=lambda m: -m.shape[-1])

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """Mean of the last hidden state (B, C)."""
        return self._hidden(x)[-1].mean(dim=(2, 3))


class TorchScriptBackbone(Backbone):
    """A TorchScript file whose forward maps (B, 3, H, W) to a tensor, or a list/tuple/dict of (B, C, h, w)."""

    def __init__(self, path: str, layers: Sequence[int] | None = None, normalize: str = "imagenet", **_: Any) -> None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise MissingWeightsError(f"TorchScript file not found: {p}",
                                      "export your backbone with torch.jit.script/trace and pass torchscript:<file.pt>")
        try:
            self.model = torch.jit.load(str(p), map_location="cpu").eval()
        except (RuntimeError, ValueError) as e:
            raise ModelError(f"{p} is not a TorchScript file ({str(e)[:160]})", "save it with torch.jit.save") from None
        self.name = f"torchscript:{p}"
        self.layers = tuple(layers) if layers else None
        if normalize != "imagenet":
            raise InputError("TorchScript backbones use ImageNet normalisation; bake any other into the model")

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The model's (chosen) 4-D outputs, finest first."""
        out = self.model(x)
        if isinstance(out, torch.Tensor):
            outs = [out]
        elif isinstance(out, dict):
            outs = list(out.values())
        else:
            outs = list(out)
        maps = [o for o in outs if isinstance(o, torch.Tensor) and o.ndim == 4]
        if not maps:
            raise ModelError(f"{self.name} returns no (B, C, h, w) feature maps")
        if self.layers:
            try:
                maps = [maps[i] for i in self.layers]
            except IndexError:
                raise InputError(f"layers {list(self.layers)}: the model returns {len(maps)} maps") from None
        return sorted(maps, key=lambda m: -m.shape[-1])

    def to(self, device: str) -> Backbone:
        """Move to `device`."""
        self.model = self.model.to(device)
        return self
