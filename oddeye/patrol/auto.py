"""`--auto` for the patrol head: pick its settings from the reference run alone (oddeye.core.auto).

The normal data of a patrol head is its reference run. A seeded sample of its frames validates; each sampled frame
is the reference of two pairs, both queried with a copy of it as a second run would see it (another exposure,
noise, slight defocus and a local displacement no homography explains, `second_run`; a small random homography,
`make_patrol_normal`): one left as it is (normal), one with a synthetic change, an object inserted or removed or a
local change (`make_patrol_change`, kind drawn by the seed, the same homography). A change nobody could see (a
brightness change on black, a blur of a flat area) is drawn again with the next seed. Every candidate of the space
(oddeye.patrol.search) compares those pairs; the metric is the pixel AUROC of the change maps against the changes'
masks, over the pixels the reference covers, normal pairs included (every pixel of theirs is normal). Pixel AUROC
is what the head's maps are judged by (DeepPCB's `pixel_auroc`; its boxes are cut from the same maps); a pair-level
AUROC (one score per pair) reads only each map's maximum and saturates (0.996 for 9 of 11 candidates on 16 DeepPCB
trainval templates), so it barely tells candidates apart.

The settings searched all act when a pair is compared, so the fit (ingesting the reference) is shared: `fit patrol
--auto` ingests the route once, searches, and saves that model with the chosen settings. The event threshold is
then set on the chosen candidate's pair scores (normal vs changed: the highest threshold of the best F1), never
below the config's (synthetic second runs vary less than real ones, so the fitted one can only raise it), unless
the user gave it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import cv2
import numpy as np

from oddeye.core import metrics
from oddeye.core.anomalies.patrol import PatrolChange, make_patrol_change, make_patrol_normal, second_run
from oddeye.core.auto import DEFAULT_MINUTES, SearchResult, apply, record, search, split_normals
from oddeye.core.head import RunContext
from oddeye.core.types import AnomalyMap, Result, Score
from oddeye.patrol.config import PatrolConfig
from oddeye.patrol.head import PatrolHead
from oddeye.patrol.search import fit_key, space_for

SEED = 0
VAL_FRACTION = 0.5  # share of the reference frames sampled to validate (nothing is learned from them: see above)
MAX_VAL = 48  # at most this many frames (each gives a normal and a changed pair): bounds the search's time
VAL_SIDE = 160  # change maps and masks are compared at this longest side (px)
VISIBLE = 8  # grey levels: a pixel of a change differs at least this much from the normal query ...
MIN_VISIBLE = 0.2  # ... in at least this share of the change's mask, else the change is drawn again
TRIES = 8  # draws of a change at most
METRIC = ("pixel AUROC of the change maps on validation pairs: reference frames vs a re-exposed, slightly warped "
          "copy (normal) and the same copy with a synthetic change (inserted, removed, local)")


@dataclass
class ValPair:
    """One validation pair: reference and query uint8 (H, W, 3); the change `mask` and the `judged` pixels (the
    reference covers them), both (h, w) bool at VAL_SIDE; label 1 if the query was changed."""

    id: str
    reference: np.ndarray
    query: np.ndarray
    mask: np.ndarray
    judged: np.ndarray
    label: int
    kind: str


def _small(a: np.ndarray, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    """`a` (H, W) float32 scaled so its longest side is VAL_SIDE (never up)."""
    h, w = a.shape[:2]
    s = min(1.0, VAL_SIDE / max(h, w))
    return cv2.resize(a, (max(1, round(w * s)), max(1, round(h * s))), interpolation=interpolation)


def _pair(ref: np.ndarray, s: int) -> tuple[PatrolChange, PatrolChange]:
    """The normal and the changed query of reference `ref` for seed `s`; the change redrawn (next seeds) until it
    can be seen (MIN_VISIBLE of its mask changed by VISIBLE grey levels), at most TRIES times."""
    for k in range(TRIES):
        copy = second_run(ref, s + k * 7919)
        normal = make_patrol_normal(copy, s + k * 7919, warp=True)
        changed = make_patrol_change(ref, copy, seed=s + k * 7919, warp=True)
        diff = np.abs(changed.query.astype(np.int16) - normal.query).reshape(*ref.shape[:2], -1).max(axis=2)
        if (diff[changed.mask] >= VISIBLE).mean() >= MIN_VISIBLE:
            break
    return normal, changed


def validation_pairs(frames: Sequence[np.ndarray], ids: Sequence[str], seed: int = SEED) -> list[ValPair]:
    """Two pairs per reference frame (H, W, 3) uint8: the normal one, then the changed one (same homography)."""
    pairs = []
    for i, (ref, name) in enumerate(zip(frames, ids)):
        normal, changed = _pair(ref, seed * 100_003 + i)
        h, w = ref.shape[:2]
        cover = cv2.warpPerspective(np.ones((h, w), np.uint8), normal.homography, (w, h), flags=cv2.INTER_NEAREST)
        judged = _small(cv2.erode(cover, np.ones((5, 5), np.uint8)).astype(np.float32)) > 0.99
        for p, label in ((normal, 0), (changed, 1)):
            mask = _small(p.mask.astype(np.float32)) >= 0.5
            pairs.append(ValPair(f"{name}~{p.kind}", ref, p.query, mask & judged, judged, label, p.kind))
    return pairs


def pixel_labels(pairs: Sequence[ValPair]) -> np.ndarray:
    """The judged pixels' labels of every pair, concatenated (P,) int: 1 where the query was changed."""
    return np.concatenate([p.mask[p.judged] for p in pairs]).astype(np.int64)


