"""The point-cloud head's `--auto` search space, declared here and nowhere else (oddeye.core.auto.SearchSpace).

The issue's settings for this head are the weights of the score's terms. Candidates, in order (cheap ones first):
the defaults (the features' kNN score alone, for any clouds), two other ways of pooling it into an object score,
then the surface field of registered clouds (surface_weight) without holes and with a hole term of each weight in
HOLES. The object score with the surface field is surface_weight x the largest pooled deviation + hole_weight x the
largest hole's area: only hole_weight / surface_weight changes its ranking, so surface_weight is one value (SURFACE)
and hole_weight varies. feature_weight and position_weight change the point map only (the object score with the
surface field ignores the features), so a search by object AUROC cannot choose them: they keep their defaults.
"""

from __future__ import annotations

from typing import Any

from oddeye.core.auto import SearchSpace
from oddeye.pointcloud.config import PointCloudConfig

SURFACE = 8.0  # the surface term's weight when it is on: feature_weight's default (0.125) is relative to it
HOLES = (0.1, 0.3, 1.0)  # hole weights tried with the surface field (area in cells vs deviation in fine voxels)

SPACE = SearchSpace("pointcloud", [
    {},  # the features' kNN score, smoothed over 6 voxels, object score = mean of the top 5 voxels
    {"smooth_k": 3},
    {"topk": 20},
    {"surface_weight": SURFACE},  # registered clouds: the deviation from the training surface
    *({"surface_weight": SURFACE, "hole_weight": h} for h in HOLES),  # + the largest hole's area
])

# settings that change only how a fitted head scores (the surface field is fitted when surface_weight > 0, whatever
# its value): candidates differing in nothing else share one fit
SCORE_ONLY = ("k", "smooth_k", "topk", "surface_weight", "surface_pool", "surface_region", "surface_map_scales",
              "surface_single", "surface_agree", "feature_weight", "hole_weight", "hole_reach", "hole_shape")


def fit_key(cfg: PointCloudConfig) -> dict[str, Any]:
    """What a fit with `cfg` depends on: every setting but the score-time ones, and whether the field is fitted."""
    key = {k: v for k, v in cfg.to_dict().items() if k not in SCORE_ONLY}
    return {**key, "surface_field": cfg.surface_weight > 0}
