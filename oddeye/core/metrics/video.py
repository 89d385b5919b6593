"""Video metrics: frame-level AUROC, micro and macro."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from oddeye.core.metrics._base import ArrayLike, MetricInputError, check_pair
from oddeye.core.metrics.scores import auroc, minmax_normalize


def frame_auroc(labels_per_video: Sequence[ArrayLike], scores_per_video: Sequence[ArrayLike],
                normalize: bool = True) -> dict[str, float]:
    """Frame-level AUROC: micro (all test frames concatenated) and macro (mean over videos with both classes).

    With `normalize`, each video's scores are min-max normalised first, as the video-anomaly field does.
    """
    if len(labels_per_video) != len(scores_per_video):
        raise MetricInputError(f"labels_per_video and scores_per_video differ in count: "
                               f"{len(labels_per_video)} vs {len(scores_per_video)}")
    if len(labels_per_video) == 0:
        raise MetricInputError("labels_per_video is empty", "pass one label array per test video")
    ys, ss, per_video = [], [], []
    for i, (lab, sc) in enumerate(zip(labels_per_video, scores_per_video)):
        y, s = check_pair(lab, sc, f"labels_per_video[{i}]", f"scores_per_video[{i}]", need_both=False)
        if normalize:
            s = minmax_normalize(s)
        ys.append(y)
        ss.append(s)
        if 0 < y.sum() < y.size:
            per_video.append(auroc(y, s))
    y_all, s_all = np.concatenate(ys), np.concatenate(ss)
    micro = auroc(check_pair(y_all, s_all, "labels_per_video", "scores_per_video")[0], s_all)
    macro = float(np.mean(per_video)) if per_video else float("nan")
    return {"frame_auroc_micro": micro, "frame_auroc_macro": macro}
