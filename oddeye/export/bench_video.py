"""`oddeye bench export` for a video-prediction model: per-frame z-scores and error maps of `oddeye score video` and
of the export (oddeye.runtime.VideoModel) on the same videos; frame AUROC both ways where labels are known."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from oddeye.core import metrics
from oddeye.core.errors import EmptyDataError
from oddeye.export.diff import Diff


def videos(data: Path, dataset: str | None) -> tuple[list[Path], list[np.ndarray] | None]:
    """Test videos (frame folders or files) and their frame labels: a data set's test split (its public layout) or
    the frame folders and video files directly under `data` (labels unknown)."""
    from oddeye.video.datasets import _videos_in, load_video_dataset

    if dataset:
        test = load_video_dataset(dataset, data).test
        labels = [v.labels for v in test]
        return [Path(v.source) for v in test], labels if all(lab is not None for lab in labels) else None
    found = _videos_in(data)
    if not found:
        raise EmptyDataError(f"no frame folders or video files in {data}", "pass --data a folder of them")
    return found, None


def bench_video(model_dir: Path, export_dir: Path, data: Path, dataset: str | None, limit: int | None,
                threads: int | None = None) -> dict[str, Any]:
    """Score each video with the model folder and with the export; the bench figures (speeds in frames/s)."""
    from oddeye.core.head import load_head
    from oddeye.runtime.video import VideoModel

    sources, labels = videos(data, dataset)
    if limit and limit < len(sources):
        keep = np.linspace(0, len(sources) - 1, limit).round().astype(int)
        sources, labels = [sources[i] for i in keep], [labels[i] for i in keep] if labels else None
    model, exported = load_head(model_dir), VideoModel(export_dir, threads)
    cal = model.calibration
    diff, z_orig, z_exp, t_orig, t_exp, frames = Diff(), [], [], 0.0, 0.0, 0
    for src in sources:
        t0 = time.perf_counter()
        s = model.video_series(src, keep_maps=True)
        t1 = time.perf_counter()
        got = exported.score_video(src, keep_maps=True)
        t_exp += time.perf_counter() - t1
        t_orig += t1 - t0
        z = (s.score - cal.score_mean) / cal.score_std
        diff.add(z, got.z)
        for a, b in zip(s.maps, got.maps):
            diff.add(a, b)
        z_orig.append(z)
        z_exp.append(got.z)
        frames += len(z)
    figs: dict[str, Any] = {"max_abs_diff": diff.abs, "max_rel_diff": diff.rel, "auroc_original": None,
                            "auroc_export": None, "images_per_s_original": frames / t_orig,
                            "images_per_s_export": frames / t_exp, "speed_ratio": t_orig / t_exp,
                            "n_videos": len(sources), "n_frames": frames}
    if labels:
        figs["auroc_original"] = metrics.frame_auroc(labels, z_orig)["frame_auroc_micro"]
        figs["auroc_export"] = metrics.frame_auroc(labels, z_exp)["frame_auroc_micro"]
    return figs
