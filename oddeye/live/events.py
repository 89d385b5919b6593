"""Events across chunk boundaries: an event that touches the end of a chunk stays open until a chunk ends it.

    tracker = EventTracker("cam-1", merge_gap=3)
    changed = tracker.update(events_in_chunk, first=100, last=149)   # stream frame numbers
    for ev in changed: store.upsert_event(run_id, ev.key, ..., open=ev.open)
    for ev in tracker.close_all(): ...                               # on shutdown
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np

from oddeye.core.types import Event


@dataclass
class LiveEvent:
    """An event of a live stream in stream frame numbers; `key` is unique in the run and fixed at its first frame."""

    key: str
    sample_id: str
    start_frame: int
    end_frame: int  # inclusive
    start: float | None
    end: float | None
    score: float
    reason: str = ""
    box: tuple[float, float, float, float] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    open: bool = True

    def upsert_args(self) -> dict[str, Any]:
        """Keyword arguments of Store.upsert_event (all but run_id and key)."""
        return dict(sample_id=self.sample_id, score=self.score, start_frame=self.start_frame,
                    end_frame=self.end_frame, start=self.start, end=self.end, reason=self.reason, open=self.open,
                    box=self.box, meta=self.meta)


def event_key(sample_id: str, start_frame: int) -> str:
    """The store key of an event: the source's sample id and the stream frame it starts at."""
    return f"{sample_id}:{int(start_frame)}"


class EventTracker:
    """Merges the events found chunk by chunk into events of the stream; at most `merge_gap` frames may separate
    the parts of one event. An event ending within `merge_gap` frames of a chunk's end is kept open."""

    def __init__(self, sample_id: str, merge_gap: int = 3) -> None:
        self.sample_id = sample_id
        self.merge_gap = int(merge_gap)
        self.open: list[LiveEvent] = []

    def update(self, events: Sequence[Event], first: int, last: int,
               first_time: float | None = None) -> list[LiveEvent]:
        """Feed the events found in stream frames [first, last] (frame numbers of the stream; parts before `first`,
        at `first_time` s, are cut off); return every event that started, grew or ended, in start order."""
        parts = sorted((_clip(e, first, first_time) for e in events if e.end_frame is not None and e.end_frame >= first
                        and e.start_frame is not None and e.start_frame <= last), key=lambda e: e.start_frame)
        changed: list[LiveEvent] = []
        still: list[LiveEvent] = []
        for ev in self.open:
            joined = [p for p in parts if p.start_frame <= ev.end_frame + self.merge_gap + 1]
            for p in joined:
                parts.remove(p)
                _grow(ev, p)
            if not joined and ev.end_frame + self.merge_gap >= first - 1 and last - ev.end_frame <= self.merge_gap:
                still.append(ev)  # a very short chunk: it may still go on
                continue
            ev.open = ev.end_frame >= last - self.merge_gap
            changed.append(ev)
            if ev.open:
                still.append(ev)
        merged: list[Event] = []
        for p in parts:  # parts of one chunk closer than merge_gap are one event
            if merged and p.start_frame <= merged[-1].end_frame + self.merge_gap + 1:
                _grow_event(merged[-1], p)
            else:
                merged.append(p)
        for p in merged:
            ev = LiveEvent(key=event_key(self.sample_id, p.start_frame), sample_id=self.sample_id,
                           start_frame=int(p.start_frame), end_frame=int(p.end_frame), start=p.start, end=p.end,
                           score=float(p.score), reason=p.reason, box=p.box, meta=dict(p.meta),
                           open=p.end_frame >= last - self.merge_gap)
            changed.append(ev)
            if ev.open:
                still.append(ev)
        self.open = still
        return sorted(changed, key=lambda e: e.start_frame)

    def close_all(self) -> list[LiveEvent]:
        """Close every open event (the stream ended or the watcher stops) and return them."""
        closed = self.open
        for ev in closed:
            ev.open = False
        self.open = []
        return closed


def _clip(e: Event, first: int, first_time: float | None) -> Event:
    """A copy of `e` starting no earlier than frame `first` (context frames belong to the previous chunk)."""
    if e.start_frame is not None and e.start_frame >= first:
        return replace(e, meta=dict(e.meta))
    return replace(e, start_frame=first, start=first_time, meta=dict(e.meta))


def _grow(ev: LiveEvent, p: Event) -> None:
    """Extend live event `ev` by the later part `p`: end, max score, the reason and box of the stronger part."""
    if p.end_frame is not None and p.end_frame > ev.end_frame:
        ev.end_frame, ev.end = int(p.end_frame), p.end
    if p.score > ev.score:
        ev.score, ev.reason, ev.box = float(p.score), p.reason or ev.reason, p.box or ev.box
        ev.meta.update(p.meta)


def _grow_event(e: Event, p: Event) -> None:
    """Extend event `e` by the later part `p` of the same chunk."""
    if p.end_frame is not None and e.end_frame is not None and p.end_frame > e.end_frame:
        e.end_frame, e.end = p.end_frame, p.end
    if p.score > e.score:
        e.score, e.reason, e.box = p.score, p.reason or e.reason, p.box or e.box
        e.meta.update(p.meta)


def to_stream_event(e: Event, idx: np.ndarray, times: np.ndarray) -> Event:
    """An event of the scored array (frame numbers = positions in it) in stream frame numbers and times."""
    last = len(idx) - 1
    a = min(max(int(e.start_frame), 0), last)
    b = min(max(int(e.end_frame), 0), last) if e.end_frame is not None else a
    meta = dict(e.meta)
    if isinstance(meta.get("peak_frame"), (int, np.integer)) and 0 <= meta["peak_frame"] <= last:
        meta["peak_frame"] = int(idx[int(meta["peak_frame"])])
    if isinstance(meta.get("boxes"), dict):  # per-frame boxes keyed by frame number
        meta["boxes"] = {str(int(idx[int(k)])): v for k, v in meta["boxes"].items() if str(k).isdigit()
                         and int(k) <= last}
    return Event(sample_id=e.sample_id, score=float(e.score), start=float(times[a]), end=float(times[b]),
                 start_frame=int(idx[a]), end_frame=int(idx[b]), box=e.box, reason=e.reason, meta=meta)
