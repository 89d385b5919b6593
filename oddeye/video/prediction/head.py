"""The video-prediction head: predict each frame from past ones, score its prediction error (Head protocol)."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Self

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from scipy.ndimage import gaussian_filter1d
from tqdm.auto import tqdm

from oddeye.core.config import get_device, seed_everything
from oddeye.core.errors import EmptyDataError, InputError, ModelError
from oddeye.core.head import RunContext, context, read_manifest, write_manifest
from oddeye.core.metrics import minmax_normalize
from oddeye.core.types import AnomalyMap, Result, Score, events_from_scores
from oddeye.core.frames import _finish
from oddeye.core.videoio import TruncatedVideoWarning, VideoReader, open_video
from oddeye.video.prediction.config import PredictionConfig
from oddeye.video.prediction.model import Generator, psnr_map
from oddeye.video.prediction.score import ErrorAccumulator, FrameScorer, LocationStats
from oddeye.video.prediction.train import Trainer, to_model_range

NAME = "video-prediction"
WEIGHTS = "generator.safetensors"
LOCATION = "location_stats.safetensors"  # per-pixel normal error (format 2 on)
FORMAT_VERSION = 3  # 3: the settings are one PredictionConfig in the manifest's "config" (2: model/train/score keys)


@dataclass
class Calibration:
    """Normal-data statistics from the validation clips: mean/std of the frame score, threshold on its z-scores.

    The frame score is -PSNR for norm "none" (format 1 stored psnr_mean = -score_mean).
    """

    score_mean: float = 0.0
    score_std: float = 1.0
    threshold: float = 3.0
    n_frames: int = 0
    quantiles: dict[str, float] = field(default_factory=dict)


@dataclass
class VideoSeries:
    """Per-frame outputs for one video: score (T,) (smoothed, higher = more anomalous), indices (T,), times (T,),
    error maps (T, S, S) or None."""

    name: str
    score: np.ndarray
    indices: np.ndarray
    times: np.ndarray
    maps: np.ndarray | None
    truncated_at: int | None = None
    peak_map: np.ndarray | None = None  # error map (S, S) of the frame with the highest raw score


def _sample_id(x: Any) -> str:
    """The id of a sample: a VideoItem's name, else the file or folder name of its source (a webcam index as is)."""
    if isinstance(x, VideoReader):
        return Path(str(x.source)).name
    if isinstance(x, np.ndarray):
        return "frames"
    return str(getattr(x, "name", None) or Path(str(getattr(x, "source", x))).name)


def _sample_path(x: Any) -> Path | None:
    """The file or folder a sample reads, if it is one."""
    src = getattr(x, "source", x)
    return Path(src) if isinstance(src, (str, Path)) and Path(src).exists() else None


def _model_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """In-memory frames (T, H, W) or (T, H, W, 3) uint8 as the model reads them: (T, size, size) gray uint8."""
    if frames.dtype != np.uint8 or frames.ndim not in (3, 4) or (frames.ndim == 4 and frames.shape[-1] != 3):
        raise InputError(f"frames of shape {frames.shape} and dtype {frames.dtype}: give (T, H, W) or "
                         "(T, H, W, 3) uint8")
    return np.stack([_finish(f, (size, size), gray=True) for f in frames]) if len(frames) else frames[..., :0, :0]


def _as_reader(x: Any, size: int) -> tuple[str, VideoReader]:
    """(sample id, gray reader at size x size) for a path, a VideoItem-like object or an open reader."""
    if isinstance(x, VideoReader):
        if (x.width, x.height) != (size, size) or not x.gray:
            raise InputError(f"reader {x.source} is {x.width}x{x.height} gray={x.gray}; this model needs "
                             f"open_video(..., size=({size}, {size}), gray=True)")
        return _sample_id(x), x
    return _sample_id(x), open_video(getattr(x, "source", x), size=(size, size), gray=True)


