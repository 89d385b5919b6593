"""The rules head's `--auto` search space, declared here and nowhere else (oddeye.core.auto.SearchSpace).

Candidates are partial RulesConfig dicts, tried in order, the defaults first, then the cheap ones: smoothing and
softness only change scoring and share one fit (`fit_key`); margins and the induction's subsets need a refit (a few
seconds of perception on Ped2's 16 clips); appearance (crops embedded with the backbone) is slowest, last. Rule
margins and softness form a grid (both move where a value starts to count as a breach); the others vary one at a
time around the defaults.
Settings from the issue's list: margins, induction subsets, smoothing; and the appearance rules.
"""

from __future__ import annotations

from typing import Any

from oddeye.core.auto import SearchSpace
from oddeye.video.rules.config import RulesConfig

FAST_APPEARANCE = {"enabled": True, "crop": 32, "every": 4}  # about 4x cheaper than crop 64 on every frame

SOFT = (0.75, 0.25, 1.5)  # margin units below a limit where the judgement starts to rise (the default first)
MARGIN_K = (1.0, 0.5, 2.0)  # rule margins in (high quantile - median) units (the default first)


def _margins(margin_k: float, soft: float) -> dict[str, Any]:
    """A candidate of these margins and softness ({} for the defaults)."""
    out: dict[str, Any] = {} if soft == SOFT[0] else {"soft": soft}
    return out if margin_k == MARGIN_K[0] else {**out, "induction": {"margin_k": margin_k}}


SPACE = SearchSpace("video-rules", [
    *(_margins(MARGIN_K[0], s) for s in SOFT),  # the softness only scores: these share the defaults' fit ...
    {"sigma": 5.0},
    {"sigma": 20.0},
    *(_margins(m, s) for m in MARGIN_K[1:] for s in SOFT),  # ... and these one fit per margin
    {"induction": {"subsets": 1, "subset_frac": 1.0}},
    {"induction": {"subsets": 9, "recur": 0.8}},
    {"appearance": FAST_APPEARANCE},
    {"appearance": {**FAST_APPEARANCE, "margin": 0.5}},
    {"appearance": {**FAST_APPEARANCE, "margin": 2.0}},
    {"appearance": {"enabled": True}},
])

# settings that only change how a fitted head scores: candidates differing in nothing else share one fit
SCORE_ONLY = ("sigma", "soft", "persist", "recheck", "flag_at")


def fit_key(cfg: RulesConfig) -> dict[str, Any]:
    """What a fit with `cfg` depends on: every setting but the score-time ones."""
    return {k: v for k, v in cfg.to_dict().items() if k not in SCORE_ONLY}


def space_for(given: dict[str, Any]) -> SearchSpace:
    """The space with the settings the user `given` fixed; with appearance switched off by the user, no appearance
    candidate is left (its other settings would change nothing)."""
    space = SPACE
    if given.get("appearance", {}).get("enabled") is False:
        space = SearchSpace(SPACE.name, [c for c in SPACE.candidates if "appearance" not in c])
    return space.fixing(given)
