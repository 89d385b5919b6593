"""Offline rule induction: allowed ranges per attribute and zone from normal frames, aggregated over subsets."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Sequence

import numpy as np

from oddeye.core.errors import EmptyDataError
from oddeye.video.rules.config import AppearanceConfig, InductionConfig
from oddeye.video.rules.perception import FrameObs
from oddeye.video.rules.rules import ATTRIBUTES, KINDS, SET_ATTRIBUTES, Rule, RuleSet, default_text
from oddeye.video.rules.zones import ZoneMap

TWO_SIDED = ("aspect",)  # attributes whose low end is also constrained


def _range(values: np.ndarray, attr: str, p: InductionConfig, extra: float = 0.0) -> tuple[float | None, float, float]:
    """(low, high, margin) of normal `values` (N,) for attribute `attr`; the limits sit `extra` margins farther out."""
    med = float(np.median(values))
    high = float(np.quantile(values, p.quantile))
    margin = max(p.margin_k * (high - med), p.margin_floor * abs(high), 1.0 if attr == "count" else 1e-3)
    flat = np.mean(values >= high - 0.05 * margin) > 0.2  # a fifth of the values tie at the top (discrete data)
    pad = (p.flat_pad if flat else 0.0) * margin + extra * margin
    low = float(np.quantile(values, 1 - p.quantile)) - pad if attr in TWO_SIDED else None
    return low, high + pad, margin


def _induce_once(objs: list[tuple[str, str, dict[str, float]]], counts: np.ndarray, zones: ZoneMap,
                 p: InductionConfig, pads: dict[str, float]) -> dict[tuple[str, str], tuple[Any, ...]]:
    """One induction over (zone, band, values) of objects -> {(attribute, zone): (low, high, margin, n)}.

    pads: margins by which an attribute's limits move out; values that are NaN (not measured) are left out."""
    out: dict[tuple[str, str], tuple[Any, ...]] = {}
    groups: dict[str, list[int]] = defaultdict(list)
    for i, (zone, band, _) in enumerate(objs):
        groups[zone].append(i)
        groups[band].append(i)
        groups["anywhere"].append(i)
    for where, idx in groups.items():
        if len(idx) < p.min_support and where != "anywhere":
            continue
        for attr in p.attributes:
            vals = np.array([objs[i][2][attr] for i in idx], dtype=np.float64)
            vals = vals[np.isfinite(vals)]
            if len(vals) and (len(vals) >= p.min_support or where == "anywhere"):
                out[(attr, where)] = (*_range(vals, attr, p, pads.get(attr, 0.0)), len(vals))
        if p.kind_rule and idx:
            kinds = [objs[i][2]["kind"] for i in idx]
            allowed = [k for k in KINDS if kinds.count(k) >= p.kind_min_share * len(kinds)]
            if len(allowed) < len(KINDS):  # a rule that allows every kind says nothing
                out[("kind", where)] = (allowed, len(kinds))
    seen = sorted({z for z, _, _ in objs})
    zc = {z: sum(1 for o in objs if o[0] == z) for z in seen}
    if p.zone_rule:
        out[("zone", "anywhere")] = (sorted(z for z in seen if zc[z] >= p.presence_min), len(objs))
    if p.count_rule and len(counts):  # counts are whole: the limit sits just below the next count up
        out[("count", "anywhere")] = (None, float(np.floor(np.quantile(counts, p.quantile))) + 0.999, 1.0, len(counts))
    return out