class PredictionHead:
    """CT-D2GAN-style frame prediction; fit(normal videos) -> self, score(videos) -> Result."""

    name = NAME

    def __init__(self, config: PredictionConfig | None = None, *, device: str | None = None,
                 **overrides: Any) -> None:
        self.config: PredictionConfig = PredictionConfig.build(config, **overrides)
        self.device = get_device(device)
        self.g = Generator(self.config.model).to(self.device).eval()
        self.calibration = Calibration()
        self.location: LocationStats | None = None  # per-pixel normal error, set by calibrate()
        self.train_info: dict[str, Any] = {}

    # ---- fitting -------------------------------------------------------------------------------
    def read_frames(self, samples: Iterable[Any], progress: bool = False) -> list[tuple[str, np.ndarray]]:
        """Decode videos to gray (T, S, S) uint8 arrays at the working size."""
        out = []
        for s in tqdm(list(samples), desc="read videos", disable=not progress, leave=False):
            name, r = _as_reader(s, self.config.model.size)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", TruncatedVideoWarning)
                out.append((name, r.read_all().data))
            r.close()
        return out

    def fit(self, samples: Iterable[Any], *, ctx: RunContext | None = None) -> Self:
        """Train on normal videos (paths, frame folders or readers); hold out validation clips for the threshold.

        ctx.out: checkpoint folder (ctx.resume continues from it); ctx.callback(trainer) every ctx.callback_every_s
        training seconds, with this head's generator set to the one being trained.
        """
        ctx = context(ctx)
        tc = self.config.train
        seed_everything(tc.seed)
        vids = self.read_frames(samples, ctx.progress)
        if not vids:
            raise EmptyDataError("no training videos given", "pass --frames DIR or --video FILE with normal footage")
        lead = max(self.config.lead, self.config.model.past * tc.stride)
        train, val = split_validation(vids, tc.val_fraction, lead, tc.seed)
        trainer = Trainer(self.config.model, tc, [v for _, v in train], self.device)
        if ctx.resume:
            if ctx.out is None:
                raise InputError("resuming needs the folder of the run to continue",
                                 "pass the --out of the interrupted `oddeye fit video-prediction` run")
            trainer.load_checkpoint(ctx.out)
        self.g = trainer.g
        user_cb = ctx.callback

        def cb(tr: Trainer) -> None:
            self.g = tr.g
            if user_cb is not None:
                user_cb(tr)

        trainer.run(ctx.out, callback=cb if user_cb else None, callback_every_s=ctx.callback_every_s,
                    progress=ctx.progress)
        self.g = trainer.g.eval()
        self.calibrate([v for _, v in val])
        self.train_info = {"steps": trainer.step, "train_minutes": trainer.train_seconds / 60,
                           "train_videos": [n for n, _ in train], "val_videos": [n for n, _ in val],
                           "train_frames": int(sum(len(v) for _, v in train)), "last_losses": trainer.history[-1:]}
        return self

    def calibrate(self, val_videos: list[np.ndarray]) -> Calibration:
        """From held-out normal frames: per-location error statistics, then the threshold (`quantile` of z-scores)."""
        lead = self.config.lead
        vids = [v for v in val_videos if len(v) > lead]
        if not vids:
            raise EmptyDataError(f"no validation video has more than past x stride = {lead} frames")
        acc = ErrorAccumulator()
        if self.config.score.norm == "none":  # the score does not read the statistics: one pass over the clips
            sc = np.concatenate([self._series_from_array(v, on_error=acc.add).score for v in vids])
            self.location = acc.stats()
        else:  # the score is relative to the statistics of these same frames: those first
            for v in vids:
                for err, _, _, _ in self._errors(self._array_batches(v)):
                    acc.add(err)
            self.location = acc.stats()
            sc = np.concatenate([self._series_from_array(v).score for v in vids])
        mu, sd = float(sc.mean()), float(sc.std() + 1e-6)
        z = (sc - mu) / sd
        q = self.config.score.quantile
        self.calibration = Calibration(mu, sd, float(np.quantile(z, q)), int(len(sc)),
                                       {f"q{int(p * 1000)}": float(np.quantile(z, p)) for p in (0.9, 0.95, 0.99, 0.999)})
        return self.calibration

    # ---- scoring -------------------------------------------------------------------------------
    @torch.inference_mode()
    def _errors(self, frames_iter: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]]:
        """Per batch of frames (B, S, S) uint8: squared-error maps (b, 1, S, S) of the frames after the first
        past x stride of the video (frame t predicted from t - stride * (past..1)), those of copying frame
        t - motion_gap x stride instead (b, 1, S, S), and the batch's indices and times."""
        g, past, k = self.g, self.config.model.past, self.config.score.stride
        lead = past * k
        gap = self.config.score.motion_gap * k  # the copied frame, for the motion term
        prev_x: torch.Tensor | None = None
        prev_f: list[torch.Tensor] | None = None
        for data, idx, times in frames_iter:
            x = to_model_range(data[:, None]).to(self.device)
            feats = g.encode(x)
            n_prev = 0
            if prev_x is not None:
                n_prev = prev_x.shape[0]
                x = torch.cat([prev_x, x])
                feats = [torch.cat([a, b]) for a, b in zip(prev_f, feats)]
            targets = torch.arange(min(max(lead, n_prev), x.shape[0]), x.shape[0], device=x.device)
            err = copy = x.new_zeros((0, 1) + tuple(x.shape[-2:]))
            if len(targets):
                win = targets[:, None] - lead + k * torch.arange(past, device=x.device)[None]
                err = psnr_map(g.predict(feats, win, x[targets - k]), x[targets])
                copy = psnr_map(x[targets - gap], x[targets])
            yield err, copy, idx, times
            prev_x, prev_f = x[-lead:], [f[-lead:] for f in feats]

    @torch.inference_mode()
    def _series(self, frames_iter: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]], name: str,
                keep_maps: bool, on_error: Callable[[torch.Tensor], None] | None = None) -> VideoSeries:
        """Score every frame from its error map, smoothed in time (the first past x stride copy the first score);
        `on_error` sees each batch of error maps (b, 1, S, S)."""
        past = self.config.lead
        scorer = FrameScorer(self.config.score, self.location, self.device)
        scores, idx_all, t_all, maps = [], [], [], []
        peak: tuple[float, np.ndarray | None] = (-float("inf"), None)
        for err, copy, idx, times in self._errors(frames_iter):
            if on_error is not None:
                on_error(err)
            if len(err):
                s_batch = scorer(err, copy).cpu().numpy()
                scores.append(s_batch)
                k = int(np.argmax(s_batch))
                if s_batch[k] > peak[0]:
                    peak = (float(s_batch[k]), err[k, 0].cpu().numpy().astype(np.float32))
                if keep_maps:
                    maps.append(err[:, 0].cpu().numpy())
            idx_all.append(idx)
            t_all.append(times)
        indices = np.concatenate(idx_all) if idx_all else np.zeros(0, np.int64)
        n = len(indices)
        if n <= past:
            raise EmptyDataError(f"{name} has {n} frames; the model needs more than past x stride = {past}")
        p = np.concatenate(scores).astype(np.float64)
        p = np.concatenate([np.full(past, p[0]), p])
        if self.config.score.smooth_sigma > 0:
            p = gaussian_filter1d(p, self.config.score.smooth_sigma, mode="nearest")
        m = None
        if keep_maps:
            m = np.concatenate(maps)
            m = np.concatenate([np.repeat(m[:1], past, 0), m]).astype(np.float32)
        return VideoSeries(name, p, indices, np.concatenate(t_all), m, peak_map=peak[1])

    def _array_batches(self, frames: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(frames, indices, times at 25 fps) batches of an in-memory video (T, S, S) uint8."""
        bs = self.config.score.batch_size
        for a in range(0, len(frames), bs):
            i = np.arange(a, min(a + bs, len(frames)))
            yield frames[a: a + bs], i, i / 25.0

    def _series_from_array(self, frames: np.ndarray, keep_maps: bool = False,
                           on_error: Callable[[torch.Tensor], None] | None = None) -> VideoSeries:
        """Series of an in-memory video (T, S, S) uint8."""
        return self._series(self._array_batches(frames), "array", keep_maps, on_error)

    def video_series(self, sample: Any, keep_maps: bool = False) -> VideoSeries:
        """Decode and predict one video (path, frame folder, VideoItem, reader, or frames (T, H, W[, 3]) uint8)."""
        if isinstance(sample, np.ndarray):
            return self._series_from_array(_model_frames(sample, self.config.model.size), keep_maps)
        name, r = _as_reader(sample, self.config.model.size)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", TruncatedVideoWarning)
                s = self._series(((f.data, f.indices, f.times)
                                  for f in r.iter_batches(self.config.score.batch_size)), name, keep_maps)
        finally:
            r.close()
        for w in caught:  # re-emit for the caller, once
            warnings.warn(w.message, w.category, stacklevel=2)
        s.truncated_at = r.truncated_at
        return s

    def to_score(self, s: VideoSeries, label: int | None = None) -> tuple[Score, list]:
        """Turn a VideoSeries into a Score (calibrated z per frame) and its events."""
        c = self.calibration
        z = (s.score - c.score_mean) / c.score_std
        reasons = [self.config.score.explain(v, c.score_mean) for v in s.score]
        events = events_from_scores(z, c.threshold, s.name, times=s.times, frame_indices=s.indices,
                                    min_length=2, merge_gap=3, reasons=reasons)
        maps = {"normalized": AnomalyMap("frame", minmax_normalize(s.score)), "score": AnomalyMap("frame", s.score)}
        if s.peak_map is not None:
            maps["peak_error"] = AnomalyMap("pixel", s.peak_map)
        reason = f"{len(events)} event(s) above threshold {c.threshold:.2f}"
        meta: dict[str, Any] = {"peak_frame": int(s.indices[int(np.argmax(z))])}
        if s.truncated_at is not None:
            reason += f"; the video is truncated: scored the {s.truncated_at} frames before the cut"
            meta["truncated_at"] = s.truncated_at
        score = Score(sample_id=s.name, score=float(z.max()), label=label, maps=maps, frame_scores=z.astype(np.float32),
                      frame_times=s.times, frame_indices=s.indices, reason=reason, meta=meta)
        return score, events

    def score(self, samples: Iterable[Any], *, ctx: RunContext | None = None) -> Result:
        """Score videos (paths, frame folders, VideoItems or readers) -> Result: per-frame z-scores, events, threshold.

        Per video the error map (S, S) of its worst frame is kept ("peak_error"; ctx.keep_maps False drops it), so
        memory stays flat on long videos (every frame's map: video_series(sample, keep_maps=True)). With
        ctx.skip_bad an unreadable or too short video is recorded with Result.add_error and the rest are scored.
        """
        ctx = context(ctx)
        result = Result(head=NAME, threshold=self.calibration.threshold,
                        meta={"score": f"z-score of the frame score ({self.config.score.describe()}) vs normal "
                                       "validation frames",
                              "threshold_quantile": self.config.score.quantile, "size": self.config.model.size})
        for k, sample in enumerate(tqdm(list(samples), desc="score videos", disable=not ctx.progress, leave=False)):
            try:
                series = self.video_series(sample)
                if isinstance(sample, np.ndarray):
                    series.name = f"video {k}"
            except InputError as e:
                if not ctx.skip_bad:
                    raise
                result.add_error(_sample_id(sample), e.message, _sample_path(sample))
                continue
            if ctx.keep_maps is False:
                series.peak_map = None
            sc, ev = self.to_score(series)
            result.scores.append(sc)
            result.events.extend(ev)
        if not result.scores:
            raise EmptyDataError("no videos to score")
        return result

    # ---- persistence ---------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write generator weights (safetensors) + manifest with the config, calibration and training info."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.g.state_dict().items()}, str(d / WEIGHTS))
        if self.location is not None:
            save_file({"mean": torch.from_numpy(self.location.mean), "std": torch.from_numpy(self.location.std),
                       "n_frames": torch.tensor([self.location.n_frames])}, str(d / LOCATION))
        write_manifest(d, NAME, FORMAT_VERSION, config=self.config.to_dict(), calibration=asdict(self.calibration),
                       train_info=self.train_info)
        return d

    @classmethod
    def load(cls, directory: str | Path, *, device: str | None = None) -> Self:
        """Read a model folder written by save() (any format); another head's folder is a ModelError."""
        d = Path(directory)
        doc = read_manifest(d, head=NAME, max_version=FORMAT_VERSION)
        if not (d / WEIGHTS).is_file():
            raise ModelError(f"{d} has no {WEIGHTS}", "refit with `oddeye fit video-prediction`")
        try:
            config = PredictionConfig.from_manifest(doc)
        except (KeyError, TypeError, AttributeError) as e:
            raise ModelError(f"{d} holds a broken video-prediction model (settings: {e!r})",
                             "refit with `oddeye fit video-prediction`") from None
        head = cls(config, device=device)
        try:
            head.g.load_state_dict(load_file(str(d / WEIGHTS), device=head.device))
            head.calibration = _calibration_from(doc)
            if (d / LOCATION).is_file():  # absent in format 1
                t = load_file(str(d / LOCATION))
                head.location = LocationStats(t["mean"].numpy(), t["std"].numpy(), int(t["n_frames"][0]))
        except (KeyError, TypeError, RuntimeError) as e:
            raise ModelError(f"{d} holds a broken video-prediction model ({str(e)[:200]})",
                             "refit with `oddeye fit video-prediction`") from None
        head.g.eval()
        head.train_info = doc.get("train_info", {})
        return head

    def describe(self) -> str:
        """One line for people: resolution, threshold and how it was chosen."""
        c, m, s = self.calibration, self.config.model, self.config.score
        return (f"video-prediction {m.size}x{m.size} gray, past={m.past}; score: {s.describe()}; threshold "
                f"{c.threshold:.2f} = {s.quantile:.3g} quantile of {c.n_frames} held-out normal frames")


def _calibration_from(doc: dict) -> Calibration:
    """Calibration of a manifest; format 1 kept the mean/std of PSNR, whose negative is the frame score."""
    c = dict(doc.get("calibration", {}))
    if "psnr_mean" in c:
        c["score_mean"], c["score_std"] = -c.pop("psnr_mean"), c.pop("psnr_std", 1.0)
    return Calibration(**c)


def split_validation(vids: list[tuple[str, np.ndarray]], fraction: float, past: int,
                     seed: int) -> tuple[list[tuple[str, np.ndarray]], list[tuple[str, np.ndarray]]]:
    """Hold out whole videos (>= 1) for calibration; with one video, its last `fraction` of frames."""
    if len(vids) >= 3:
        k = max(1, int(round(len(vids) * fraction)))
        order = np.random.default_rng(seed).permutation(len(vids))
        val_ids = set(order[:k].tolist())
        return [v for i, v in enumerate(vids) if i not in val_ids], [v for i, v in enumerate(vids) if i in val_ids]
    train, val = [], []
    for name, a in vids:
        cut = len(a) - max(int(len(a) * max(fraction, 0.1)), past + 8)
        if cut <= past + 1:
            raise EmptyDataError(f"video {name} has {len(a)} frames: too short to hold out validation frames",
                                 "give longer or more training videos")
        train.append((name, a[:cut]))
        val.append((name + ":val", a[cut:]))
    return train, val
