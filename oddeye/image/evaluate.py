"""Evaluate an image head on a data set in its public layout: image/pixel AUROC, AUPRO, AUPIMO, F1-max, images/s."""

from __future__ import annotations

import importlib
import time
from dataclasses import fields
from typing import Any, Callable

import cv2
import numpy as np

from oddeye.core import metrics
from oddeye.core.errors import InputError
from oddeye.core.head import HEADS as REGISTRY
from oddeye.core.head import RunContext
from oddeye.core.types import Result

HEADS = tuple(name for name, (kind, _) in REGISTRY.items() if kind == "image")  # patchcore, gaussian, zero-shot


def head_class(head: str) -> Any:
    """The class of an image head by its name (patchcore, gaussian, zero-shot)."""
    if head not in HEADS:
        raise InputError(f"unknown image head {head!r}", f"choose one of {', '.join(HEADS)}")
    module, name = REGISTRY[head][1].split(":")
    return getattr(importlib.import_module(module), name)


def make_head(head: str, **settings: Any) -> Any:
    """A fresh head by name; `settings` are config fields (those the head does not have are dropped)."""
    cls = head_class(head)
    known = {f.name for f in fields(cls.config_class)}
    return cls(**{k: v for k, v in settings.items() if k in known})


def pixel_metrics(result: Result, test: list[Any], size: int) -> dict[str, float]:
    """Pixel AUROC, AUPRO (FPR <= 0.3) and AUPIMO on maps and masks resized to (size, size)."""
    from oddeye.image.common import as_items

    masks, maps = [], []
    for sc, it in zip(result.scores, as_items(test)):
        amap = sc.maps.get("anomaly")
        if amap is None:
            return {"pixel_auroc": float("nan"), "aupro": float("nan"), "aupimo": float("nan")}
        m = it.load_mask(amap.values.shape)
        if m is None:
            continue
        maps.append(cv2.resize(amap.values, (size, size), interpolation=cv2.INTER_LINEAR))
        masks.append(cv2.resize(m.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST).astype(bool))
    if not masks or not any(m.any() for m in masks):
        return {"pixel_auroc": float("nan"), "aupro": float("nan"), "aupimo": float("nan")}
    mk, mp = np.stack(masks), np.stack(maps)
    try:
        aupimo = float(metrics.aupimo(mk, mp)[0])
    except InputError:  # too few normal pixels to resolve FPR 1e-5 (tiny test sets)
        aupimo = float("nan")
    return {"pixel_auroc": metrics.pixel_auroc(mk, mp), "aupro": metrics.aupro(mk, mp), "aupimo": aupimo}


def evaluate(dataset: Any, head: str = "patchcore", pixel: bool = True, out: Any = None,
             score: Callable[[Any, list[Any], RunContext], Result] | None = None,
             **settings: Any) -> tuple[dict[str, Any], Result, Any]:
    """Fit `head` (config `settings`, see make_head) on dataset.train (not for zero-shot), score dataset.test with
    overlays under `out` (by `score(model, samples, ctx)` when given, e.g. on Ray; else model.score); (metrics,
    Result without maps, model)."""
    model = make_head(head, **settings)
    t0 = time.perf_counter()
    if head != "zero-shot":
        model.fit(dataset.train)
    fit_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    ctx = RunContext(out=out, keep_maps=pixel)
    result = score(model, dataset.test, ctx) if score is not None else model.score(dataset.test, ctx=ctx)
    score_s = time.perf_counter() - t1
    labels = np.array([it.label for it in dataset.test])
    scores = result.sample_scores()
    f1, thr = metrics.f1_max(labels, scores)
    m: dict[str, Any] = {"image_auroc": metrics.auroc(labels, scores), "image_ap": metrics.average_precision(labels, scores),
                         "f1_max": f1, "f1_threshold": thr}
    if pixel:
        m.update(pixel_metrics(result, dataset.test, model.extractor.image_size))
    else:
        m.update({"pixel_auroc": float("nan"), "aupro": float("nan"), "aupimo": float("nan")})
    per_type: dict[str, float] = {}
    types = [getattr(it, "defect_type", None) for it in dataset.test]
    for t in sorted({t for t in types if t and t != "good"}):
        sel = np.array([tt in (t, "good") for tt in types])
        per_type[t] = metrics.auroc(labels[sel], scores[sel])
    m.update({"images_per_s": len(dataset.test) / max(score_s, 1e-9), "fit_s": fit_s, "score_s": score_s,
              "n_train": 0 if head == "zero-shot" else len(dataset.train), "image_auroc_per_type": per_type})
    for sc in result.scores:
        sc.maps.clear()
    result.metrics = {k: v for k, v in m.items() if isinstance(v, float)}
    return m, result, model
