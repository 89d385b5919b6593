"""RulesHead: induce readable rules from normal video, then score videos frame by frame with reasons and boxes."""

from __future__ import annotations

import heapq
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, Self

import numpy as np
from tqdm import tqdm

from oddeye.core.errors import ConfigError, EmptyDataError, InputError, ModelError
from oddeye.core.head import RunContext, context
from oddeye.core.types import Event, Result, Score
from oddeye.core.videoio import VideoReader
from oddeye.video.rules.appearance import Appearance, Collector
from oddeye.video.rules.assist import llm_deduce, llm_induce
from oddeye.video.rules.captioner import Captioner
from oddeye.video.rules.config import RulesConfig
from oddeye.video.rules.deduction import Deducer, Verdict, judge_one, smooth_scores, verdict_events
from oddeye.video.rules.induction import induce_rules
from oddeye.video.rules.llm import LLMBackend, make_backend
from oddeye.video.rules.modelio import HEAD, read_appearance, read_model, write_model
from oddeye.video.rules.perception import FrameObs, Perceiver, recheck_speed, shrunk_shape
from oddeye.video.rules.rules import RuleSet
from oddeye.video.rules.sources import VideoSource, as_source, group_frames, local_path, sample_name, spread_frames
from oddeye.video.rules.zones import ZoneMap

BLACK_LEVEL = 8  # a frame whose brightest pixel is below this is "black"
SCENE_CHECK_EVERY = 250  # frames between checks that the scene still matches the learned background


class SceneMovedWarning(UserWarning):
    """The scene no longer matches the one the zones and background were learned on (camera moved?)."""


