"""Frame scores from prediction-error maps: whole-frame PSNR, the worst window, or maps normalised per location
against held-out normal frames (static cameras: each pixel has its own normal error level)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from oddeye.core.errors import InputError, ModelError
from oddeye.video.prediction.model import frame_psnr

NORMS = ("none", "ratio", "z")
_TOP = re.compile(r"^top(\d+(?:\.\d+)?)$")


@dataclass
class ScoreConfig:
    """How frame t is predicted and how its squared-error map (S, S) becomes its score (higher = more anomalous).

    stride k: predict frame t from frames t - k * (past..1), a clip k times faster than the training clips
    (TrainConfig.stride = 1), so
    the error grows with the speed of what moves (at 64x64 a walker moves a fraction of a pixel per frame
    and a one-frame prediction error is mostly noise).

    norm "none": -PSNR of the whole frame (patch 0) or of the worst `patch`-sized window (stride patch/2), plus
    `motion` x the PSNR of copying frame t - `motion_gap` x stride as the prediction: the error relative to how
    much the scene changed, so a frame is not anomalous for holding more walkers (copy MSE + `motion_floor`
    keeps static scenes finite; 0: plain -PSNR). `perspective` r > 1: rows of the prediction error count from r
    times (top row) down to once (bottom row), for cameras that look along the ground, where a far object is
    small and high in the frame; the copy error (how much the whole scene changed) stays unweighted unless
    `perspective_copy` (models saved before that option weighed both).
    norm "ratio": error / normal error at that location; "z": (error - mean) / std at that location; both
    after `patch`-sized box smoothing (stride 1; 0 or 1 = none), reduced over the frame by `reduce`
    ("max", or "top<p>" = mean of the top p percent of locations); ratio in dB. `floor` (a fraction of the
    map's spatial mean) keeps locations never busy in normal footage from dividing by ~0.
    Then Gaussian smoothing over `smooth_sigma` frames; the threshold is the `quantile` of held-out normal frames.
    """

    stride: int = 2  # chosen on the dev half of Ped2 (docs/video.md); format-1 models load with 1
    patch: int = 0
    norm: str = "none"
    reduce: str = "max"
    floor: float = 0.1
    motion: float = 0.6  # chosen on the dev half of Ped2 with smooth_sigma 5 (docs/video.md); old models load 0
    motion_gap: int = 3  # in strides; chosen with motion on Ped2's dev half; older models load 1
    motion_floor: float = 1e-5
    perspective: float = 1.0
    perspective_copy: bool = False  # the copy error weighted too: chosen against on Ped2's dev half (docs/video.md)
    smooth_sigma: float = 5.0
    quantile: float = 0.99
    batch_size: int = 128

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise InputError(f"score norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        if self.reduce != "max" and not (_TOP.match(self.reduce) and 0 < float(self.reduce[3:]) <= 100):
            raise InputError(f"score reduce must be 'max' or 'top<percent>' (e.g. top5), got {self.reduce!r}")
        if self.stride < 1:
            raise InputError(f"score stride must be >= 1, got {self.stride}")
        if self.patch < 0 or self.floor < 0:
            raise InputError(f"score patch and floor must be >= 0, got patch={self.patch} floor={self.floor}")
        if self.motion < 0 or self.motion_floor <= 0:
            raise InputError(f"score motion must be >= 0 and motion_floor > 0, got {self.motion}, {self.motion_floor}")
        if self.motion_gap < 1:
            raise InputError(f"score motion_gap must be >= 1 (strides), got {self.motion_gap}")
        if self.perspective < 1:
            raise InputError(f"score perspective (top-row / bottom-row weight) must be >= 1, got {self.perspective}")

    def describe(self) -> str:
        """The frame score in a few words."""
        at = f"frame t predicted from t-{self.stride}, t-{2 * self.stride}, ...: " if self.stride > 1 else ""
        if self.norm == "none":
            what = "-PSNR of the whole frame" if self.patch == 0 else f"-PSNR of the worst {self.patch}px window"
            gap = self.motion_gap * self.stride
            what += f" + {self.motion:g} x PSNR of copying frame t-{gap}" if self.motion else ""
            errors = "both errors" if self.perspective_copy else "the prediction error"
            rows = f", rows of {errors} weighted {self.perspective:g}:1 top to bottom" if self.perspective != 1 else ""
            return at + what + rows
        return at + (f"{self.norm} of the error to the per-location normal error, {self.patch}px boxes, "
                     f"{self.reduce} over the frame")

    def explain(self, score: float, normal_mean: float) -> str:
        """One line for people: what the frame score `score` means next to the normal frames' mean score."""
        if self.norm == "none":
            where = "frame" if self.patch == 0 else f"worst {self.patch}px window"
            if self.motion:
                return (f"frame hard to predict for its motion: {where} score {score:.1f} dB vs {normal_mean:.1f} dB "
                        "on normal frames")
            return f"frame hard to predict: {where} PSNR {-score:.1f} dB vs {-normal_mean:.1f} dB on normal frames"
        unit = "dB" if self.norm == "ratio" else "std"
        return (f"prediction error {score:.1f} {unit} above this place's normal error "
                f"(normal frames: {normal_mean:.1f} {unit})")


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
                             "(saved by an older oddeye)", "refit the model, or score with norm 'none'")
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
