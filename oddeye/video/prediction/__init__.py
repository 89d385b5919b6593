"""Frame-prediction head (CT-D2GAN style): predict each frame from the past ones; anomaly = PSNR drop.

Names are imported on first use, so `import oddeye.video.prediction.config` does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {"NAME": "head", "PredictionHead": "head", "PredictionConfig": "config", "PredictorConfig": "config",
          "ScoreConfig": "config", "TrainConfig": "config"}
__all__ = list(_WHERE)


def __getattr__(name: str) -> Any:
    """The public names, from the module that defines them."""
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