def _folds(videos: Sequence[Sequence[FrameObs]], k: int) -> list[tuple[list[list[FrameObs]], list[list[FrameObs]]]]:
    """k (train, held-out) splits: by whole videos when there are >= k of them, else by blocks of time."""
    vids = [list(v) for v in videos if len(v)]
    if len(vids) >= k:
        parts = [[vids[i] for i in range(len(vids)) if i % k == f] for f in range(k)]
    else:
        parts = [[v[len(v) * f // k: len(v) * (f + 1) // k] for v in vids] for f in range(k)]
    return [([v for g, part in enumerate(parts) if g != f for v in part], parts[f]) for f in range(k)]


def held_out_breach(videos: Sequence[Sequence[FrameObs]], zones: ZoneMap, p: InductionConfig,
                    appearance: AppearanceConfig | None = None) -> tuple[dict[str, float], int]:
    """Share of held-out normal frames in which each attribute's rules break (median over p.folds folds),
    and the number of frames in the smallest held-out fold."""
    from oddeye.video.rules.deduction import Deducer

    single = p.replace(folds=0, subsets=1, flat_pad=0.0)
    rates: dict[str, list[float]] = defaultdict(list)
    smallest = 0
    names = list(p.attributes) + ["zone"] * p.zone_rule + ["count"] * p.count_rule + ["kind"] * p.kind_rule
    for train, held in _folds(videos, p.folds):
        if not any(f.objects for v in train for f in v) or not any(len(v) for v in held):
            continue
        rs = induce_rules(train, zones, single, appearance)
        hits: dict[str, int] = defaultdict(int)
        n = 0
        for v in held:
            ded = Deducer(rs, zones)
            for f in v:
                n += 1
                for a in {b.attribute for b in ded.judge(f).breaches}:
                    hits[a] += 1
        for a in names:
            rates[a].append(hits[a] / max(n, 1))
        smallest = n if smallest == 0 else min(smallest, n)
    return {a: float(np.median(r)) for a, r in rates.items()}, smallest


def induce_rules(videos: Sequence[Sequence[FrameObs]], zones: ZoneMap, params: InductionConfig | None = None,
                 appearance: AppearanceConfig | None = None) -> RuleSet:
    """Rules from the perception of normal videos: ranges per attribute and zone, kept if they recur in subsets.

    appearance (enabled): rules on the objects' "appearance" too (their distance to the nearest normal crop, measured
    on held-out normal footage; see appearance.py), with its margin and judgement weight."""
    p = params or InductionConfig()
    if appearance is not None and appearance.enabled and "appearance" not in p.attributes:
        p = p.replace(attributes=(*p.attributes, "appearance"))
    pads = {"appearance": appearance.margin} if appearance is not None else {}
    weights = {"appearance": appearance.weight} if appearance is not None else {}
    validation: dict[str, float] = {}
    n_held = 0
    asked = p
    if p.folds >= 2 and sum(len(v) for v in videos) >= 4 * p.folds:
        validation, n_held = held_out_breach(videos, zones, p, appearance)
        if validation:  # a breach rate measured on n frames is uncertain by about 2/n
            ok = {a for a, r in validation.items() if r <= p.max_breach + 2.0 / max(n_held, 1)}
            if not ok & set(p.attributes):  # keep at least the steadiest numeric attribute
                ok.add(min(p.attributes, key=lambda a: validation.get(a, 1.0)))
            p = p.replace(attributes=tuple(a for a in p.attributes if a in ok), zone_rule=p.zone_rule and "zone" in ok,
                          count_rule=p.count_rule and "count" in ok, kind_rule=p.kind_rule and "kind" in ok, folds=0)
    frames = [f for v in videos for f in v]
    if not frames:
        raise EmptyDataError("no normal frames to induce rules from", "give normal footage")
    if not any(f.objects for f in frames):
        raise EmptyDataError("no moving objects were seen in the normal footage",
                             "check the footage is not empty or black, or lower diff_threshold / min_area")
    rng = np.random.default_rng(p.seed)
    n_sub = p.subsets if p.subsets > 1 else 1
    found: dict[tuple[str, str], list[tuple[Any, ...]]] = defaultdict(list)
    for k in range(n_sub):
        if n_sub == 1:
            pick = np.arange(len(frames))
        else:
            pick = np.sort(rng.choice(len(frames), max(1, int(p.subset_frac * len(frames))), replace=False))
        objs = [(o.zone, zones.band(o.zone), {**{a: o.value(a) for a in p.attributes}, "kind": o.kind})
                for i in pick for o in frames[i].objects]
        if not objs:
            continue
        counts = np.array([frames[i].count for i in pick])
        for key, val in _induce_once(objs, counts, zones, p, pads).items():
            found[key].append(val)
    rules: list[Rule] = []
    for (attr, where), vals in sorted(found.items()):
        support = len(vals) / n_sub
        if support < p.recur:
            continue
        if attr in SET_ATTRIBUTES:
            share: dict[str, int] = defaultdict(int)
            for allowed, _ in vals:
                for z in allowed:
                    share[z] += 1
            allowed = sorted(z for z, c in share.items() if c / n_sub >= p.recur)
            r = Rule(id="", attribute=attr, zone=where, allowed=allowed, margin=1.0, support=support,
                     weight=p.zone_weight if attr == "zone" else _weight(attr, p, validation, n_held),
                     n=int(np.median([v[1] for v in vals])))
        else:
            lows = [v[0] for v in vals if v[0] is not None]
            r = Rule(id="", attribute=attr, zone=where, low=float(np.median(lows)) if lows else None,
                     weight=weights.get(attr) or _weight(attr, p, validation, n_held),
                     high=float(np.median([v[1] for v in vals])), margin=float(np.median([v[2] for v in vals])),
                     support=support, n=int(np.median([v[3] for v in vals])))
        r.text = default_text(r)
        rules.append(r)
    rules = _prune(rules, zones, p.redundant)
    order = {a: i for i, a in enumerate(ATTRIBUTES)}
    rules.sort(key=lambda r: (r.scope != "frame", order[r.attribute], r.zone != "anywhere", r.zone))
    for i, r in enumerate(rules):
        r.id = f"R{i + 1:03d}"
    meta = {"backend": "offline", "n_frames": len(frames), "n_objects": sum(f.count for f in frames),
            "induction": asked.to_dict()}
    if validation:
        meta["attributes_kept"] = (list(p.attributes) + ["zone"] * p.zone_rule + ["count"] * p.count_rule
                                   + ["kind"] * p.kind_rule)
        meta["held_out_breach_rate"] = {a: round(r, 4) for a, r in validation.items()}
    return RuleSet(rules=rules, meta=meta)


def _weight(attr: str, p: InductionConfig, validation: dict[str, float], n_held: int) -> float:
    """Judgement weight of an attribute's rules: speed 1; size/shape size_weight, or 1 when they never broke on
    held-out normal footage (of at least 60 frames a fold); the frame count zone_weight (it names no object)."""
    if attr in ("speed", "track_speed"):
        return 1.0
    if attr == "count":
        return p.zone_weight
    return 1.0 if validation.get(attr, 1.0) == 0.0 and n_held >= 60 else p.size_weight


def _prune(rules: list[Rule], zones: ZoneMap, tol: float) -> list[Rule]:
    """Drop zone rules that say what their band's rule says (within `tol`), and band rules like the global one."""
    key = {(r.attribute, r.zone): r for r in rules}

    def same(a: Rule, b: Rule | None) -> bool:
        if b is None or a.high is None or b.high is None:
            return False
        lo_ok = (a.low is None) == (b.low is None) and (a.low is None or abs(a.low - b.low) <= tol * abs(b.low) + 1e-9)
        return lo_ok and abs(a.high - b.high) <= tol * abs(b.high) + 1e-9

    out = []
    for r in rules:
        if r.attribute == "kind" and r.zone != "anywhere":
            parent = key.get(("kind", "anywhere" if r.zone.endswith(" band") else zones.band(r.zone)))
            if parent is not None and parent.allowed == r.allowed:
                continue
        if r.allowed is None and r.zone != "anywhere":
            parent = "anywhere" if r.zone.endswith(" band") else zones.band(r.zone)
            if same(r, key.get((r.attribute, parent))):
                continue
        out.append(r)
    return out
