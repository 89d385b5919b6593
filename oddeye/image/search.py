"""The image heads' `--auto` search spaces, declared here and nowhere else (oddeye.core.auto.SearchSpace).

Candidates are partial configs, tried in order, the head's defaults first: under a short budget the defaults and
the cheap variants are tried before the expensive ones. Settings from the issue's list: backbone and layers,
exposure gains, position weight, retrieval of the nearest normal images, border, score smoothing. Then a second
pass (`with_best_backbone`): the best backbone that beat the default one, with the two best of the other changes.
"""

from __future__ import annotations

import json
from typing import Any

from oddeye.core.auto import SearchSpace, Trial
from oddeye.image.config import ImageConfig

BACKBONES = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")  # the built-in ones (their default
# blocks: strides 8 and 16 each)
GAINS = (0.7, 0.85, 1.25, 1.6, 2.0)  # learn each normal image also at these exposures (about +-1 stop)
FINE_LAYERS = [3, 7]  # Lite0 blocks at strides 8 and 16 one stage earlier than the default (4, 10); Lite0 only


def _feature_map(extra: list[dict]) -> list[dict]:
    """Candidates PatchCore and the Gaussian head share: defaults, border, smoothing, finer layers, other
    backbones; then the head's own `extra` (exposure gains among them)."""
    return [
        {},
        {"border": 2},
        {"border": 2, "score_sigma": 2.0},
        {"border": 2, "extractor": {"layers": FINE_LAYERS}},
        *({"border": 2, "extractor": {"name": b}} for b in BACKBONES[1:]),
        *extra,
    ]


def with_best_backbone(trials: list[Trial]) -> list[dict[str, Any]]:
    """Second pass: the extractor of the best candidate that changed it, merged into the two best candidates that
    changed something else, when both changes beat what they changed (the same settings less the extractor)."""
    ok = {json.dumps(t.settings, sort_keys=True): t for t in trials if t.status == "ok" and t.auroc is not None}
    backbones = [t for t in ok.values() if "extractor" in t.settings]
    if not backbones:
        return []
    best = max(backbones, key=lambda t: t.auroc)  # type: ignore[arg-type,return-value]
    rest = {k: v for k, v in best.settings.items() if k != "extractor"}
    ref = ok.get(json.dumps(rest, sort_keys=True))
    if ref is None or best.auroc <= ref.auroc:  # type: ignore[operator]
        return []
    others = sorted((t for t in ok.values() if "extractor" not in t.settings and t.auroc > ref.auroc  # type: ignore
                     and t.settings != rest), key=lambda t: -t.auroc)[:2]  # type: ignore[operator]
    return [{**t.settings, "extractor": best.settings["extractor"]} for t in others]


SPACES: dict[str, SearchSpace] = {
    "patchcore": SearchSpace("patchcore", _feature_map([  # gains without retrieval: a 5x global bank, slow to fit
        {"border": 2, "position_weight": 8.0},
        {"border": 2, "retrieve": 30},
        {"border": 2, "exposure_gains": GAINS, "retrieve": 30},
        {"border": 2, "exposure_gains": GAINS, "retrieve": 30, "position_weight": 8.0},
    ]), with_best_backbone),
    "gaussian": SearchSpace("gaussian", _feature_map([
        {"border": 2, "exposure_gains": GAINS},
        {"border": 2, "mode": "global"},
    ]), with_best_backbone),
    "zero-shot": SearchSpace("zero-shot", [
        {},
        {"border": 2},
        {"percentile": 5.0},
        {"pool": 1},
        {"extractor": {"layers": FINE_LAYERS}},
    ]),
}

# settings that change only how a fitted head scores: candidates differing in nothing else share one fit
SCORE_ONLY = {"patchcore": ("sigma", "score_sigma", "num_neighbors"), "gaussian": ("sigma", "score_sigma", "border")}


def fit_key(head: str, cfg: ImageConfig) -> dict[str, Any] | None:
    """What a fit of `head` with `cfg` depends on (None: no sharing). PatchCore's global bank ignores the border;
    its image-conditioned bank (retrieve) keeps interior patches only, so there the border counts."""
    if head not in SCORE_ONLY:
        return None
    skip = set(SCORE_ONLY[head]) | ({"border"} if head == "patchcore" and not getattr(cfg, "retrieve", 0) else set())
    return {k: v for k, v in cfg.to_dict().items() if k not in skip}
