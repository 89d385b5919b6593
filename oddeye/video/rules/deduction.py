"""Deduction: judge each object and frame against the rules; robust reasoning and temporal smoothing."""

from __future__ import annotations

import math
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter1d, median_filter

from oddeye.core.types import Event, Score, events_from_scores

from oddeye.video.rules.perception import FrameObs, ObjectObs
from oddeye.video.rules.rules import Rule, RuleSet
from oddeye.video.rules.zones import ZoneMap

FLOOR = -3.0  # score of a frame in which nothing can break a rule


@dataclass
class Breach:
    """One rule broken by one object (or by the frame): the rule, the value, its score and the object's box."""

    rule: str
    attribute: str
    value: float | str
    score: float
    text: str
    box: tuple[float, float, float, float] | None = None
    track: int | None = None
    judgement: float = 0.0
    nearest: int | None = None  # appearance: the nearest normal crop's number in the appearance index
    crop: bytes | None = None  # appearance: the object's crop as JPEG (set by the head for the dashboard)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for Event.meta and the store."""
        d = {"rule": self.rule, "attribute": self.attribute, "value": self.value, "score": round(self.score, 3),
             "text": self.text, "box": None if self.box is None else [round(v, 1) for v in self.box],
             "track": self.track}
        if self.nearest is not None:
            d["nearest"] = self.nearest
        return d


@dataclass
class Verdict:
    """The judgement of one frame: its score (margin units; > 0 breaks a rule), breaches, worst box."""

    index: int
    score: float
    breaches: list[Breach] = field(default_factory=list)
    box: tuple[float, float, float, float] | None = None
    judgement: float = 0.0  # in [0, 1]: 1 breaks a rule of weight 1; rises over `soft` margins below the limit

    def flagged(self, flag_at: float = 0.5) -> bool:
        """True when the frame breaks a rule whose judgement weight is at least `flag_at`."""
        return any(b.score > 0 and b.judgement >= flag_at for b in self.breaches)

    @property
    def reason(self) -> str:
        """The worst breach in words ('' when no rule is broken)."""
        if not self.breaches:
            return ""
        b = self.breaches[0]
        who = "the frame" if b.box is None else "an object at x=%d..%d, y=%d..%d" % (b.box[0], b.box[2], b.box[1], b.box[3])
        sep = " " if b.attribute == "appearance" else ": "  # "an object at ... that looks like none in ..."
        return f"{who}{sep}{b.text} [rule {b.rule}]"


