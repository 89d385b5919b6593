"""PredictionConfig: every setting of a PredictionHead (networks, training, frame score), defaults written once.

    cfg = PredictionConfig(model=PredictorConfig(size=32), score={"motion": 0})
    cfg.score.stride, cfg.to_dict()["train"]["minutes"]
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from oddeye.core.errors import ConfigError
from oddeye.core.headconfig import HeadConfig, param

NORMS = ("none", "ratio", "z")
_TOP = re.compile(r"^top(\d+(?:\.\d+)?)$")


@dataclass
class PredictorConfig(HeadConfig):
    """Sizes of the generator and discriminators; `size` is the square working resolution (gray)."""

    size: int = param(64, ge=16, doc="working resolution (square, gray); a multiple of 8")
    past: int = param(4, ge=2, doc="past frames the generator predicts the next one from")
    channels: tuple[int, int, int] = param((16, 32, 32), ge=1, doc="encoder channels of its three stages")
    heads: int = param(4, ge=1, doc="attention heads over time (divides channels[2])")
    d_channels: int = param(8, ge=1, doc="base channels of the two discriminators")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.size % 8:
            raise ConfigError(f"{type(self).__name__}.size", f"must be a multiple of 8, got {self.size}")
        if self.channels[2] % self.heads:
            raise ConfigError(f"{type(self).__name__}.heads",
                              f"must divide channels[2]={self.channels[2]}, got {self.heads}")


@dataclass
class TrainConfig(HeadConfig):
    """Optimisation settings; `minutes` is one run's wall-clock budget, `max_steps` an optional cap."""

    minutes: float = param(30.0, gt=0, doc="wall-clock training budget of one fit (or resume)")
    max_steps: int | None = param(None, ge=1, doc="stop one fit after this many steps (None: the budget decides)")
    batch_size: int = param(16, ge=1, doc="clips per training step")
    lr_g: float = param(2e-4, gt=0, doc="Adam learning rate of the generator")
    lr_d: float = param(2e-5, gt=0, doc="Adam learning rate of the discriminators")
    w_int: float = param(20.0, ge=0, doc="weight of the intensity loss (a good prediction's error is tiny)")
    w_grad: float = param(0.2, ge=0, doc="weight of the gradient loss")
    w_adv: float = param(0.05, ge=0, doc="weight of the adversarial loss")
    seed: int = param(0, ge=0, doc="seed of the weights, the batches and the validation split")
    checkpoint_every_s: float = param(60.0, gt=0, doc="training seconds between checkpoints")
    val_fraction: float = param(0.1, gt=0, lt=1, doc="share of the videos held out to calibrate the threshold")
    stride: int = param(1, ge=1, doc="training clips take every stride-th frame")


@dataclass
class ScoreConfig(HeadConfig):
    """How frame t is predicted and how its squared-error map (S, S) becomes its score (higher = more anomalous).

    stride k: predict frame t from frames t - k * (past..1), a clip k times faster than the training clips
    (TrainConfig.stride = 1), so the error grows with the speed of what moves (at 64x64 a walker moves a fraction
    of a pixel per frame and a one-frame prediction error is mostly noise).

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

    stride: int = param(2, ge=1, doc="predict frame t from t-k, t-2k, ... (chosen on the dev half of Ped2)")
    patch: int = param(0, ge=0, doc="window (px) of the PSNR or of the box smoothing (0: whole frame / none)")
    norm: str = param("none", choices=NORMS, doc="none | ratio | z: per-location normalisation of the error")
    reduce: str = param("max", doc="max, or top<p> (mean of the top p percent of locations)")
    floor: float = param(0.1, ge=0, doc="fraction of the mean normal error added to the per-location scale")
    motion: float = param(0.6, ge=0, doc="weight of the PSNR of copying an earlier frame (0: plain -PSNR)")
    motion_gap: int = param(3, ge=1, doc="the copied frame, in strides back (at most the model's past)")
    motion_floor: float = param(1e-5, gt=0, doc="added to the copy MSE so a frozen scene stays finite")
    perspective: float = param(1.0, ge=1, doc="top-row / bottom-row weight of the prediction error (1: off)")
    perspective_copy: bool = param(False, doc="weigh the rows of the copy error too")
    smooth_sigma: float = param(5.0, ge=0, doc="Gaussian smoothing of the frame scores over time (frames)")
    quantile: float = param(0.99, gt=0, lt=1, doc="quantile of held-out normal frames' z-scores: the threshold")
    batch_size: int = param(128, ge=1, doc="frames per scoring batch (memory, not results)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.reduce != "max" and not (_TOP.match(self.reduce) and 0 < float(self.reduce[3:]) <= 100):
            raise ConfigError(f"{type(self).__name__}.reduce",
                              f"must be 'max' or 'top<percent>' (e.g. top5), got {self.reduce!r}")

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


# what models saved before each score option existed scored with: format 1 stride 1; before the motion term none
# (and its gap 1 stride); before perspective_copy a perspective weighed the copy error too
LEGACY_SCORE = {"stride": 1, "motion": 0.0, "motion_gap": 1, "perspective_copy": True}


@dataclass
class PredictionConfig(HeadConfig):
    """Every setting of the video-prediction head: the networks, their training and the frame score."""

    model: PredictorConfig = param(default_factory=PredictorConfig, doc="sizes of the generator and discriminators")
    train: TrainConfig = param(default_factory=TrainConfig, doc="optimisation settings")
    score: ScoreConfig = param(default_factory=ScoreConfig, doc="how a frame's prediction error becomes its score")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.score.motion_gap > self.model.past:
            raise ConfigError(f"{type(self).__name__}.score.motion_gap",
                              f"{self.score.motion_gap} exceeds the model's past={self.model.past} frames",
                              f"use a motion_gap of at most {self.model.past}")

    @property
    def lead(self) -> int:
        """Frames before the first one that can be scored: past x score stride."""
        return self.model.past * self.score.stride

    @classmethod
    def from_manifest(cls, doc: dict[str, Any]) -> PredictionConfig:
        """The config of a model folder's manifest: its "config", or (folders saved before it) model/train/score."""
        if "config" in doc:
            return cls.from_dict(doc["config"])
        model = {k: v for k, v in doc["model"].items() if k in PredictorConfig.__dataclass_fields__}
        return cls.from_dict({"model": model, "train": doc.get("train", {}),
                              "score": {**LEGACY_SCORE, **doc.get("score", {})}})
