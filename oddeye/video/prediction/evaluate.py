"""Evaluation of the video-prediction head on a labelled data set (UCSD Ped2, Avenue, ShanghaiTech)."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm.auto import tqdm

from oddeye.core.head import Mapper, RunContext
from oddeye.core.metrics import frame_auroc, pixel_auroc
from oddeye.core.types import Result
from oddeye.video.datasets import VideoDataset
from oddeye.video.prediction.config import PredictionConfig
from oddeye.video.prediction.head import PredictionHead, VideoSeries

PIXEL_EVAL_SIZE = (180, 120)  # (w, h) at which error maps are compared with the masks
# Score options were chosen on the odd-numbered test videos (01, 03, ...: "dev") and checked on the even ones
# ("held"); interleaved because Ped2's clips 08-11 are abnormal in every frame and a 1-6 / 7-12 cut would put
# all four in one half.
HALVES = {"dev": slice(0, None, 2), "held": slice(1, None, 2)}


def score_dataset(head: PredictionHead, ds: VideoDataset, keep_maps: bool = True, progress: bool = True,
                  mapper: Mapper = map) -> tuple[list[VideoSeries], dict[str, float]]:
    """Predict every test video -> (series, {frames_per_s (wall), frames_per_cpu_s}), decode included; `mapper`
    maps the per-video work over the videos (e.g. on Ray; default: here, one after the other).

    frames_per_cpu_s divides by this process's CPU time: on a shared machine it says what the scoring
    would reach with the CPU time it used to itself (with 1 thread: one core). None when another mapper ran it.
    """
    t0, c0 = time.perf_counter(), time.process_time()
    videos = tqdm(ds.test, desc="score test videos", disable=not progress or mapper is not map, leave=False)
    series = list(mapper(partial(head.video_series, keep_maps=keep_maps), videos))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = sum(len(s.score) for s in series)
    return series, {"frames_per_s": n / max(wall, 1e-9),
                    "frames_per_cpu_s": n / max(cpu, 1e-9) if mapper is map else None}


def _pixel_auroc(ds: VideoDataset, series: list[VideoSeries], size: tuple[int, int]) -> float | None:
    """AUROC of the (blurred) error maps against the pixel masks, at `size` (w, h), over frames with masks."""
    masks, maps = [], []
    for item, s in zip(ds.test, series):
        if item.mask_loader is None or s.maps is None:
            continue
        for k, i in enumerate(s.indices):
            m = item.mask_loader(int(i))
            masks.append(cv2.resize(m.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool))
            e = cv2.GaussianBlur(s.maps[k], (0, 0), 1.0)
            maps.append(cv2.resize(e, size, interpolation=cv2.INTER_LINEAR))
    if not masks:
        return None
    m = np.stack(masks)
    if m.all() or not m.any():
        return None
    return pixel_auroc(m, np.stack(maps))


def series_metrics(ds: VideoDataset, series: list[VideoSeries], pixel: bool = True,
                   halves: bool = False) -> dict[str, Any]:
    """frame_auroc_micro/macro (frame scores min-max normalised per video) and pixel_auroc for scored test videos;
    with `halves`, also frame_auroc_{micro,macro}_{dev,held} over the HALVES of the test videos."""
    labels, scores = [], []
    for item, s in zip(ds.test, series):
        lab = np.asarray(item.labels)
        n = min(len(lab), len(s.score))  # a truncated video has fewer frames than labels
        labels.append(lab[:n])
        scores.append(s.score[:n])
    out: dict[str, Any] = dict(frame_auroc(labels, scores, normalize=True))
    if halves and len(labels) >= 2:
        for name, sl in HALVES.items():
            out.update({f"{k}_{name}": v for k, v in frame_auroc(labels[sl], scores[sl], normalize=True).items()})
    if pixel:
        out["pixel_auroc"] = _pixel_auroc(ds, series, PIXEL_EVAL_SIZE)
    return out


def evaluate_prediction(ds: VideoDataset, out: Path, config: PredictionConfig | None = None,
                        model_dir: Path | None = None, progress: bool = True, mapper: Mapper = map
                        ) -> tuple[dict[str, Any], PredictionHead, list[VideoSeries]]:
    """Train on ds.train with `config` and save the model to out/model (or load `model_dir`), score ds.test (the
    videos mapped by `mapper`, see score_dataset) -> (metrics, head, series)."""
    if model_dir is not None:
        head = PredictionHead.load(model_dir)
    else:
        head = PredictionHead(config).fit([v.source for v in ds.train],
                                          ctx=RunContext(out=out / "model", progress=progress))
        head.save(out / "model")
    import torch

    series, speed = score_dataset(head, ds, keep_maps=True, progress=progress, mapper=mapper)
    metrics = series_metrics(ds, series)
    size = head.config.model.size
    metrics.update({"train_minutes": round(float(head.train_info.get("train_minutes", 0.0)), 2),
                    "frames_per_s": round(speed["frames_per_s"], 1),
                    "frames_per_cpu_s": speed["frames_per_cpu_s"] and round(speed["frames_per_cpu_s"], 1),
                    "torch_threads": torch.get_num_threads(),
                    "resolution": f"{size}x{size} gray", "threshold": head.calibration.threshold})
    return metrics, head, series


def labelled_result(head: PredictionHead, ds: VideoDataset, series: list[VideoSeries],
                    metrics: dict[str, Any]) -> Result:
    """The Result of the scored test videos for review: each Score labelled (1: the video has an anomalous frame),
    the float metrics attached; the dense error maps are dropped."""
    result = Result(head=head.name, threshold=head.calibration.threshold,
                    metrics={k: v for k, v in metrics.items() if isinstance(v, float)})
    for item, s in zip(ds.test, series):
        s.maps = None
        sc, ev = head.to_score(s, label=int(item.labels.max()) if item.labels is not None else None)
        result.scores.append(sc)
        result.events.extend(ev)
    return result
