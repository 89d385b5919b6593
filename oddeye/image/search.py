"""The image heads' `--auto` search spaces, declared here and nowhere else (oddeye.core.auto.SearchSpace).

Candidates are partial configs, tried in order, the head's defaults first: under a short budget the defaults and
the cheap variants are tried before the expensive ones. Settings from the issue's list: backbone and layers,
exposure gains, position weight, retrieval of the nearest normal images, border, score smoothing.
"""

from __future__ import annotations

from typing import Any

from oddeye.core.auto import SearchSpace
from oddeye.image.config import ImageConfig

BACKBONES = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")  # the built-in ones (their default
# blocks: strides 8 and 16 each)
GAINS = (0.7, 0.85, 1.25, 1.6, 2.0)  # learn each normal image also at these exposures (about +-1 stop)
FINE_LAYERS = [3, 7]  # Lite0 blocks at strides 8 and 16 one stage earlier than the default (4, 10); Lite0 only


def _feature_map(extra: list[dict]) -> list[dict]:
    """Candidates PatchCore and the Gaussian head share: defaults, border, smoothing, finer layers, other
    backbones, exposure gains; then the head's own `extra`."""
    return [
        {},
        {"border": 2},
        {"border": 2, "score_sigma": 2.0},
        {"border": 2, "extractor": {"layers": FINE_LAYERS}},
        *({"border": 2, "extractor": {"name": b}} for b in BACKBONES[1:]),
        {"border": 2, "exposure_gains": GAINS},
        *extra,
    ]


SPACES: dict[str, SearchSpace] = {
    "patchcore": SearchSpace("patchcore", _feature_map([
        {"border": 2, "position_weight": 8.0},
        {"border": 2, "retrieve": 30},
        {"border": 2, "exposure_gains": GAINS, "retrieve": 30},
        {"border": 2, "exposure_gains": GAINS, "retrieve": 30, "position_weight": 8.0},
    ])),
    "gaussian": SearchSpace("gaussian", _feature_map([
        {"border": 2, "mode": "global"},
    ])),
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
