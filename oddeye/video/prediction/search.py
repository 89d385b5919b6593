"""The video-prediction head's `--auto` search space, declared here and nowhere else (oddeye.core.auto.SearchSpace).

Every candidate is a score setting (ScoreConfig: perspective, motion weight, smoothing; the issue's list), so one
trained generator serves them all; each costs one scoring pass over the validation clips. Perspective (top-row /
bottom-row weight of the prediction error) on a x4 ladder, the motion weight and the smoothing form a full grid
(they interact: the motion term and the smoothing both change how a busy normal frame compares with an odd one).
The defaults first.
"""

from __future__ import annotations

from typing import Any

from oddeye.core.auto import SearchSpace
from oddeye.video.prediction.config import ScoreConfig

PERSPECTIVE = (1.0, 4.0, 16.0, 64.0)  # 1 (the default): off
MOTION = (0.6, 0.0, 0.3, 1.0)  # the default first; 0: plain -PSNR
SMOOTH = (5.0, 2.0, 10.0)  # frames, the default first


def _score(**settings: float) -> dict[str, Any]:
    """A candidate changing these ScoreConfig settings ({} where they are all the defaults)."""
    changed = {k: v for k, v in settings.items() if v != getattr(ScoreConfig, k)}
    return {"score": changed} if changed else {}


# the full grid: 48 rescorings of the validation clips, about 2 CPU-seconds each on Ped2
SPACE = SearchSpace("video-prediction", [
    _score(perspective=p, motion=m, smooth_sigma=s) for p in PERSPECTIVE for m in MOTION for s in SMOOTH])
