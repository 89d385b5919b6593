"""Evaluate the rules head on a labelled video data set: frame AUROC, reason hit rate, speed."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from oddeye.core.errors import EmptyDataError
from oddeye.core.head import Mapper, RunContext
from oddeye.core.metrics import frame_auroc
from oddeye.core.types import Result, Score
from oddeye.video.rules.deduction import Verdict
from oddeye.video.rules.head import HEAD, RulesHead
from oddeye.video.rules.sources import as_source


def reason_hits(verdicts: list[Verdict], labels: np.ndarray, mask_loader: Any, flag_at: float = 0.5) -> tuple[int, int]:
    """(hits, flagged): anomalous frames flagged (a rule of weight >= flag_at broken), and those whose reason
    box touches the true mask."""
    hits = flagged = 0
    for k, v in enumerate(verdicts):
        if k >= len(labels) or labels[k] != 1 or not v.flagged(flag_at):
            continue
        flagged += 1
        if v.box is None or mask_loader is None:
            continue
        mask = mask_loader(v.index)
        x1, y1, x2, y2 = (int(round(c)) for c in v.box)
        if mask[max(y1, 0):y2 + 1, max(x1, 0):x2 + 1].any():
            hits += 1
    return hits, flagged


def score_item(head: RulesHead, item: Any) -> tuple[Score, list[Verdict], float]:
    """(Score, verdicts, seconds) of one test video of a data set."""
    src = as_source(item.source, item.name)
    t = time.perf_counter()
    try:
        sc, verdicts = head.score_video(src)
    finally:
        src.close()
    return sc, verdicts, time.perf_counter() - t


def evaluate_rules(dataset: Any, shots: int | None = None, out: str | Path | None = None,
                   train_clips: int | None = None, head: RulesHead | None = None,
                   show_progress: bool = True, mapper: Mapper = map, **overrides: Any) -> dict[str, Any]:
    """Fit on dataset.train (first `train_clips` clips; `shots` frames, None = all), score dataset.test (the
    videos mapped by `mapper`, e.g. on Ray; default: one after the other).

    head: an unfitted RulesHead (default: RulesHead(**overrides), overrides being RulesConfig fields).
    Returns frame_auroc_micro/macro, reason_hit_rate, frames_per_s (perception + deduction + decoding), n_rules,
    n_frames, fit_s; writes the model, rules and Result under `out` when given.
    """
    train = dataset.train[:train_clips] if train_clips else dataset.train
    if not train or not dataset.test:
        raise EmptyDataError(f"data set {dataset.name} has no training or no test videos")
    head = head or RulesHead(**overrides)
    t0 = time.perf_counter()
    head.fit([v.source for v in train], ctx=RunContext(shots=shots, progress=show_progress))
    fit_s = time.perf_counter() - t0
    result = Result(head=HEAD, threshold=None, meta={"dataset": dataset.name, "shots": shots,
                                                    "train_clips": len(train), "n_rules": len(head.rules)})
    labels, scores = [], []
    hits = flagged = n_frames = 0
    score_s = 0.0
    videos = tqdm(dataset.test, desc="scoring test videos", unit="video",
                  disable=not show_progress or mapper is not map)  # another mapper shows its own bar
    for item, (sc, verdicts, seconds) in zip(dataset.test, mapper(partial(score_item, head), videos)):
        score_s += seconds
        sc.label = int(item.labels.max()) if item.labels is not None else None
        result.scores.append(sc)
        result.events += head.events(sc, verdicts)
        n_frames += len(verdicts)
        if item.labels is not None:
            labels.append(item.labels[: len(sc.frame_scores)])
            scores.append(sc.frame_scores[: len(item.labels)])
            h, f = reason_hits(verdicts, item.labels, item.mask_loader, head.config.flag_at)
            hits, flagged = hits + h, flagged + f
    metrics: dict[str, Any] = {}
    if labels:
        metrics.update(frame_auroc(labels, scores))
    metrics["reason_hit_rate"] = hits / flagged if flagged else float("nan")
    metrics["flagged_anomalous_frames"] = flagged
    metrics["frames_per_s"] = n_frames / max(score_s, 1e-9)
    metrics["n_rules"] = len(head.rules)
    metrics["n_frames"] = n_frames
    metrics["fit_s"] = round(fit_s, 2)
    result.metrics = {k: float(v) for k, v in metrics.items()}
    if out is not None:
        o = Path(out)
        head.save(o / "model")
        result.save(o)
    return metrics
