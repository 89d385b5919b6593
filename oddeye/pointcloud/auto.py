"""`--auto` for the point-cloud head: pick the score's term weights from normal clouds alone (oddeye.core.auto).

A seeded quarter of the normal clouds validates, in turn in ROTATIONS disjoint parts: each of its clouds as
VARIANTS 90% resamplings, each clean and with every synthetic defect (dent, bulge, hole, crack, blob:
oddeye.core.anomalies.points, in a seed stream of its own, so never a defect of the scan-defects test sets). Every
candidate of the space (oddeye.pointcloud.search) is fitted on the other clouds and scored on those (candidates that
differ in score-time settings only share one fit); its AUROC is the mean over the parts. The chosen settings are
then fitted on ALL the normal clouds. `eval pointcloud --auto` runs this per fold on the fold's training scans only.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from oddeye.core.anomalies.points import KINDS, make_defect
from oddeye.core.auto import (DEFAULT_MINUTES, SearchResult, Trial, apply, choose, record, search,
                              validation_parts)
from oddeye.core.geometry import extent, point_spacing
from oddeye.core.head import RunContext
from oddeye.pointcloud.config import PointCloudConfig
from oddeye.pointcloud.head import PointCloudHead, as_cloud
from oddeye.pointcloud.io import Cloud, finish_cloud
from oddeye.pointcloud.search import SPACE, fit_key

VAL_FRACTION = 0.25  # share of the normal clouds that validate (2 of a bunny fold's 8 training scans) ...
ROTATIONS = 2  # ... in turn, in this many disjoint parts (as far as the clouds allow): AUROC = the mean over them
VARIANTS = 3  # resampled variants of each validation cloud, each clean and with every defect kind
KEEP = 0.9  # each variant keeps this share of the cloud's points (the scan-defects protocol's resampling)
SIZES = (0.01, 0.05)  # defect radius / the cloud's extent, as the scan-defects test sets draw it
MIN_RADIUS = 3.0  # ... but at least this many point spacings: on a sparse cloud a smaller defect touches no point
STREAM = 2103  # seed stream of the search's resampling and defects (the test sets' use seed * 1000 + fold)
METRIC = ("object AUROC on held-out normal clouds (resampled) + a dent, bulge, hole, crack and blob made on each "
          "resampling")


def size_range(points: np.ndarray) -> tuple[float, float]:
    """The range of defect sizes (radius / extent) for a cloud (N, 3): SIZES, raised to MIN_RADIUS point
    spacings on sparse clouds."""
    least = MIN_RADIUS * point_spacing(points) / max(extent(points), 1e-12)
    return max(SIZES[0], least), max(SIZES[1], 2 * least)


def validation_set(clouds: Sequence[Cloud], seed: int, variants: int = VARIANTS) -> tuple[list[Cloud], np.ndarray]:
    """`variants` seeded resamplings of each cloud, each clean and with each defect kind (sizes: size_range);
    labels (n x variants x 6,) 0 clean / 1 defect."""
    rng = np.random.default_rng([seed, STREAM])
    out, labels = [], []
    for c in clouds:
        sizes = size_range(c.points)
        for v in range(variants):
            p = c.points[rng.random(len(c)) < KEEP]
            out.append(finish_cloud(p, f"{c.name}_v{v}_clean"))
            labels.append(0)
            for kind in KINDS:
                d = make_defect(p, kind, seed=int(rng.integers(2**31)), size_range=sizes)
                out.append(finish_cloud(d.points, f"{c.name}_v{v}_{kind}"))
                labels.append(1)
    return out, np.array(labels)


@dataclass
class AutoSearch:
    """What `auto_search` found: the chosen config, the search table, facts about the validation set, and the
    normal clouds to fit the choice on."""

    config: PointCloudConfig
    found: SearchResult
    meta: dict[str, Any]
    clouds: list[Cloud]

    def fit(self, progress: bool = False) -> PointCloudHead:
        """A head of the chosen settings fitted on ALL the normal clouds (fit and validation parts)."""
        return PointCloudHead(self.config).fit(self.clouds, ctx=RunContext(progress=progress))

    def save(self, head: PointCloudHead, out: str | Path) -> Path:
        """Save `head` and add the search table and choice to its manifest."""
        head.save(out)
        record(out, self.found, **self.meta)
        return Path(out)

    def summary(self) -> dict[str, Any]:
        """The search table, the choice and the validation facts (a fold's entry in an eval's meta)."""
        return {**self.found.to_dict(), **self.meta}


def combine(runs: list[SearchResult], budget_s: float, elapsed_s: float) -> SearchResult:
    """One table from searches of the same space on other validation parts: a candidate's AUROC is the mean over
    them, its times the sums; one not done in every part keeps the first reason it was not; chosen by `choose`."""
    trials = []
    for i, first in enumerate(runs[0].trials):
        done = [r.trials[i] for r in runs]
        missed = next((t.status for t in done if t.status != "ok"), None)
        trials.append(Trial(first.settings, status=missed) if missed else
                      Trial(first.settings, float(np.mean([t.auroc for t in done])), sum(t.fit_s or 0 for t in done),
                            sum(t.score_s or 0 for t in done)))
    pick, reason = choose(trials)
    return SearchResult(runs[0].space, trials, pick, reason, budget_s, elapsed_s, METRIC)


def auto_search(base: PointCloudConfig, samples: Sequence[Any], given: dict[str, Any] | None = None,
                minutes: float = DEFAULT_MINUTES, log: Callable[[str], None] | None = None) -> AutoSearch:
    """Search the space around config `base` (the settings the user `given` fixed in every candidate) on the normal
    clouds `samples` (Clouds, paths or (N, 3) arrays), validating on each of its ROTATIONS disjoint validation parts
    in turn (the budget shared among them); never sees a test cloud."""
    clouds = [as_cloud(s) for s in samples]
    space = SPACE.fixing(given or {})
    parts = validation_parts(len(clouds), VAL_FRACTION, base.seed, ROTATIONS)
    say = log or (lambda _: None)
    runs, t0, n_val = [], time.perf_counter(), [0, 0]
    for j, part in enumerate(parts):
        fit_part = [c for i, c in enumerate(clouds) if i not in part]
        val, labels = validation_set([clouds[i] for i in part], seed=base.seed + j)
        n_val = [n_val[0] + int((labels == 0).sum()), n_val[1] + int(labels.sum())]
        with warnings.catch_warnings():  # candidates without a fitting surface field warn on each validation cloud
            warnings.simplefilter("ignore")
            runs.append(search(space, base, PointCloudHead, fit_part, val, labels, minutes=minutes / len(parts),
                               same_fit=fit_key, log=lambda line, j=j: say(f"part {j + 1}/{len(parts)}: {line}"),
                               metric=METRIC))
    found = combine(runs, 60.0 * minutes, time.perf_counter() - t0)
    meta = {"n_fit": len(clouds) - len(parts[0]), "n_val_normal": n_val[0], "n_val_anomalous": n_val[1],
            "n_final": len(clouds), "seed": base.seed, "variants": VARIANTS, "anomalies": list(KINDS),
            "val_clouds": [[clouds[i].name for i in part] for part in parts],
            "auroc_per_part": [[t.auroc for t in r.trials] for r in runs]}
    return AutoSearch(apply(base, found.chosen_settings), found, meta, clouds)


def fold_search(train: dict[str, np.ndarray], *, base: PointCloudConfig, given: dict[str, Any], minutes: float,
                log: Callable[[str], None] | None = None) -> tuple[PointCloudHead, dict[str, Any]]:
    """`eval pointcloud --auto`, one fold: search on the fold's TRAINING scans {name: (N, 3)} only; an unfitted
    head of the chosen settings and the fold's search summary."""
    found = auto_search(base, [finish_cloud(p, name) for name, p in train.items()], given=given, minutes=minutes,
                        log=log)
    for line in found.found.lines() if log else ():
        log(line)
    return PointCloudHead(found.config), found.summary()
