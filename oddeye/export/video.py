"""Export of the video-prediction head: the generator and the frame-score arithmetic on a run of frames.

The graph takes N consecutive gray frames (N, S, S) uint8 and scores the last N - lead of them (lead = past x score
stride): frame t is predicted from t - k*past, ..., t - k. The caller keeps the last `lead` frames of one call and puts
them in front of the next call's frames; oddeye.runtime's VideoModel does that, then smooths the raw scores over time
and turns them into z-scores with the calibration in the manifest, as `oddeye score video` does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from oddeye.video.prediction.model import psnr_map
from oddeye.video.prediction.score import FrameScorer

EXAMPLE_FRAMES = 3  # frames scored by the example run (after the lead)


class TracedScorer(FrameScorer):
    """FrameScorer whose top-p reduction takes its count from the fixed map size: under the ONNX tracer a tensor's
    shape is symbolic, and FrameScorer._reduce rounds it."""

    def __init__(self, cfg: Any, loc: Any, size: int) -> None:
        super().__init__(cfg, loc)
        self.cells = size * size

    def _reduce(self, m: torch.Tensor) -> torch.Tensor:
        if self.cfg.reduce == "max":
            return super()._reduce(m)
        k = max(1, int(round(self.cells * float(self.cfg.reduce[3:]) / 100)))
        return m.flatten(1).topk(k, 1).values.mean(1)


class PredictionGraph(nn.Module):
    """Frames (N, S, S) uint8 -> (raw frame scores (N - lead,), squared-error maps (N - lead, S, S)), as
    PredictionHead._errors + FrameScorer."""

    def __init__(self, head: Any) -> None:
        super().__init__()
        cfg = head.config
        self.g = head.g.eval()
        self.scorer = TracedScorer(cfg.score, head.location, cfg.model.size)  # its tensors become graph constants
        self.past, self.k, self.lead = cfg.model.past, cfg.score.stride, cfg.lead
        self.gap = cfg.score.motion_gap * cfg.score.stride

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, S, S) uint8 -> ((N - lead,), (N - lead, S, S))."""
        x = frames[:, None].float() / 127.5 - 1.0
        feats = self.g.encode(x)
        targets = torch.arange(self.lead, x.shape[0])
        win = targets[:, None] - self.lead + self.k * torch.arange(self.past)[None]
        err = psnr_map(self.g.predict(feats, win, x[targets - self.k]), x[targets])
        copy = psnr_map(x[targets - self.gap], x[targets])
        return self.scorer(err, copy), err[:, 0]


def video_graph(head: Any) -> tuple[nn.Module, dict[str, Any]]:
    """The export graph of a fitted video-prediction head and the manifest fields that describe it."""
    cfg, cal = head.config, head.calibration
    s, lead = cfg.model.size, cfg.lead
    fields = {
        "kind": "video",
        "inputs": [{"name": "frames", "shape": ["frames", s, s], "dtype": "uint8", "layout": "gray",
                    "preprocessing_hint": f"consecutive gray frames at {s}x{s}, more than {lead} of them"}],
        "preprocessing": {
            "read": "frames as 8-bit gray: image files with OpenCV (cv2.IMREAD_GRAYSCALE; JPEG files at least twice "
                    "the size decoded reduced, IMREAD_REDUCED_GRAYSCALE_2/4), video files with decord or PyAV, "
                    "RGB to gray with cv2.COLOR_RGB2GRAY (oddeye.core.videoio.open_video(size, gray=True))",
            "resize": {"size": [s, s], "library": "OpenCV cv2.resize",
                       "interpolation": "INTER_AREA when shrinking the width, else INTER_LINEAR"},
            "in_graph": "uint8 -> x / 127.5 - 1; generator; squared error of the prediction (and of copying frame "
                        f"t - {cfg.score.motion_gap * cfg.score.stride}) in [0, 1] intensities; frame score: "
                        f"{cfg.score.describe()}"},
        "outputs": [
            {"name": "frame_score", "shape": ["frames - lead"], "dtype": "float32",
             "meaning": "raw score of each frame after the first `lead` (higher = more anomalous), before smoothing"},
            {"name": "error_map", "shape": ["frames - lead", s, s], "dtype": "float32",
             "meaning": "squared prediction error per pixel, intensities in [0, 1]"}],
        "stream": {
            "lead": lead, "past": cfg.model.past, "stride": cfg.score.stride,
            "keep_between_calls": f"the last {lead} frames of a call go in front of the next call's frames (the "
                                  "graph predicts each frame from earlier ones); the first call of a video scores "
                                  f"from frame {lead} on, and the first {lead} frames take the first frame's score",
            "smooth_sigma": cfg.score.smooth_sigma,
            "smoothing": "Gaussian over time of the raw scores of the whole video, sigma smooth_sigma frames, "
                         "truncated at 4 sigma, ends repeated (scipy.ndimage.gaussian_filter1d, mode 'nearest'); "
                         "a live caller waits 4 x sigma frames for a final score",
            "z_score": "(smoothed score - score_mean) / score_std; above `threshold` = anomalous",
            "score_mean": cal.score_mean, "score_std": cal.score_std},
        "threshold": cal.threshold,
        "batch_size": cfg.score.batch_size,
        "notes": [],
    }
    return PredictionGraph(head), fields


def example_clips(head: Any) -> torch.Tensor:
    """Random gray frames (lead + EXAMPLE_FRAMES, S, S) uint8 to trace and check the graph."""
    s = head.config.model.size
    n = head.config.lead + EXAMPLE_FRAMES
    return torch.from_numpy(np.random.default_rng(0).integers(0, 256, (n, s, s), dtype=np.uint8))