class RulesHead:
    """AnomalyRuler-style head: perception -> rules (induced offline or by an LLM) -> deduction per frame."""

    name = HEAD

    def __init__(self, config: RulesConfig | None = None, *, backend: LLMBackend | None = None,
                 captioner: Captioner | None = None, device: str | None = None, **overrides: Any) -> None:
        """Settings from `config` (defaults when None) with `overrides` (RulesConfig fields) applied.

        backend / captioner: ready runtime objects used instead of building them from config.llm (which must
        still describe them: a loaded model rebuilds them from it); device: where a local LLM or VLM runs.
        """
        self.config: RulesConfig = RulesConfig.build(config, **overrides)
        if backend is not None and self.config.llm.backend == "offline":
            raise ConfigError("RulesConfig.llm.backend", "an LLM backend object was given but the config says offline",
                              "set llm.backend (and llm.url / llm.model) to what the object is")
        if captioner is not None and not self.config.llm.captioner:
            raise ConfigError("RulesConfig.llm.captioner", "a captioner object was given but the config names none",
                              "set llm.captioner to the VLM it runs")
        self.device = device or "cpu"
        self._backend = backend
        self._captioner = captioner
        self.zones = ZoneMap(rows=self.config.grid[0], cols=self.config.grid[1])
        self.rules = RuleSet()
        self.background: np.ndarray | None = None
        self.appearance: Appearance | None = None  # normal crops' index, when config.appearance is on
        self.scene_baseline = 1.0
        self.fit_info: dict[str, Any] = {}

    def _llm(self) -> LLMBackend | None:
        """The LLM backend: the one given, else built from config.llm on first use (None when offline)."""
        if self._backend is None and self.config.llm.backend != "offline":
            self._backend = make_backend(self.config.llm, self.device)
        return self._backend

    def _vlm(self) -> Captioner | None:
        """The captioner: the one given, else loaded from config.llm.captioner on first use (None without one)."""
        if self._captioner is None and self.config.llm.captioner:
            from oddeye.video.rules.captioner import VLMCaptioner

            self._captioner = VLMCaptioner(self.config.llm.captioner, device=self.device)
        return self._captioner

    def _perceiver(self) -> Perceiver:
        p = Perceiver(self.config.perception, self.zones)
        p.background = self.background
        return p

    # -- fitting --------------------------------------------------------------------------------------
    def fit(self, samples: Iterable[Any], *, ctx: RunContext | None = None) -> Self:
        """Learn background, zones and rules from normal videos (paths, VideoReaders or uint8 (T, H, W[, 3])).

        ctx.shots: induce from K normal frames spread over the footage (None: all frames); ctx.progress: bars.
        """
        ctx = context(ctx)
        if ctx.shots is not None and ctx.shots < 1:
            raise InputError(f"shots must be >= 1, got {ctx.shots}", "pass --shots K with K >= 1, or leave it out")
        self._llm()  # a missing local model or endpoint setting fails now, not after perception
        self._vlm()
        sources: list[VideoSource] = []
        try:
            for v in samples:
                sources.append(as_source(v))
            self._fit_sources(sources, ctx.shots, ctx.progress)
        finally:
            for s in sources:
                s.close()
        return self

    def _fit_sources(self, sources: list[VideoSource], shots: int | None, progress: bool) -> None:
        """fit() on opened sources."""
        t0 = time.perf_counter()
        if not sources:
            raise EmptyDataError("no normal videos to fit on", "give at least one normal video or frame folder")
        for s in sources:
            if s.n_frames is None:
                raise InputError(f"{s.name} is a live stream", "fit on recorded normal footage (a file or folder)")
        lengths = np.array([s.n_frames for s in sources])
        total = int(lengths.sum())
        plan = spread_frames(lengths, min(int(shots), total)) if shots else None
        # background from frames spread over the footage (the shot frames when few-shot)
        picks = plan if plan is not None else spread_frames(lengths, min(self.config.perception.bg_frames, total))
        sample = np.concatenate([sources[v].get(np.array(sorted(ix))) for v, ix in group_frames(picks).items()])
        if int(sample.max()) < BLACK_LEVEL:
            raise EmptyDataError("the normal footage is all black (no light, or a capped lens)",
                                 "fit on footage in which the scene is visible")
        self.zones = ZoneMap(rows=self.config.grid[0], cols=self.config.grid[1])
        perceiver = Perceiver(self.config.perception, ZoneMap(self.zones.rows, self.zones.cols))
        self.background = perceiver.fit_background(sample)
        sims = [perceiver.scene_similarity(f) for f in sample[:: max(1, len(sample) // 16)]]
        self.scene_baseline = float(np.median(sims))
        app = Appearance(self.config.appearance, self.device) if self.config.appearance.enabled else None
        crops = app.collector() if app is not None else None
        videos = self._perceive_normal(perceiver, sources, plan, total, progress, crops)
        if app is not None and crops is not None:
            app.fit(crops)  # the index, and each normal object's appearance measured as a new one would be
        self.appearance = app
        h, w = self.background.shape[0], self.background.shape[1]
        fw, fh = perceiver.frame_size
        feet = np.array([((o.box[0] + o.box[2]) / 2, o.box[3]) for v in videos for f in v for o in f.objects])
        self.zones.fit(feet.reshape(-1, 2), fw or w, fh or h)
        for v in videos:
            for f in v:
                for o in f.objects:
                    o.zone = self.zones.name((o.box[0] + o.box[2]) / 2, o.box[3])
        self.rules = induce_rules(videos, self.zones, self.config.induction, self.config.appearance)
        llm = self._llm()
        if llm is not None:
            frames = [f for v in videos for f in v if f.objects]
            self.rules = llm_induce(llm, self._vlm(), self.rules, self.zones, frames, fh or h,
                                    lambda f: sources[f.video].get(np.array([f.index]))[0], self.config)
        self.fit_info = {"n_videos": len(sources), "n_frames": sum(len(v) for v in videos), "shots": shots,
                         "frame_size": [fw, fh], "fit_s": round(time.perf_counter() - t0, 2),
                         **({"appearance": app.info} if app is not None else {})}
        self.rules.meta.update({"fit": self.fit_info})
        # score with the rules as rules.yaml holds them (limits rounded for reading), as a loaded model will
        self.rules = RuleSet.from_dict(self.rules.to_dict())

    def _perceive_normal(self, perceiver: Perceiver, sources: list[VideoSource], plan: list[tuple[int, int]] | None,
                         total: int, progress: bool, crops: Collector | None = None) -> list[list[FrameObs]]:
        """Perception of the normal footage: every frame per video, or the shot frames after a few warm-up ones.

        crops: collects the crops of the objects of every kept frame (appearance on)."""
        seen: list[np.ndarray] = []  # the frame perceived last

        def frames(it: Iterable[tuple[int, float, np.ndarray]]) -> Iterable[np.ndarray]:
            for _, _, f in it:
                seen[:] = [f]
                yield f

        videos: list[list[FrameObs]] = []
        bar = tqdm(total=len(plan) if plan is not None else total, desc="perceiving normal footage", unit="frame",
                   disable=not progress, leave=False)
        if plan is None:
            for vi, s in enumerate(sources):
                obs = []
                for fo in perceiver.run(frames(s.iter_frames())):
                    fo.video = vi
                    obs.append(fo)
                    if crops is not None:
                        crops.add(seen[0], fo)
                    bar.update()
                videos.append(obs)
        else:
            obs = []
            for v, i in plan:
                a = max(0, i - self.config.warmup)
                perceiver.reset()
                *_, last = perceiver.run(frames(sources[v].iter_frames(start=a, stop=i + 1)), start=a)
                last.video = v
                obs.append(last)
                if crops is not None:
                    crops.add(seen[0], last)
                bar.update()
            videos.append(obs)
        bar.close()
        return videos

    # -- scoring --------------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if self.background is None or not self.rules.rules:
            raise ModelError("the rules head is not fitted", "call fit() or load() a model folder first")

    def _check_shape(self, shape: tuple[int, ...], name: str) -> None:
        """InputError when frames of `shape` (H, W[, C]) do not shrink to the size the background was learned at."""
        assert self.background is not None
        if shrunk_shape(shape, self.config.perception.proc_height) != tuple(self.background.shape):
            raise InputError(f"{name}: frames are {shape[1]}x{shape[0]} but the model was fit on "
                             f"{self.fit_info.get('frame_size')}", "score footage of the camera the model was fit on")

    def check_input(self, video: Any, name: str | None = None) -> None:
        """Open `video` and check it can be scored (frames, frame size) without scoring it; InputError if not."""
        self._check_fitted()
        src = as_source(video, name)
        try:
            if src.frame_shape is not None:
                self._check_shape(src.frame_shape, src.name)
        finally:
            if src is not video and not isinstance(video, VideoReader):
                src.close()

    def score_video(self, video: Any, name: str | None = None, *,
                    progress: bool = False) -> tuple[Score, list[Verdict]]:
        """Score one video -> (Score with frame_scores/times/indices, raw per-frame Verdicts)."""
        self._check_fitted()
        if isinstance(video, VideoSource):
            return self._score_source(video, progress)
        src = as_source(video, name)
        try:
            return self._score_source(src, progress)
        finally:
            if not isinstance(video, VideoReader):  # close only what this call opened
                src.close()

    def _score_source(self, src: VideoSource, progress: bool) -> tuple[Score, list[Verdict]]:
        """score_video() on an opened source."""
        if src.frame_shape is not None:
            self._check_shape(src.frame_shape, src.name)
        llm, vlm, keep = self._llm(), self._vlm(), self.config.llm.deduce_frames
        perceiver = self._perceiver()
        perceiver.reset()
        if self.appearance is not None:
            self.appearance.reset()
        deducer = Deducer(self.rules, self.zones, persist=self.config.persist, soft=self.config.soft)
        verdicts: list[Verdict] = []
        described: dict[int, str] = {}  # frame position -> description, for the LLM's second opinion
        pixels: list[tuple[float, int, np.ndarray]] = []  # heap of the most anomalous flagged frames, to caption
        times: list[float] = []
        meta: dict[str, Any] = {}
        bar = tqdm(total=src.n_frames, desc=f"scoring {src.name}", unit="frame", disable=not progress, leave=False)
        for n, (i, t, frame) in enumerate(src.iter_frames()):
            if n % SCENE_CHECK_EVERY == 0 and "scene_warning" not in meta and not meta.get("black"):
                self._scene_checks(perceiver, frame, src.name, meta, at=i)
            if meta.get("black") and int(frame.max()) < BLACK_LEVEL:
                verdicts.append(Verdict(index=i, score=deducer.floor, judgement=0.0))
            else:
                fo = perceiver.step(frame, i, t)
                if self.appearance is not None:
                    self.appearance.measure(frame, fo.objects, i)
                v = deducer.judge(fo)
                if self.config.recheck and v.score > 0:
                    v = self._recheck(v, perceiver, deducer)
                if self.appearance is not None:
                    self.appearance.keep_crop(frame, v)
                if llm is not None and v.flagged(self.config.flag_at):
                    described[len(verdicts)] = fo.description(frame.shape[0])
                    if vlm is not None:
                        heapq.heappush(pixels, (v.judgement, len(verdicts), frame.copy()))
                        if len(pixels) > keep:
                            heapq.heappop(pixels)
                verdicts.append(v)
            times.append(t)
            bar.update()
        bar.close()
        if not verdicts:
            raise EmptyDataError(f"video {src.name} has no frames", "check the file or folder")
        if llm is not None and described:
            if vlm is not None and pixels:
                caps = vlm.caption([p[2] for p in pixels])
                for (_, k, _), c in zip(pixels, caps):
                    described[k] = f"{c} (measured: {described[k]})"
            llm_deduce(llm, self.rules, verdicts, described, meta, keep)
        raw = np.array([v.judgement for v in verdicts])
        scores = smooth_scores(raw, self.config.sigma)
        worst = verdicts[int(np.argmax(raw))]
        sc = Score(sample_id=src.name, score=float(scores.max()), frame_scores=scores.astype(np.float32),
                   frame_times=np.array(times), frame_indices=np.array([v.index for v in verdicts]),
                   reason=worst.reason, meta=meta)
        return sc, verdicts

    def _scene_checks(self, perceiver: Perceiver, frame: np.ndarray, name: str, meta: dict[str, Any],
                      at: int = 0) -> None:
        """Warn when the footage is black or the scene does not match the learned background (frame `at`)."""
        if at == 0 and int(frame.max()) < BLACK_LEVEL:
            meta["black"] = True
            warnings.warn(f"{name}: the footage starts black (no light or a capped lens); black frames score as "
                          "normal and cannot be judged", SceneMovedWarning, stacklevel=3)
            return
        self._check_shape(frame.shape, name)
        p = self.config.perception
        sim = perceiver.scene_similarity(frame)
        small = perceiver.shrink(frame, p.proc_height).astype(np.float32)
        changed = float(np.mean(np.abs(small - self.background) > 2 * p.diff_threshold))
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
                    b.judgement = min(b.judgement, rule.weight * judge_one(b.score, self.config.soft))
        if not v.breaches:
            return v
        score = max(b.score for b in v.breaches)
        judged = min(v.judgement, max(b.judgement for b in v.breaches))
        kept = sorted((b for b in v.breaches if b.score > 0), key=lambda b: (-b.judgement, -b.score))
        return Verdict(index=v.index, score=score, breaches=kept, box=next((b.box for b in kept if b.box), None),
                       judgement=judged)

    def score(self, samples: Iterable[Any], *, ctx: RunContext | None = None) -> Result:
        """Score videos -> Result: per-frame scores, events (rule broken) with reasons and boxes.

        Every input is opened and checked first; a bad one raises before anything is scored, or with ctx.skip_bad
        is recorded with Result.add_error and the others are scored.
        """
        ctx = context(ctx)
        self._check_fitted()
        self._llm()  # a backend that cannot be built is the model's problem, not one video's
        self._vlm()
        videos = list(samples)
        names = [f"video {k}" if isinstance(v, np.ndarray) else None for k, v in enumerate(videos)]
        bad: dict[int, str] = {}
        for k, video in enumerate(videos):
            try:
                self.check_input(video, names[k])
            except InputError as e:
                if not ctx.skip_bad:
                    raise
                bad[k] = e.message
        result = Result(head=HEAD, threshold=None, meta={
            "n_rules": len(self.rules), "events_from": "rule judgements: a rule broken on most frames around"})
        for k, video in enumerate(videos):
            if k not in bad:
                try:
                    sc, verdicts = self.score_video(video, names[k], progress=ctx.progress)
                except InputError as e:  # found only while decoding (e.g. a broken frame file)
                    if not ctx.skip_bad:
                        raise
                    bad[k] = e.message
            if k in bad:
                result.add_error(names[k] or sample_name(video), bad[k], local_path(video))
                continue
            result.scores.append(sc)
            result.events += self.events(sc, verdicts)
        return result

    def events(self, sc: Score, verdicts: list[Verdict]) -> list[Event]:
        """Events of a video scored by score_video(): its flagged runs of frames with reasons and boxes (an event
        whose reason is an odd-looking object with its crop and its nearest normal one, meta["appearance"])."""
        events = verdict_events(sc, verdicts, self.config.flag_at, self.config.persist)
        if self.appearance is not None:
            self.appearance.annotate(events, verdicts)
        return events

    # -- persistence ------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write rules.yaml, zones.yaml, background.npy, fit.json, the manifest (with the config) and, with appearance
        on, appearance/ (the normal crops' index and thumbnails) to `directory`."""
        self._check_fitted()
        assert self.background is not None
        return write_model(directory, self.config, self.rules, self.zones, self.background,
                           {"scene_baseline": self.scene_baseline, "fit": self.fit_info}, self.appearance)

    @classmethod
    def load(cls, directory: str | Path, *, device: str | None = None) -> Self:
        """Read a folder written by save() (or by an older oddeye); another head's folder is a ModelError."""
        config, rules, zones, background, state = read_model(directory)
        head = cls(config, device=device)
        head.zones, head.rules, head.background = zones, rules, background
        head.appearance = read_appearance(directory, config, head.device)
        head.scene_baseline = float(state.get("scene_baseline", 1.0))
        head.fit_info = state.get("fit", {})
        return head

