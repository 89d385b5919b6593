"""RulesHead: induce readable rules from normal video, then score videos frame by frame with reasons and boxes."""

from __future__ import annotations

import heapq
import json
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, Self

import numpy as np
import yaml
from scipy.ndimage import median_filter
from tqdm import tqdm

from oddeye.core.errors import BackendError, EmptyDataError, InputError, ModelError
from oddeye.core.head import read_manifest, write_manifest
from oddeye.core.types import Result, Score, events_from_scores
from oddeye.video.rules.deduction import Deducer, Verdict, judge_one, smooth_scores
from oddeye.video.rules.induction import InductionParams, induce_rules
from oddeye.video.rules.perception import FrameObs, PerceptionParams, Perceiver, recheck_speed
from oddeye.video.rules.rules import RuleSet
from oddeye.video.rules.sources import VideoSource, as_source
from oddeye.core.videoio import VideoReader
from oddeye.video.rules.zones import ZoneMap

HEAD = "video-rules"
FORMAT = 1
BLACK_LEVEL = 8  # a frame whose brightest pixel is below this is "black"
SCENE_CHECK_EVERY = 250  # frames between checks that the scene still matches the learned background


class SceneMovedWarning(UserWarning):
    """The scene no longer matches the one the zones and background were learned on (camera moved?)."""