class PairScorer:
    """A PatrolHead as the search sees it: `fit` has nothing to learn (each validation pair brings its reference),
    `score` compares each pair -> one Score per pair: the frame score and the change map at VAL_SIDE."""

    name = "patrol"

    def __init__(self, config: PatrolConfig, extractors: dict | None = None) -> None:
        self.head = PatrolHead(config)
        if extractors is not None:
            self.head._extractors = extractors  # candidates share the backbones they build

    @property
    def config(self) -> PatrolConfig:
        """The settings pairs are compared with (the search sets them for candidates that share this fit)."""
        return self.head.config

    @config.setter
    def config(self, value: PatrolConfig) -> None:
        self.head.config = value

    def fit(self, samples: Iterable[Any], *, ctx: RunContext | None = None) -> PairScorer:
        """Nothing to fit: the pairs carry their references."""
        return self

    def score(self, samples: Iterable[ValPair], *, ctx: RunContext | None = None) -> Result:
        """Compare each pair: Score.score the frame score (0 if alignment failed), maps["change"] at VAL_SIDE."""
        result = Result(head="patrol", meta={"config": self.config.to_dict()})
        for p in samples:
            _, ch = self.head.compare(p.query, p.reference)
            cmap = np.zeros(p.query.shape[:2], np.float32) if ch is None else ch.map
            result.scores.append(Score(p.id, 0.0 if ch is None else float(ch.score), label=p.label,
                                       maps={"change": AnomalyMap("pixel", _small(cmap))}))
        return result


