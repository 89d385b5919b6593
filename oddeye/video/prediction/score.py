"""Frame scores from prediction-error maps: whole-frame PSNR, the worst window, or maps normalised per location
against held-out normal frames (static cameras: each pixel has its own normal error level)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from oddeye.core.errors import InputError, ModelError
from oddeye.video.prediction.config import ScoreConfig
from oddeye.video.prediction.model import frame_psnr


@dataclass
class LocationStats:
    """Per-pixel mean and std (S, S) of the squared prediction error over `n_frames` held-out normal frames."""

    mean: np.ndarray
    std: np.ndarray
    n_frames: int


class ErrorAccumulator:
    """Running per-pixel sums of error maps (B, 1, S, S) -> LocationStats (memory flat in the number of frames)."""

    def __init__(self) -> None:
        self.s1: torch.Tensor | None = None
        self.s2: torch.Tensor | None = None
        self.n = 0

    def add(self, err: torch.Tensor) -> None:
        """Add a batch of error maps (B, 1, S, S)."""
        e = err[:, 0].double()
        if self.s1 is None:
            self.s1, self.s2 = e.sum(0), e.square().sum(0)
        else:
            self.s1 += e.sum(0)
            self.s2 += e.square().sum(0)
        self.n += e.shape[0]

    def stats(self) -> LocationStats:
        """Mean and std (S, S) float32 of everything added."""
        if self.s1 is None or self.n == 0:
            raise ModelError("no normal frames to compute per-location error statistics from")
        mean = self.s1 / self.n
        std = (self.s2 / self.n - mean.square()).clamp_min(0).sqrt()
        return LocationStats(mean.float().cpu().numpy(), std.float().cpu().numpy(), self.n)


def row_weights(h: int, ratio: float, device: str | torch.device = "cpu") -> torch.Tensor:
    """Weights (h, 1) of the rows of a frame, `ratio` at the top row falling linearly to 1 at the bottom, scaled to
    mean 1 (PSNR stays in its usual range)."""
    y = torch.linspace(0.0, 1.0, h, device=device)
    w = 1.0 + (ratio - 1.0) * (1.0 - y)
    return (w / w.mean())[:, None]


def box(x: torch.Tensor, w: int) -> torch.Tensor:
    """Mean over a w x w box at every location (stride 1, borders averaged over the pixels inside): (B, 1, S, S)."""
    if w <= 1:
        return x
    y = F.avg_pool2d(x, w, stride=1, padding=w // 2, count_include_pad=False)
    return y[..., : x.shape[-2], : x.shape[-1]]


class FrameScorer:
    """Error maps (B, 1, S, S) -> frame scores (B,) under a ScoreConfig (and LocationStats for norm != none)."""

    def __init__(self, cfg: ScoreConfig, loc: LocationStats | None, device: str | torch.device = "cpu") -> None:
        self.cfg = cfg
        self.center = self.scale = None
        if cfg.norm == "none":
            return
        if loc is None:
            raise ModelError(f"score norm {cfg.norm!r} needs per-location error statistics, which this model lacks "
                             "(saved by an older oddeye)",
                             "refit with `oddeye fit video-prediction`, or use norm 'none'")
        w = max(cfg.patch, 1)
        t = lambda a: box(torch.as_tensor(a, dtype=torch.float32, device=device)[None, None], w)  # noqa: E731
        mean, std = t(loc.mean), t(loc.std)  # box(std) >= std of the box mean: a conservative scale
        if cfg.norm == "ratio":
            self.center, self.scale = None, mean + cfg.floor * mean.mean()
        else:
            self.center, self.scale = mean, std + cfg.floor * std.mean()

    def _reduce(self, m: torch.Tensor) -> torch.Tensor:
        f = m.flatten(1)
        if self.cfg.reduce == "max":
            return f.amax(1)
        k = max(1, int(round(f.shape[1] * float(self.cfg.reduce[3:]) / 100)))
        return f.topk(k, 1).values.mean(1)

    def __call__(self, err: torch.Tensor, copy_err: torch.Tensor | None = None) -> torch.Tensor:
        """Frame scores (B,) of error maps (B, 1, S, S) (and of copying the earlier frame, the same shape, used by
        norm "none" with motion > 0); higher = more anomalous."""
        if self.cfg.norm == "none":
            if self.cfg.perspective != 1:
                w = row_weights(err.shape[-2], self.cfg.perspective, err.device)
                err = err * w
                if self.cfg.perspective_copy and copy_err is not None:
                    copy_err = copy_err * w
            s = -frame_psnr(err, self.cfg.patch)
            if self.cfg.motion:
                if copy_err is None:
                    raise InputError("score motion > 0 needs the error of copying the earlier frame (copy_err)")
                s = s - self.cfg.motion * 10.0 * torch.log10(copy_err.flatten(1).mean(1) + self.cfg.motion_floor)
            return s
        e = box(err, max(self.cfg.patch, 1))
        if self.cfg.norm == "ratio":
            return 10.0 * torch.log10(self._reduce(e / self.scale).clamp_min(1e-8))
        return self._reduce((e - self.center) / self.scale)
