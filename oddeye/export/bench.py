"""`oddeye bench export`: score the same data with the original model and with its export; differences, AUROC and
speed both ways.

Differences: `max_abs_diff` is the largest |original - export| over the image scores and every pixel map;
`max_rel_diff` the largest of those differences divided by the largest |original| value of the same array (the score
vector, or one image's map), so a map's near-zero pixels do not blow it up.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from oddeye.core import metrics
from oddeye.core.errors import EmptyDataError
from oddeye.core.imageio import list_images
from oddeye.export.diff import Diff

NORMAL_FOLDERS = ("good", "ok", "normal", "free")
CHUNK = 64  # images scored by both sides at a time: maps are compared and dropped per chunk


def labelled_images(data: Path, dataset: str | None = None, seed: int = 0) -> tuple[list[Path], list[int] | None]:
    """Image paths of `data` and their labels where known: a data set's test split (`dataset`, its public layout),
    a folder of class folders (good/ok/normal/free = 0, any other = 1), or a plain folder (labels unknown)."""
    if dataset:
        from oddeye.image.datasets import load_image_dataset

        test = load_image_dataset(dataset, data, seed=seed).test
        return [Path(it.path) for it in test], [int(it.label) for it in test]
    direct = list_images(data)
    if direct:
        return direct, None
    paths, labels = [], []
    for sub in sorted(p for p in data.iterdir() if p.is_dir()):
        found = list_images(sub)
        paths += found
        labels += [0 if sub.name.lower() in NORMAL_FOLDERS else 1] * len(found)
    if not paths:
        raise EmptyDataError(f"no images in {data} or its sub-folders", "pass --data a folder of images")
    return paths, labels


def _auroc(labels: Sequence[int] | None, scores: list[float]) -> float | None:
    if not labels or len(set(labels)) < 2:
        return None
    return float(metrics.auroc(np.asarray(labels), np.asarray(scores)))


def bench_image(model_dir: Path, export_dir: Path, paths: list[Path], labels: list[int] | None,
                threads: int | None = None) -> dict[str, Any]:
    """Score `paths` with the model folder and with the export, chunk by chunk; the bench figures."""
    from oddeye.core.head import RunContext, load_head
    from oddeye.runtime.image import ImageModel

    model, exported = load_head(model_dir), ImageModel(export_dir, threads)
    quiet = RunContext(progress=False, keep_maps=True)
    model.score(paths[:2], ctx=quiet)  # warm-up: sessions built, first batches out of the way
    list(exported.score_files(paths[:2]))
    diff, s_orig, s_exp, t_orig, t_exp = Diff(), [], [], 0.0, 0.0
    for s in range(0, len(paths), CHUNK):
        chunk = paths[s:s + CHUNK]
        t0 = time.perf_counter()
        res = model.score(chunk, ctx=quiet)
        t1 = time.perf_counter()
        got = list(exported.score_files(chunk))
        t_exp += time.perf_counter() - t1
        t_orig += t1 - t0
        for sc, (_, score, amap) in zip(res.scores, got):
            diff.add(sc.maps["anomaly"].values, amap)
            s_orig.append(sc.score)
            s_exp.append(score)
    diff.add(np.asarray(s_orig), np.asarray(s_exp))
    n = len(paths)
    return {"max_abs_diff": diff.abs, "max_rel_diff": diff.rel, "auroc_original": _auroc(labels, s_orig),
            "auroc_export": _auroc(labels, s_exp), "images_per_s_original": n / t_orig,
            "images_per_s_export": n / t_exp, "speed_ratio": t_orig / t_exp, "n_images": n}


def bench_export(model_dir: str | Path, export_dir: str | Path, data: str | Path, dataset: str | None = None,
                 seed: int = 0, limit: int | None = None, threads: int | None = None) -> dict[str, Any]:
    """The `oddeye bench export` figures of a model folder and its export on `data`."""
    from oddeye.runtime.manifest import read_export

    _, doc = read_export(export_dir)
    data = Path(data)
    if doc["kind"] == "video":
        from oddeye.export.bench_video import bench_video

        figs = bench_video(Path(model_dir), Path(export_dir), data, dataset, limit, threads)
    else:
        paths, labels = labelled_images(data, dataset, seed)
        if limit and limit < len(paths):
            keep = np.linspace(0, len(paths) - 1, limit).round().astype(int)
            paths, labels = [paths[i] for i in keep], [labels[i] for i in keep] if labels else None
        figs = bench_image(Path(model_dir), Path(export_dir), paths, labels, threads)
    return {**figs, "head": doc["head"], "backend": doc["backend"]}
