"""The backbone interface every patch-feature extractor wraps, and ImageNet normalisation constants."""

from __future__ import annotations

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Backbone:
    """A callable (B, 3, H, W) float -> list of feature maps (B, C_i, h_i, w_i), shallow first, plus a pooled embedding."""

    name: str = "backbone"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Multi-scale maps for input (B, 3, H, W)."""
        raise TypeError(f"{type(self).__name__} must define features()")

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """Global embedding (B, D') for input (B, 3, H, W); default: mean of the deepest map."""
        return self.features(x)[-1].mean(dim=(2, 3))

    def to(self, device: str) -> Backbone:
        """Move to `device`."""
        return self
