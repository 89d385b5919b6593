"""Evaluate an image head on a data set in its public layout: image/pixel AUROC, AUPRO, AUPIMO, F1-max, images/s."""

from __future__ import annotations

import inspect
import time
from typing import Any

import cv2
import numpy as np

from oddeye.core import metrics
from oddeye.core.errors import InputError
from oddeye.core.types import Result

HEADS = ("patchcore", "gaussian", "zero-shot")


def make_head(head: str, **kw: Any) -> Any:
    """A fresh head by name with its keyword options (unknown options for that head are dropped)."""
    if head == "patchcore":
        from oddeye.image.patchcore import PatchCoreHead as cls
    elif head == "gaussian":
        from oddeye.image.gaussian import GaussianHead as cls
    elif head == "zero-shot":
        from oddeye.image.zeroshot import ZeroShotHead as cls
    else:
        raise InputError(f"unknown image head {head!r}", f"choose one of {', '.join(HEADS)}")
    accepted = inspect.signature(cls).parameters
    return cls(**{k: v for k, v in kw.items() if k in accepted and v is not None})


def load_head(directory: Any, device: str = "cpu") -> Any:
    """Load any image head from its model folder, dispatching on the manifest's head name."""
    from oddeye.core.errors import ModelError
    from oddeye.core.head import read_manifest

    found = read_manifest(directory)["head"]
    if found == "patchcore":
        from oddeye.image.patchcore import PatchCoreHead as cls
    elif found == "gaussian":
        from oddeye.image.gaussian import GaussianHead as cls
    elif found == "zero-shot":
        from oddeye.image.zeroshot import ZeroShotHead as cls
    else:
        raise ModelError(f"{directory} holds a '{found}' model, not an image model",
                         "use `oddeye score` for that kind of model")
    return cls.load(directory, device=device)


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
             **kw: Any) -> tuple[dict[str, Any], Result, Any]:
    """Fit `head` on dataset.train (not for zero-shot), score dataset.test; (metrics, Result without maps, model)."""
    model = make_head(head, **kw)
    t0 = time.perf_counter()
    if head != "zero-shot":
        model.fit(dataset.train)
    fit_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    result = model.score(dataset.test, out=out, keep_maps=pixel)
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
