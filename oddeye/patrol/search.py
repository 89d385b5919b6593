"""The patrol head's `--auto` search space, declared here and nowhere else (oddeye.core.auto.SearchSpace).

Candidates are partial PatrolConfigs, tried in order, the defaults first and the cheap variants before the
expensive ones. The issue's settings for this head: the feature layers (whether the backbone's patch features gate
the change map, which blocks, at which input size), the alignment (keypoint detector, ECC levels, the soft
alignment windows of the change map) and the threshold. AUROC does not depend on a threshold, so the event
threshold is not a candidate: it is set after the choice, from the same validation pairs (oddeye.patrol.auto).
Every setting here acts when a pair is compared, none when the reference is ingested: all candidates share one fit.
"""

from __future__ import annotations

from typing import Any

from oddeye.core.auto import SearchSpace
from oddeye.patrol.config import PatrolConfig

FINE_LAYERS = [3, 7]  # Lite0 blocks at strides 8 and 16 one stage earlier than the default (4, 10)
FINE_ECC = [128, 256, 448]  # one more, finer ECC level than the default (128, 256)

SPACE = SearchSpace("patrol", [
    {},
    {"use_features": False},
    {"use_features": False, "ecc_levels": FINE_ECC},
    {"use_features": False, "change": {"photo_window": 7}},
    {"layers": FINE_LAYERS},
    {"layers": [4]},
    {"change": {"photo_window": 7, "feature_window": 5}},
    {"change": {"photo_window": 3, "feature_window": 1}},
    {"ecc_levels": FINE_ECC},
    {"detector": "sift"},
    {"image_size": 256},
])

FEATURE_SETTINGS = ("layers", "image_size")  # top-level settings that act only with use_features
FEATURE_CHANGE = ("feature_window", "feature_floor", "feature_scale", "feature_weight")  # ... and of `change`
# what ingesting the reference run depends on (descriptors, frame scale, frames kept)
FIT_SETTINGS = ("backbone", "descriptor_size", "max_side", "stride")


def _without_features(settings: dict[str, Any]) -> dict[str, Any]:
    """`settings` less what acts only through the patch features."""
    out = {k: v for k, v in settings.items() if k not in FEATURE_SETTINGS}
    if isinstance(out.get("change"), dict):
        change = {k: v for k, v in out["change"].items() if k not in FEATURE_CHANGE}
        out = {k: v for k, v in out.items() if k != "change"} | ({"change": change} if change else {})
    return out


def space_for(base: PatrolConfig, given: dict[str, Any] | None = None) -> SearchSpace:
    """The space around `base`, the settings the user `given` fixed in every candidate; with the features off
    (given), the feature settings are dropped (candidates that then repeat another are tried once)."""
    space = SPACE.fixing(given or {})
    if not base.use_features:
        space = SearchSpace(space.name, [_without_features(c) for c in space.candidates])
    return space


def fit_key(cfg: PatrolConfig) -> dict[str, Any]:
    """What a fit with `cfg` depends on: candidates equal here share one fit (every candidate of SPACE does)."""
    doc = cfg.to_dict()
    return {k: doc[k] for k in FIT_SETTINGS}
