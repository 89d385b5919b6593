"""Turn a patrol Result (one Score per run) into a review Result with one 'patrol_pair' Score per query frame."""

from __future__ import annotations

from oddeye.core.types import Event, Result, Score


def pair_id(run: str, index: int) -> str:
    """Sample id of one query frame of a run."""
    return f"{run}/{index:06d}"


def per_pair(result: Result) -> Result:
    """One Score per scored frame (kind patrol_pair: meta index / ref_index, maps["change"] where the run kept the
    frame's map, reference / query / change pictures where they were written), runs that could not be read
    (Result.add_error) as they are, events pointing at their peak frame."""
    out = Result(head=result.head, threshold=result.threshold, metrics=dict(result.metrics), meta=dict(result.meta))
    for sc in result.scores:
        if "error" in sc.meta:
            out.scores.append(sc)
            continue
        for fr in sc.meta.get("frames", []):
            if fr["index"] < 0:
                continue
            key = f"frame_{fr['index']:06d}"
            maps = {"change": sc.maps[key]} if key in sc.maps else {}
            meta = {k: fr[k] for k in ("index", "time", "status", "ref_index", "similarity", "margin", "alignment",
                                       "boxes")}
            meta.update(kind="patrol_pair", run=sc.sample_id, source=sc.meta.get("source"))
            out.scores.append(Score(pair_id(sc.sample_id, fr["index"]), fr["score"], maps=maps,
                                    reason=fr["reason"] or fr["status"], artefacts=dict(fr.get("artefacts") or {}),
                                    meta=meta))
    for ev in result.events:
        peak = ev.meta.get("peak_frame", ev.start_frame)
        out.events.append(Event(**{**ev.__dict__, "sample_id": pair_id(ev.sample_id, int(peak))}))
    return out