def event_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The highest frame score threshold of the best F1 on the pair scores (normal 0 vs changed 1): the lowest
    changed score it flags, a hair below it (events flag scores above the threshold), as far from the normal pairs
    as the changes allow."""
    _, t = metrics.f1_max(labels, scores)
    return float(np.nextafter(t, -np.inf))


@dataclass
class AutoSearch:
    """What `auto_search` found: the chosen config (event threshold set), the search table and facts about the
    validation set (for `record`)."""

    config: PatrolConfig
    found: SearchResult
    meta: dict[str, Any]

    def save(self, head: PatrolHead, out: str | Path) -> Path:
        """Save `head` (fitted, with the chosen config) and add the search table and choice to its manifest."""
        head.save(out)
        record(out, self.found, **self.meta)
        return Path(out)

    def line(self) -> dict[str, Any]:
        """The keys `eval patrol --auto` adds to its JSON line."""
        return {"auto": self.found.chosen_settings, "auto_val_auroc": self.found.trials[self.found.chosen].auroc,
                "auto_event_threshold": round(self.config.event_threshold, 4),
                "auto_s": round(self.found.elapsed_s, 1)}


def auto_search(base: PatrolConfig, frames: Sequence[np.ndarray], ids: Sequence[str],
                given: dict[str, Any] | None = None, minutes: float = DEFAULT_MINUTES, seed: int = SEED,
                log: Callable[[str], None] | None = None) -> AutoSearch:
    """Search the patrol space around `base` (the settings the user `given` fixed) on validation pairs made from
    the normal reference `frames` (H, W, 3) uint8 (already sampled; `ids` name them); never sees a test label."""
    given = given or {}
    pairs = validation_pairs(frames, ids, seed)
    labels = pixel_labels(pairs)
    pair_labels = np.array([p.label for p in pairs])
    extractors: dict = {}
    pair_scores: dict[str, np.ndarray] = {}

    def scores(result: Result) -> np.ndarray:
        """The judged pixels' change values of every pair (like pixel_labels); keeps the pair scores."""
        pair_scores[json.dumps(result.meta["config"], sort_keys=True)] = result.sample_scores()
        return np.concatenate([s.maps["change"].values[p.judged] for s, p in zip(result.scores, pairs)])

    def prepare(cfg: PatrolConfig) -> tuple[float, float]:
        """Build (untimed) the backbone a candidate's features need: candidates share it."""
        if cfg.use_features and cfg.change.feature_weight > 0:
            PairScorer(cfg, extractors).head.extractor.extract(np.zeros((1, 32, 32, 3), np.uint8))
        return 0.0, 0.0

    found = search(space_for(base, given), base, lambda cfg: PairScorer(cfg, extractors), [], pairs, labels,
                   minutes=minutes, scores=scores, prepare=prepare, same_fit=fit_key, log=log, metric=METRIC)
    config = apply(base, found.chosen_settings)
    chosen = pair_scores[json.dumps(config.to_dict(), sort_keys=True)]
    meta: dict[str, Any] = {"n_val_frames": len(frames), "n_val_normal": int((pair_labels == 0).sum()),
                            "n_val_anomalous": int(pair_labels.sum()), "val_side": VAL_SIDE, "seed": seed,
                            "anomalies": sorted({p.kind for p in pairs if p.label}),
                            "pair_auroc": round(metrics.auroc(pair_labels, chosen), 4)}
    if "event_threshold" in given:
        meta["event_threshold"] = "given"
    else:
        fitted = event_threshold(pair_labels, chosen)
        config = config.replace(event_threshold=max(fitted, base.event_threshold))
        meta["event_threshold"] = (f"{config.event_threshold:.4g}: the larger of the config's and {fitted:.4g}, the "
                                   "highest with the best F1 on the chosen candidate's pair scores (normal vs changed)")
    return AutoSearch(config, found, meta)


def sample(n: int, seed: int = SEED) -> list[int]:
    """The indices (in order) of the seeded sample of n reference frames that validates."""
    return split_normals(list(range(n)), VAL_FRACTION, seed=seed, max_val=MAX_VAL, min_fit=0)[1]


def search_route(head: PatrolHead, given: dict[str, Any], minutes: float = DEFAULT_MINUTES,
                 log: Callable[[str], None] | None = None) -> AutoSearch:
    """`fit patrol --auto`: search on the fitted head's own reference run (its frames as it stores them)."""
    ref = head._need_reference()
    idx = sample(len(ref))
    return auto_search(head.config, ref.frames(idx), [f"frame_{i:06d}" for i in idx], given, minutes, log=log)


def search_deeppcb(root: str | Path, base: PatrolConfig, given: dict[str, Any], minutes: float = DEFAULT_MINUTES,
                   log: Callable[[str], None] | None = None) -> AutoSearch:
    """`eval patrol --dataset deeppcb --auto`: search on the TRAINVAL split's templates only (never a test image,
    never an annotation: synthetic changes on the defect-free templates are the point)."""
    from oddeye.core.imageio import read_image
    from oddeye.patrol.deeppcb import load_templates

    t0 = time.perf_counter()
    templates = load_templates(root, "trainval")
    picked = [templates[i] for i in sample(len(templates))]
    found = auto_search(base, [read_image(p, "rgb") for p in picked], [p.stem for p in picked], given, minutes,
                        log=log)
    found.meta["split"] = "trainval (templates only)"
    found.meta["search_s"] = round(time.perf_counter() - t0, 1)
    return found