class RulesHead:
    """AnomalyRuler-style head: perception -> rules (induced offline or by an LLM) -> deduction per frame."""

    name = HEAD

    def __init__(self, perception: PerceptionParams | None = None, induction: InductionParams | None = None,
                 grid: tuple[int, int] = (4, 6), sigma: float = 10.0, soft: float = 0.75, persist: int = 3,
                 recheck: bool = False, flag_at: float = 0.5,
                 warmup: int = 4, llm: Any = None, llm_frames: int = 8, captioner: Any = None,
                 show_progress: bool = True) -> None:
        """sigma: temporal smoothing (frames); soft: margin units below a rule's limit where the judgement starts to
        rise from 0 to 1; persist: frames a track must break a rule; recheck: re-measure flagged speeds with full-resolution flow
        (off by default: on Ped2 it lowered frame AUROC, 0.942 vs 0.948)."""
        self.perception = perception or PerceptionParams()
        self.induction = induction or InductionParams()
        self.zones = ZoneMap(rows=grid[0], cols=grid[1])
        self.sigma = float(sigma)
        self.soft = float(soft)
        self.flag_at = float(flag_at)
        self.persist = int(persist)
        self.recheck = bool(recheck)
        self.warmup = int(warmup)
        self.llm = llm
        self.llm_frames = int(llm_frames)
        self.captioner = captioner  # a VLMCaptioner: its captions join the descriptions the LLM reads
        self.show_progress = show_progress
        self.rules = RuleSet()
        self.background: np.ndarray | None = None
        self.scene_baseline = 1.0
        self.fit_info: dict[str, Any] = {}

    # -- fitting --------------------------------------------------------------------------------------
    def _perceiver(self) -> Perceiver:
        p = Perceiver(self.perception, self.zones)
        p.background = self.background
        return p

    def fit(self, samples: Iterable[Any], shots: int | None = None) -> Self:
        """Learn background, zones and rules from normal videos; `shots` = K normal frames (None: all frames)."""
        t0 = time.perf_counter()
        sources = [as_source(v) for v in samples]
        if not sources:
            raise EmptyDataError("no normal videos to fit on", "give at least one normal video or frame folder")
        for s in sources:
            if s.n_frames is None:
                raise InputError(f"{s.name} is a live stream", "fit on recorded normal footage (a file or folder)")
        if shots is not None and shots < 1:
            raise InputError(f"shots must be >= 1, got {shots}")
        lengths = np.array([s.n_frames for s in sources])
        total = int(lengths.sum())
        plan = _shot_plan(lengths, shots) if shots else None
        # background from frames spread over the footage (the shot frames when few-shot)
        picks = plan if plan is not None else _spread(lengths, min(self.perception.bg_frames, total))
        sample = np.concatenate([sources[v].get(np.array(sorted(ix))) for v, ix in _group(picks).items()])
        if int(sample.max()) < BLACK_LEVEL:
            raise EmptyDataError("the normal footage is all black (no light, or a capped lens)",
                                 "fit on footage in which the scene is visible")
        perceiver = Perceiver(self.perception, ZoneMap(self.zones.rows, self.zones.cols))
        self.background = perceiver.fit_background(sample)
        sims = [perceiver.scene_similarity(f) for f in sample[:: max(1, len(sample) // 16)]]
        self.scene_baseline = float(np.median(sims))
        # perception of the normal footage
        videos: list[list[FrameObs]] = []
        bar = tqdm(total=len(plan) if plan is not None else total, desc="perceiving normal footage", unit="frame",
                   disable=not self.show_progress, leave=False)
        if plan is None:
            for vi, s in enumerate(sources):
                obs = []
                for fo in perceiver.run(f for _, _, f in s.iter_frames()):
                    fo.video = vi
                    obs.append(fo)
                    bar.update()
                videos.append(obs)
        else:
            obs = []
            for v, i in plan:
                a = max(0, i - self.warmup)
                perceiver.reset()
                *_, last = perceiver.run((f for _, _, f in sources[v].iter_frames(start=a, stop=i + 1)), start=a)
                last.video = v
                obs.append(last)
                bar.update()
            videos.append(obs)
        bar.close()
        h, w = self.background.shape[0], self.background.shape[1]
        fw, fh = perceiver.frame_size
        feet = np.array([((o.box[0] + o.box[2]) / 2, o.box[3]) for v in videos for f in v for o in f.objects])
        self.zones.fit(feet.reshape(-1, 2), fw or w, fh or h)
        for v in videos:
            for f in v:
                for o in f.objects:
                    o.zone = self.zones.name((o.box[0] + o.box[2]) / 2, o.box[3])
        self.rules = induce_rules(videos, self.zones, self.induction)
        if self.llm is not None:
            self._llm_induce(videos, fh or h, sources)
        self.fit_info = {"n_videos": len(sources), "n_frames": sum(len(v) for v in videos), "shots": shots,
                         "frame_size": [fw, fh], "fit_s": round(time.perf_counter() - t0, 2)}
        self.rules.meta.update({"fit": self.fit_info})
        for s in sources:
            s.close()
        return self

    def _llm_induce(self, videos: list[list[FrameObs]], frame_h: int, sources: list[VideoSource]) -> None:
        """Add the LLM's rules (induced from frame descriptions) to the offline ones; failures only warn."""
        frames = [f for v in videos for f in v if f.objects]
        rng = np.random.default_rng(self.induction.seed)
        pick = rng.choice(len(frames), min(len(frames), 24), replace=False) if frames else []
        chosen = [frames[i] for i in sorted(pick)]
        descriptions = [f.description(frame_h) for f in chosen]
        if self.captioner is not None and chosen:
            images = [sources[f.video].get(np.array([f.index]))[0] for f in chosen]
            descriptions = [f"{c} (measured: {d})" for c, d in zip(self.captioner.caption(images), descriptions)]
        try:
            extra = self.llm.induce(descriptions, self.zones.all_names(), self.rules)
        except BackendError as e:
            warnings.warn(f"LLM induction failed, keeping the offline rules: {e.message}", stacklevel=3)
            self.rules.meta["llm_error"] = e.message
            return
        self.rules = self.llm.merge(self.rules, extra)

    # -- scoring --------------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if self.background is None or not self.rules.rules:
            raise ModelError("the rules head is not fitted", "call fit() or load() a model folder first")

    def score_video(self, video: Any, name: str | None = None) -> tuple[Score, list[Verdict]]:
        """Score one video -> (Score with frame_scores/times/indices, raw per-frame Verdicts)."""
        self._check_fitted()
        if isinstance(video, VideoSource):
            return self._score_source(video)
        src = as_source(video, name)
        try:
            return self._score_source(src)
        finally:
            if not isinstance(video, VideoReader):  # close only what this call opened
                src.close()

    def _score_source(self, src: VideoSource) -> tuple[Score, list[Verdict]]:
        """score_video() on an opened source."""
        perceiver = self._perceiver()
        perceiver.reset()
        deducer = Deducer(self.rules, self.zones, persist=self.persist, soft=self.soft)
        verdicts: list[Verdict] = []
        described: dict[int, str] = {}  # frame position -> description, for the LLM's second opinion
        pixels: list[tuple[float, int, np.ndarray]] = []  # heap of the most anomalous flagged frames, to caption
        times: list[float] = []
        meta: dict[str, Any] = {}
        bar = tqdm(total=src.n_frames, desc=f"scoring {src.name}", unit="frame", disable=not self.show_progress,
                   leave=False)
        for n, (i, t, frame) in enumerate(src.iter_frames()):
            if n % SCENE_CHECK_EVERY == 0 and "scene_warning" not in meta and not meta.get("black"):
                self._scene_checks(perceiver, frame, src.name, meta, at=i)
            if meta.get("black") and int(frame.max()) < BLACK_LEVEL:
                verdicts.append(Verdict(index=i, score=deducer.floor, judgement=0.0))
            else:
                fo = perceiver.step(frame, i, t)
                v = deducer.judge(fo)
                if self.recheck and v.score > 0:
                    v = self._recheck(v, perceiver, deducer)
                if self.llm is not None and v.flagged(self.flag_at):
                    described[len(verdicts)] = fo.description(frame.shape[0])
                    if self.captioner is not None:
                        heapq.heappush(pixels, (v.judgement, len(verdicts), frame.copy()))
                        if len(pixels) > self.llm_frames:
                            heapq.heappop(pixels)
                verdicts.append(v)
            times.append(t)
            bar.update()
        bar.close()
        if not verdicts:
            raise EmptyDataError(f"video {src.name} has no frames", "check the file or folder")
        if self.llm is not None and described:
            if pixels:
                caps = self.captioner.caption([p[2] for p in pixels])
                for (_, k, _), c in zip(pixels, caps):
                    described[k] = f"{c} (measured: {described[k]})"
            self._llm_deduce(verdicts, described, meta)
        raw = np.array([v.judgement for v in verdicts])
        scores = smooth_scores(raw, self.sigma)
        worst = verdicts[int(np.argmax(raw))]
        sc = Score(sample_id=src.name, score=float(scores.max()), frame_scores=scores.astype(np.float32),
                   frame_times=np.array(times), frame_indices=np.array([v.index for v in verdicts]),
                   reason=worst.reason, meta=meta)
        return sc, verdicts

    def _llm_deduce(self, verdicts: list[Verdict], described: dict[int, str], meta: dict[str, Any]) -> None:
        """Ask the LLM about the most anomalous flagged frames; its broken rule joins the reason. Failures only warn."""
        out = []
        for k in sorted(described, key=lambda j: -verdicts[j].judgement)[: self.llm_frames]:
            try:
                j = self.llm.deduce(described[k], self.rules.rules)
            except BackendError as e:
                meta["llm_error"] = e.message
                warnings.warn(f"LLM deduction stopped, the offline scores are kept: {e.message}", stacklevel=3)
                break
            out.append({"frame": verdicts[k].index, "anomalous": j.anomalous, "rule": j.rule.id if j.rule else None,
                        "reason": j.reason})
            if j.anomalous and verdicts[k].breaches:
                b = verdicts[k].breaches[0]
                b.text += f"; LLM: {j.reason}" + (f" [rule {j.rule.id}]" if j.rule else "")
        meta["llm_judgements"] = out

    def _scene_checks(self, perceiver: Perceiver, frame: np.ndarray, name: str, meta: dict[str, Any],
                      at: int = 0) -> None:
        """Warn when the footage is black or the scene does not match the learned background (frame `at`)."""
        if at == 0 and int(frame.max()) < BLACK_LEVEL:
            meta["black"] = True
            warnings.warn(f"{name}: the footage starts black (no light or a capped lens); black frames score as "
                          "normal and cannot be judged", SceneMovedWarning, stacklevel=3)
            return
        expect = tuple(self.background.shape) if self.background is not None else None
        got = perceiver.shrink(frame, self.perception.proc_height).shape
        if expect is not None and got != expect:
            raise InputError(f"{name}: frames are {frame.shape[1]}x{frame.shape[0]} but the model was fit on "
                             f"{self.fit_info.get('frame_size')}", "score footage of the camera the model was fit on")
        sim = perceiver.scene_similarity(frame)
        small = perceiver.shrink(frame, self.perception.proc_height).astype(np.float32)
        changed = float(np.mean(np.abs(small - self.background) > 2 * self.perception.diff_threshold))
        meta["scene_similarity"] = round(sim, 3)
        meta["background_changed"] = round(changed, 3)
        if sim < 0.5 * self.scene_baseline or changed > 0.35:
            meta["scene_warning"] = (f"from frame {at} the scene matches the learned background poorly (edge similarity {sim:.2f} vs "
                                     f"{self.scene_baseline:.2f} when fitted, {100 * changed:.0f}% of pixels changed): "
                                     "the camera may have moved, so the zones and rules may not apply; refit on current "
                                     "normal footage")
            warnings.warn(f"{name}: {meta['scene_warning']}", SceneMovedWarning, stacklevel=3)

    def _recheck(self, v: Verdict, perceiver: Perceiver, deducer: Deducer) -> Verdict:
        """Robust reasoning: re-measure flagged speeds at full resolution; a breach it does not confirm is dropped."""
        for b in v.breaches:
            if b.attribute == "speed" and b.box is not None:
                s = recheck_speed(perceiver.prev_gray, perceiver.gray, b.box)
                rule = deducer.rule_by_id(b.rule)
                if s is not None and rule is not None:
                    b.score = min(b.score, rule.score(s))
                    b.judgement = min(b.judgement, rule.weight * judge_one(b.score, self.soft))
        if not v.breaches:
            return v
        score = max(b.score for b in v.breaches)
        judged = min(v.judgement, max(b.judgement for b in v.breaches))
        kept = sorted((b for b in v.breaches if b.score > 0), key=lambda b: (-b.judgement, -b.score))
        return Verdict(index=v.index, score=score, breaches=kept, box=next((b.box for b in kept if b.box), None),
                       judgement=judged)

    def score(self, samples: Iterable[Any]) -> Result:
        """Score videos -> Result: per-frame scores, events (rule broken) with reasons and boxes."""
        self._check_fitted()
        result = Result(head=HEAD, threshold=None, meta={"n_rules": len(self.rules),
                                                       "events_from": "rule judgements: a rule broken on most frames around"})
        for k, video in enumerate(samples):
            try:
                sc, verdicts = self.score_video(video)
            except (InputError, BackendError) as e:  # one bad input never loses the videos already scored
                name = str(getattr(video, "source", video)) if not isinstance(video, np.ndarray) else f"video {k}"
                warnings.warn(f"skipped {name}: {e.message}", stacklevel=2)
                result.meta.setdefault("errors", {})[name] = e.message
                continue
            result.scores.append(sc)
            result.events += self._events(sc, verdicts)
        return result

    def _events(self, sc: Score, verdicts: list[Verdict]) -> list:
        """Events where the smoothed score breaks a rule (> 0); reason, box and breaches of the peak frame."""
        assert sc.frame_scores is not None
        reasons = [v.reason for v in verdicts]
        # judgement smoothing: a frame is flagged when most frames around it break a rule
        flagged = median_filter(np.array([v.flagged(self.flag_at) for v in verdicts], dtype=float),
                                2 * self.persist + 1,
                                mode="nearest")
        events = events_from_scores(flagged, 0.5, sc.sample_id, times=sc.frame_times,
                                    frame_indices=sc.frame_indices, min_length=2, merge_gap=3, reasons=reasons)
        pos = {int(ix): k for k, ix in enumerate(sc.frame_indices)}
        for ev in events:
            a, b = pos[ev.start_frame], pos[ev.end_frame]
            k = max(range(a, b + 1), key=lambda j: (verdicts[j].flagged(self.flag_at), verdicts[j].judgement,
                                                    verdicts[j].score))
            ev.meta["peak_frame"] = verdicts[k].index
            ev.score = float(sc.frame_scores[k])
            v = verdicts[k]
            ev.reason = v.reason or ev.reason
            ev.box = v.box
            ev.meta["breaches"] = [x.to_dict() for x in v.breaches[:5]]
            ev.meta["rules"] = sorted({x.rule for j in range(a, b + 1) for x in verdicts[j].breaches})
            ev.meta["boxes"] = {str(verdicts[j].index): list(verdicts[j].box) for j in range(a, b + 1)
                                if verdicts[j].box is not None}
        return events

    # -- persistence ------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write rules.yaml, zones.yaml, perception.json, background.npy and the manifest to `directory`."""
        self._check_fitted()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.rules.save(d / "rules.yaml")
        (d / "zones.yaml").write_text(yaml.safe_dump(self.zones.to_dict(), sort_keys=False, width=120))
        params = {"perception": self.perception.to_dict(), "induction": self.induction.to_dict(),
                  "sigma": self.sigma, "soft": self.soft, "flag_at": self.flag_at, "persist": self.persist, "recheck": self.recheck, "warmup": self.warmup,
                  "scene_baseline": self.scene_baseline, "fit": self.fit_info}
        (d / "perception.json").write_text(json.dumps(params, indent=1))
        np.save(d / "background.npy", self.background)
        write_manifest(d, HEAD, FORMAT, n_rules=len(self.rules))
        return d

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        """Read a folder written by save(); another head's folder or a broken file is a ModelError."""
        d = Path(directory)
        read_manifest(d, head=HEAD, max_version=FORMAT)
        try:
            params = json.loads((d / "perception.json").read_text())
            zones = ZoneMap.from_dict(yaml.safe_load((d / "zones.yaml").read_text()), str(d / "zones.yaml"))
            background = np.load(d / "background.npy")
        except (OSError, ValueError, json.JSONDecodeError, yaml.YAMLError) as e:
            raise ModelError(f"{d}: model files are missing or corrupt ({e})", "refit the model") from None
        head = cls(PerceptionParams.from_dict(params["perception"], str(d / "perception.json")),
                   InductionParams.from_dict(params["induction"]), grid=(zones.rows, zones.cols),
                   sigma=params["sigma"], soft=params.get("soft", 0.75), flag_at=params.get("flag_at", 0.5), persist=params["persist"], recheck=params["recheck"],
                   warmup=params.get("warmup", 4))
        head.zones = zones
        head.background = background.astype(np.float32)
        head.scene_baseline = float(params.get("scene_baseline", 1.0))
        head.fit_info = params.get("fit", {})
        head.rules = RuleSet.load(d / "rules.yaml")
        return head


def _spread(lengths: np.ndarray, k: int) -> list[tuple[int, int]]:
    """k (video, frame) pairs spread evenly over videos of `lengths` (V,)."""
    total = int(lengths.sum())
    flat = np.unique(np.linspace(0, total - 1, max(1, k)).round().astype(int))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    v = np.searchsorted(starts, flat, side="right") - 1
    return [(int(a), int(b - starts[a])) for a, b in zip(v, flat)]


def _shot_plan(lengths: np.ndarray, shots: int) -> list[tuple[int, int]]:
    """K shot frames (video, frame) spread evenly; each is perceived after a few warm-up frames before it."""
    return _spread(lengths, min(int(shots), int(lengths.sum())))


def _group(pairs: list[tuple[int, int]]) -> dict[int, list[int]]:
    """{video: [frames]} of (video, frame) pairs."""
    out: dict[int, list[int]] = {}
    for v, i in pairs:
        out.setdefault(v, []).append(i)
    return out