class Deducer:
    """Checks FrameObs against a RuleSet; `persist` frames of a track must break a rule before it counts."""

    def __init__(self, rules: RuleSet, zones: ZoneMap, persist: int = 3, floor: float = FLOOR,
                 soft: float = 0.75) -> None:
        """persist: robust reasoning -- an object's judgement is the lowest of its track's last `persist` ones."""
        self.rules = rules
        self.soft = soft
        self.zones = zones
        self.persist = max(1, int(persist))
        self.floor = floor
        self._key = rules.by_key()
        self._by_id = {r.id: r for r in rules.rules}
        self._object_attrs = sorted({r.attribute for r in rules.rules if r.scope == "object"})
        self._frame_rules = [r for r in rules.rules if r.scope == "frame"]
        self._history: dict[int, deque[float]] = defaultdict(lambda: deque(maxlen=self.persist))

    def rule_by_id(self, rule_id: str) -> Rule | None:
        """The rule with id `rule_id`, or None."""
        return self._by_id.get(rule_id)

    def reset(self) -> None:
        """Forget track histories (call between videos)."""
        self._history.clear()

    def rule_for(self, attribute: str, zone: str) -> Rule | None:
        """The most specific rule of `attribute` for `zone`: the zone's own, its band's, else 'anywhere'."""
        for where in (zone, self.zones.band(zone), "anywhere"):
            r = self._key.get((attribute, where))
            if r is not None:
                return r
        return None

    def object_breaches(self, obj: ObjectObs) -> list[Breach]:
        """Every rule check of one object, worst first (scores may be negative: within the rule)."""
        out = []
        for attr in self._object_attrs:
            r = self.rule_for(attr, obj.zone)
            if r is None:
                continue
            value: float | str = obj.zone if attr == "zone" else (obj.kind if attr == "kind" else obj.value(attr))
            if isinstance(value, float) and math.isnan(value):  # not measured (appearance off, or no crop)
                continue
            s = r.score(value)
            b = Breach(r.id, attr, value if isinstance(value, str) else round(float(value), 3), s,
                       r.broken_text(value) if s > 0 else "", obj.box, obj.track,
                       nearest=obj.nearest if attr == "appearance" else None)
            b.judgement = r.weight * judge_one(s, self.soft)
            out.append(b)
        out.sort(key=lambda b: -b.score)
        return out

    def judge(self, frame: FrameObs) -> Verdict:
        """Score one frame: the worst (persisted) object score or frame-rule score; breaches with boxes."""
        best, judged = self.floor, 0.0
        breaches: list[Breach] = []
        for obj in frame.objects:
            checks = self.object_breaches(obj)
            if not checks:
                continue
            top = max(checks, key=lambda b: b.judgement)
            hist = self._history[obj.track]
            hist.append((checks[0].score, top.judgement))
            if len(hist) >= min(self.persist, obj.age):
                s, j = min(h[0] for h in hist), min(h[1] for h in hist)
            else:
                s, j = checks[0].score, top.judgement
            best, judged = max(best, s), max(judged, j)
            if s > 0:
                breaches += [b for b in checks if b.score > 0]
        for r in self._frame_rules:
            s = r.score(frame.value(r.attribute))
            best = max(best, s)
            j = r.weight * judge_one(s, self.soft)
            judged = max(judged, j)
            if s > 0:
                breaches.append(Breach(r.id, r.attribute, frame.count, s, r.broken_text(frame.value(r.attribute)),
                                       judgement=j))
        breaches.sort(key=lambda b: (-b.judgement, -b.score))
        box = next((b.box for b in breaches if b.box is not None), None)
        return Verdict(index=frame.index, score=float(max(best, self.floor)), breaches=breaches, box=box,
                       judgement=judged)


def smooth_scores(scores: np.ndarray, sigma: float) -> np.ndarray:
    """Perception smoothing: Gaussian filter of per-frame scores (T,) over time, sigma in frames (0: none)."""
    s = np.asarray(scores, dtype=np.float64)
    if sigma <= 0 or len(s) < 2:
        return s
    return gaussian_filter1d(s, sigma, mode="nearest")


def judge_one(score: float, soft: float = 0.75) -> float:
    """Judgement in [0, 1] of a rule score: 1 breaks the rule, 0 lies `soft` margins or more inside it."""
    if soft <= 0:
        return 1.0 if score > 0 else 0.0
    return min(max(score / soft, -1.0), 0.0) + 1.0


def verdict_events(sc: Score, verdicts: list[Verdict], flag_at: float = 0.5, persist: int = 3) -> list[Event]:
    """Events of one scored video: runs of frames flagged (a rule of weight >= flag_at broken on most frames within
    `persist` either side); each carries the reason, box and breaches of its peak frame and the boxes per frame."""
    assert sc.frame_scores is not None and sc.frame_indices is not None
    reasons = [v.reason for v in verdicts]
    flagged = median_filter(np.array([v.flagged(flag_at) for v in verdicts], dtype=float), 2 * persist + 1,
                            mode="nearest")
    events = events_from_scores(flagged, 0.5, sc.sample_id, times=sc.frame_times,
                                frame_indices=sc.frame_indices, min_length=2, merge_gap=3, reasons=reasons)
    pos = {int(ix): k for k, ix in enumerate(sc.frame_indices)}
    for ev in events:
        a, b = pos[ev.start_frame], pos[ev.end_frame]
        k = max(range(a, b + 1), key=lambda j: (verdicts[j].flagged(flag_at), verdicts[j].judgement, verdicts[j].score))
        v = verdicts[k]
        ev.meta["peak_frame"] = v.index
        ev.score = float(sc.frame_scores[k])
        ev.reason = v.reason or ev.reason
        ev.box = v.box
        ev.meta["breaches"] = [x.to_dict() for x in v.breaches[:5]]
        ev.meta["rules"] = sorted({x.rule for j in range(a, b + 1) for x in verdicts[j].breaches})
        ev.meta["boxes"] = {str(verdicts[j].index): list(verdicts[j].box) for j in range(a, b + 1)
                            if verdicts[j].box is not None}
    return events
