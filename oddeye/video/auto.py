"""`--auto` for the video heads (rules, prediction): settings chosen from normal clips and synthetic anomalies.

The normal clips are split (seeded, whole clips) into a part to fit on and a few validation clips; each validation
clip is scored as copies with a synthetic anomaly (oddeye.core.anomalies.video: objects too fast, too big, in an
unused zone, loitering, going the wrong way; frozen or replayed frames; and too fast and too big once more, just past
the clip's own high quantile of speed and size at that row), every frame labelled. Each copy keeps the clip's
normal frames outside the anomaly's span (half to three quarters of them). A candidate's AUROC is over the frames of
all those copies, each copy's scores min-max normalised first: the frame AUROC (micro) that `eval video` reports, as
the field computes it, on videos that, like the test videos it is computed on, each hold an anomaly. The untouched
validation clips are not scored on their own: min-max normalising a clip with nothing in it stretches its noise to
[0, 1] and rewards a head that scores exactly nothing on normal frames over one that grades evidence below its
limits. The heads' spaces: oddeye.video.rules.search and oddeye.video.prediction.search.

Rules: every candidate is fitted on the fit part (candidates differing only in scoring share one fit); the choice
is then fitted on ALL the normal clips. Prediction: its candidates are all score settings, so the generator is
trained ONCE on the fit part and kept (training is the cost); the chosen score settings are then calibrated on every
clip the training never saw (the head's own held-out clips and the validation clips).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Self, Sequence

import numpy as np

from oddeye.core.anomalies.video import NEAR, VIDEO_ANOMALIES, make_video_anomaly
from oddeye.core.auto import DEFAULT_MINUTES, SearchResult, apply, search, split_normals
from oddeye.core.errors import InputError
from oddeye.core.head import RunContext
from oddeye.core.metrics import minmax_normalize
from oddeye.core.types import Result
from oddeye.core.videoio import TruncatedVideoWarning, open_video
from oddeye.video.prediction.config import PredictionConfig
from oddeye.video.prediction.head import PredictionHead
from oddeye.video.prediction import search as prediction_search
from oddeye.video.rules.config import RulesConfig
from oddeye.video.rules.head import RulesHead
from oddeye.video.rules.search import fit_key, space_for

VAL_FRACTION = 0.2  # share of the normal clips that validate ...
MAX_VAL = 4  # ... at most this many (each also scored as several anomalous copies)
COPIES = 2  # anomalous copies of each variant (kind, near): a validation AUROC less at the mercy of one copy
MAX_FRAMES = 300  # frames read from each validation clip (bounds memory and the search's time on long videos)
METRIC = ("frame AUROC (micro, each clip's scores min-max normalised, as eval video) over held-out normal clips + "
          "synthetic anomalous copies of them")


def read_clip(source: Any, max_frames: int = MAX_FRAMES) -> np.ndarray:
    """The first `max_frames` frames of a video file or frame folder as gray (T, H, W) uint8, at its own size."""
    r = open_video(source, gray=True)
    try:
        n = r.n_frames if r.n_frames else max_frames
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TruncatedVideoWarning)
            data = np.concatenate([b.data for b in r.iter_batches(64, stop=min(n, max_frames))])
    finally:
        r.close()
    return data[..., 0] if data.ndim == 4 and data.shape[-1] == 1 else data


@dataclass
class ValidationSet:
    """Validation clips (T, H, W) uint8: anomalous copies of the held-out normal clips; per-frame labels (T,) 0/1 of
    each; names; kinds (the anomaly's kind, "~near" added for a near-limit one); how many normal clips they were
    made from; whether scores are min-max normalised per clip."""

    clips: list[np.ndarray]
    labels: list[np.ndarray]
    names: list[str]
    kinds: list[str]
    n_normal: int = 0
    normalize: bool = True

    @property
    def frame_labels(self) -> np.ndarray:
        """Labels of every frame of every clip, concatenated (N,)."""
        return np.concatenate(self.labels)

    def frame_scores(self, result: Result) -> np.ndarray:
        """Per-frame scores of `result` (one Score per clip, in order; each min-max normalised when `normalize`),
        concatenated (N,) like frame_labels."""
        if len(result.scores) != len(self.clips):
            raise InputError(f"--auto: {len(result.scores)} scored videos for {len(self.clips)} validation clips")
        out = []
        for sc, lab, name in zip(result.scores, self.labels, self.names):
            s = np.asarray(sc.frame_scores, dtype=np.float64)
            if s.shape != lab.shape:
                raise InputError(f"--auto: {len(s)} frame scores for the {len(lab)} frames of {name}")
            out.append(minmax_normalize(s) if self.normalize else s)
        return np.concatenate(out)

    def meta(self) -> dict[str, Any]:
        """Facts for the manifest: clips, frames and anomalies of the validation set."""
        lab = self.frame_labels
        return {"n_val_clips": self.n_normal, "n_val_anomalous_clips": len(self.clips), "n_val_frames": int(lab.size),
                "n_val_anomalous_frames": int(lab.sum()), "anomalies": sorted(set(self.kinds))}


def variants(kinds: Sequence[str] = VIDEO_ANOMALIES) -> list[tuple[str, bool]]:
    """(kind, near) of every anomalous copy to make: each kind at full strength, then each with a near-limit form
    (oddeye.core.anomalies.video.NEAR) once more, near the limit; each one family of equal weight."""
    return [(k, False) for k in kinds] + [(k, True) for k in kinds if k in NEAR]


def validation_set(sources: Sequence[Any], seed: int = 0, kinds: Sequence[str] = VIDEO_ANOMALIES,
                   max_frames: int = MAX_FRAMES, copies: int = COPIES) -> ValidationSet:
    """Anomalous copies of the validation clips read from `sources`: every variant (`variants`) `copies` times, the
    clips taking them in turn (each round shifted by one clip); the pasted object is cut from the clip's own
    foreground in every other copy and drawn (a figure unlike the clip's objects) in the others, the other way round
    in the next round; seeded."""
    clips = [read_clip(s, max_frames) for s in sources]
    names = [Path(str(s)).name for s in sources]
    todo = [(r, k, kind, near) for r in range(copies) for k, (kind, near) in enumerate(variants(kinds))]
    if not clips:
        raise InputError("--auto needs at least one normal validation clip")
    out = ValidationSet([], [], [], [], n_normal=len(clips))
    for n, (r, k, kind, near) in enumerate(todo):
        i = (k + r) % len(clips)
        a = make_video_anomaly(clips[i], kind, seed=seed * 1000 + n, source="auto" if (k + r) % 2 == 0 else "drawn",
                               near=near)
        out.clips.append(a.frames)
        out.labels.append(a.labels)
        out.names.append(f"{names[i]}~{kind}{'~near' if near else ''}{f'~{r + 1}' if r else ''}")
        out.kinds.append(f"{kind}{'~near' if near else ''}")
    return out


def split_clips(sources: Sequence[Any], seed: int) -> tuple[list[Any], list[Any]]:
    """(fit part, validation part) of the normal clips: whole clips, seeded, VAL_FRACTION of them (1..MAX_VAL)."""
    return split_normals(list(sources), VAL_FRACTION, seed=seed, max_val=MAX_VAL, min_fit=1)


@dataclass
class Found:
    """What a video search found: the chosen config, the search table, facts about the validation set."""

    config: Any
    search: SearchResult
    meta: dict[str, Any]

    def line(self) -> dict[str, Any]:
        """The keys `eval video --auto` adds to its JSON line."""
        return {"auto": self.search.chosen_settings, "auto_val_auroc": self.search.trials[self.search.chosen].auroc,
                "auto_s": round(self.search.elapsed_s, 1)}


def search_rules(base: RulesConfig, sources: Sequence[Any], given: dict[str, Any] | None = None,
                 minutes: float = DEFAULT_MINUTES, device: str | None = None,
                 log: Callable[[str], None] | None = None) -> Found:
    """Search the rules head's space around `base` (the settings `given` fixed) on normal clips `sources`."""
    seed = base.induction.seed
    fit, val = split_clips(sources, seed)
    vs = validation_set(val, seed)
    found = search(space_for(given or {}), base, lambda cfg: RulesHead(cfg, device=device), fit, vs.clips,
                   vs.frame_labels, minutes=minutes, scores=vs.frame_scores, same_fit=fit_key, log=log, metric=METRIC)
    meta = {"n_fit_clips": len(fit), **vs.meta(), "n_final_clips": len(sources), "seed": seed,
            "final": "the chosen settings fitted on all the normal clips"}
    return Found(apply(base, found.chosen_settings), found, meta)


class Trained:
    """The search's view of a prediction head trained once before it: fit() keeps that training (every candidate
    differs only in how frames are scored), score() scores with the candidate's config."""

    name = PredictionHead.name

    def __init__(self, head: PredictionHead, config: PredictionConfig) -> None:
        self.head, self.config = head, config

    def fit(self, samples: Iterable[Any], *, ctx: RunContext | None = None) -> Self:
        """Nothing to do: the generator was trained before the search."""
        return self

    def score(self, samples: Iterable[Any], *, ctx: RunContext | None = None) -> Result:
        """The trained head's Result with this candidate's score settings."""
        self.head.config = self.config
        return self.head.score(samples, ctx=ctx)


def search_prediction(base: PredictionConfig, sources: Sequence[Any], given: dict[str, Any] | None = None,
                      minutes: float = DEFAULT_MINUTES, device: str | None = None, out: Path | None = None,
                      progress: bool = True, log: Callable[[str], None] | None = None
                      ) -> tuple[PredictionHead, Found]:
    """Train the generator on the fit part of `sources` (base.train.minutes), search the score settings (those
    `given` fixed) on the validation clips, and return the trained head set to the choice and calibrated on every
    normal clip it did not train on."""
    say = log or (lambda _: None)
    seed = base.train.seed
    fit, val = split_clips(sources, seed)
    vs = validation_set(val, seed)
    head = PredictionHead(base, device=device)
    say(f"auto: training on {len(fit)} of {len(sources)} normal clips for up to {base.train.minutes:g} min; "
        f"{len(val)} validate")
    c0 = time.process_time()
    head.fit(fit, ctx=RunContext(out=out, progress=progress))
    train_s = time.process_time() - c0
    space = prediction_search.SPACE.fixing(given or {})
    found = search(space, base, lambda cfg: Trained(head, cfg), fit, vs.clips, vs.frame_labels, minutes=minutes,
                   scores=vs.frame_scores, same_fit=lambda cfg: "trained once", prepare=lambda cfg: (train_s, 0.0),
                   log=log, metric=METRIC)
    head.config = apply(base, found.chosen_settings)
    held = set(head.train_info.get("val_videos", []))
    calibration = [a for _, a in head.read_frames([s for s in fit if Path(str(s)).name in held])]
    calibration += [a for _, a in head.read_frames(val)]
    head.calibrate(calibration)
    head.train_info["val_videos"] = sorted(held & {Path(str(s)).name for s in fit}) + [Path(str(s)).name for s in val]
    meta = {"n_fit_clips": len(fit), **vs.meta(), "seed": seed, "train_cpu_s": round(train_s, 1),
            "final": ("the generator trained once on the fit clips (the candidates differ only in scoring), with the "
                      "chosen score settings; threshold calibrated on every clip it did not train on")}
    return head, Found(head.config, found, meta)
