"""A live source as one self-contained unit (model + reader + writer); `src = LiveSource(spec, db)` opens nothing
(it may be sent to another process), `src.run(stop_event)` scores until stopped (or a file ends), then closes.

Every write goes through the store's live methods from the source's thread. A watcher killed and started again
resumes the open run: the stream clock goes on after the last stored frame, events left open are closed, and the
folder ledger keeps scored files from being scored twice.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from oddeye.core.errors import OddeyeError, StoreUnavailable
from oddeye.core.head import RunContext
from oddeye.core.types import Result, events_from_scores
from oddeye.live.config import SourceSpec
from oddeye.live.events import EventTracker, LiveEvent, to_stream_event
from oddeye.core.memory import cap_malloc_arenas
from oddeye.live.retry import RetryingStore
from oddeye.live.sources import Chunk, FolderPoller, VideoFeed

MERGE_GAP = 3  # frames: parts of an event this close are one event, across chunks too
HEALTH_EVERY_S = 1.0
STOP_GRACE_S = 3.0  # after a stop, how long a stalled reader may take to hand over its last chunk


def _echo(line: str) -> None:
    print(line, flush=True)


class StopFlag(Protocol):
    """What run() needs of its stop signal: a threading.Event, a multiprocessing Event, a Ray-side flag..."""

    def is_set(self) -> bool:
        """True once the source should stop."""
        ...

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until set or `timeout` s pass; True if set."""
        ...


@dataclass
class Stats:
    """What a source has done so far (this process): the numbers of its health row and of the summary."""

    frames: int = 0  # frames scored
    items: int = 0  # folder items scored
    errors: int = 0
    events: int = 0  # events started
    last_event: dt.datetime | None = None
    lag_s: float = 0.0  # last frame of the newest chunk: arrival -> stored
    lags: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))


class LiveSource:
    """One source of `oddeye watch`: loads its model, reads its frames or files, writes its live run."""

    def __init__(self, spec: SourceSpec, db: str, *, say: Callable[[str], None] | None = None,
                 device: str | None = None) -> None:
        cap_malloc_arenas()
        self.spec, self.db, self.device = spec, str(db), device
        self.say = say or _echo
        self.stats = Stats()
        self.head: Any = None
        self.store: Any = None
        self.run_id: int | None = None
        self.resumed = False
        self._tracker = EventTracker(spec.name, MERGE_GAP)
        self._context: Chunk | None = None
        self._last_seq = -2
        self._errors_seen: set[str] = set()
        self._health_at = 0.0
        self._counts_at = (0.0, 0, 0)  # (monotonic time, frames in, frames scored) at the last health write
        self._feed: VideoFeed | None = None
        self._announced: set[str] = set()  # keys of the open events (said, counted, with a thumbnail)
        self._failing = False  # the last chunk could not be scored
        self.failed: str | None = None  # why the source could not run at all
        self._stop: StopFlag | None = None  # run() gives the watcher's

    def _log(self, line: str) -> None:
        self.say(f"{time.strftime('%H:%M:%S')} {self.spec.name}: {line}")

    # -- opening and closing ------------------------------------------------------------------------------------
    def open(self) -> int:
        """Load the head, open the store and the source's live run (an open one is resumed); the run id."""
        from oddeye.core.head import load_head
        from oddeye.store.api import open_store

        if self.run_id is not None:
            return self.run_id
        self.head = load_head(self.spec.model, device=self.device)
        self.store = RetryingStore(open_store(self.db), self._stopping, self._store_note)
        before = {r["id"] for r in self.store.live_runs("open") if r["source"] == self.spec.name}
        self.run_id = self.store.open_live_run(self.spec.name, head=self.head.name, model=self.spec.model,
                                               source_kind=self.spec.kind)
        self.resumed = self.run_id in before
        self._log(f"{'resumed' if self.resumed else 'opened'} live run {self.run_id} ({self.spec.kind} "
                  f"{self.spec.source}, {self.head.name} model {self.spec.model})")
        return self.run_id

    def close(self) -> None:
        """Close open events and the live run, write the last health row, release the store."""
        if self.store is None or self.run_id is None:
            return
        for ev in self._tracker.close_all():
            self._write_event(ev)
        self._health(self._state_now(), force=True)
        self.store.close_live_run(self.run_id)
        s = self.stats
        done = f"{s.items} item(s)" if self.spec.kind == "folder" else f"{s.frames} frame(s)"
        self._log(f"closed run {self.run_id}: {done}, {s.events} event(s), {s.errors} error(s)")
        self.store.close()
        self.store = None

    def summary(self) -> dict[str, Any]:
        """What this source did in this process: run id, frames, items, events, errors, reconnects, dropped frames."""
        feed, s = self._feed, self.stats
        return {"run_id": self.run_id, "frames": s.frames, "items": s.items, "events": s.events, "errors": s.errors,
                "reconnects": feed.reconnects if feed else 0,
                "dropped_frames": feed.queue.dropped_frames if feed else 0}

    # -- running ------------------------------------------------------------------------------------------------
    def run(self, stop: StopFlag) -> Stats:
        """Score the source until `stop` is set (or a file without loop ends), then close its run; the stats."""
        self._stop = stop
        self.open()
        try:
            if self.spec.kind == "folder":
                self._run_folder(stop)
            else:
                self._run_video(stop)
        finally:
            self.close()
        return self.stats

    def _stopping(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    def _store_note(self, what: str, detail: str) -> None:
        """Log a store outage the source rode out, in the store (it answers again) and on the console."""
        self._log(f"{what}: {detail}")
        self.store.log_live(self.run_id, what, detail)

    def _error(self, what: str, message: str) -> None:
        """Count an error; log it to the store and the console the first time this message is seen."""
        self.stats.errors += 1
        if message not in self._errors_seen:
            if len(self._errors_seen) >= 100:
                self._errors_seen.clear()
            self._errors_seen.add(message)
            self.store.log_live(self.run_id, "error", f"{what}: {message}")
            self._log(f"error: {what}: {message}")

    # -- video --------------------------------------------------------------------------------------------------
    def _resume_point(self) -> tuple[int, float]:
        """(next frame number, its time) on the stream clock of a resumed run; events left open are closed."""
        if not self.resumed:
            return 0, 0.0
        last, t = -1, 0.0
        for smp in self.store.samples(self.run_id, order="id"):
            if smp["sample_id"] == self.spec.name and smp["frame_end"] is not None:
                last = max(last, int(smp["frame_end"]))
                times = self.store.series(smp["id"]).get("frame_times")
                if times is not None and len(times):
                    t = float(times[-1])
        closed = 0
        for ev in self.store.events(self.run_id, with_meta=False):
            last = max(last, int(ev["end_frame"] if ev["end_frame"] is not None else -1))
            t = max(t, float(ev["end"] or 0.0))
            if ev.get("is_open") and ev.get("key"):  # it ended when the watcher died: close it where it was
                box = None if ev.get("x1") is None else (ev["x1"], ev["y1"], ev["x2"], ev["y2"])
                self.store.upsert_event(self.run_id, ev["key"], sample_id=ev["sample_id"], score=ev["score"],
                                        start_frame=ev["start_frame"], end_frame=ev["end_frame"], start=ev["start"],
                                        end=ev["end"], reason=ev["reason"], open=False, box=box)
                closed += 1
        detail = f"watcher restarted; the stream clock resumes at frame {last + 1}" + \
            (f"; {closed} event(s) left open were closed at their last frame" if closed else "")
        self.store.log_live(self.run_id, "restart", detail)
        self._log(f"restart: {detail.split('; ', 1)[1]}")
        return last + 1, t + 1.0 / 25.0 if last >= 0 else 0.0

    def _run_video(self, stop: StopFlag) -> None:
        """Read chunks from the feed and score them until stopped or the feed ends; the last chunk is scored too."""
        start, t0 = self._resume_point()
        feed = VideoFeed(self.spec, start_index=start, start_time=t0).start()
        self._feed = feed
        stopping_at: float | None = None
        try:
            while True:
                chunk = feed.queue.get(timeout=0.25)
                if chunk is not None:
                    self._score_chunk(chunk)
                self._notes(feed)
                self._health(self._state_now())
                if stop.is_set() and stopping_at is None:
                    feed.stop()
                    stopping_at = time.monotonic()
                if feed.queue.finished or (stopping_at and time.monotonic() - stopping_at > STOP_GRACE_S):
                    break
        finally:
            feed.stop()
            feed.join(timeout=1.0)
            self._notes(feed)
        if feed.error:  # the file could not be read at all (logged by the reader)
            self.stats.errors += 1
            self.failed = feed.error

    def _notes(self, feed: VideoFeed) -> None:
        """Write what the reader noted (reconnects, retries, errors) to the store's log of the run."""
        while feed.notes:
            what, detail = feed.notes.popleft()
            self.store.log_live(self.run_id, what, detail)
            self._log(f"{what}: {detail}")

    def _state_now(self) -> str:
        """The state shown in the health row: the feed's (running, reconnecting, ...), "error" while chunks fail,
        or running for a folder."""
        if self._feed is None:
            return "running"
        return "error" if self._failing and self._feed.state == "running" else self._feed.state

    def _score_chunk(self, chunk: Chunk) -> None:
        """Score one chunk (after a few context frames of the previous one), store its series and events."""
        ctx, k = self._context, self.spec.context
        if ctx is not None and chunk.seq == self._last_seq + 1 and not chunk.after_gap:
            data = np.concatenate([ctx.data, chunk.data])
            idx = np.concatenate([ctx.indices, chunk.indices])
            times = np.concatenate([ctx.times, chunk.times])
        else:
            data, idx, times = chunk.data, chunk.indices, chunk.times
        self._last_seq = chunk.seq  # keep only the frames the next chunk needs
        self._context = Chunk(chunk.data[-k:].copy(), chunk.indices[-k:], chunk.times[-k:], chunk.arrived,
                              chunk.seq) if k else None
        self._failing = True
        try:
            result = self.head.score([data], ctx=RunContext(progress=False))
        except OddeyeError as e:
            self._error("scoring", e.message)
            return
        except Exception as e:  # noqa: BLE001 - a chunk the head cannot take must not end the watcher
            self._error("scoring", f"{type(e).__name__}: {str(e)[:300]}")
            return
        if result.errors() or not result.scores or result.scores[0].frame_scores is None:
            self._error("scoring", "; ".join(str(s.meta["error"]) for s in result.errors()) or "no frame scores")
            return
        sc = result.scores[0]
        pos = np.asarray(sc.frame_indices if sc.frame_indices is not None else np.arange(len(sc.frame_scores)))
        if len(pos) != len(sc.frame_scores) or (len(pos) and (pos.min() < 0 or pos.max() >= len(idx))):
            self._error("scoring", f"the head returned frame numbers outside the {len(idx)} frames it was given")
            return
        self._failing = False
        first = int(chunk.indices[0])
        new = idx[pos] >= first
        series = {"frame_scores": np.asarray(sc.frame_scores, np.float32)[new], "frame_indices": idx[pos][new],
                  "frame_times": times[pos][new]}
        if self.spec.threshold is not None:
            events = events_from_scores(series["frame_scores"], self.spec.threshold, self.spec.name,
                                        times=series["frame_times"], frame_indices=series["frame_indices"],
                                        min_length=2, merge_gap=MERGE_GAP)
        else:
            events = [to_stream_event(e, idx, times) for e in result.events if e.start_frame is not None]
        changed = self._tracker.update(events, first, int(chunk.indices[-1]), float(chunk.times[0]))

        def write() -> None:
            for ev in changed:
                if ev.key not in self._announced:
                    self._thumbnail(ev, data, idx)
                self.store.upsert_event(self.run_id, ev.key, **ev.upsert_args())
            self.store.append_series(self.run_id, self.spec.name, series)

        self.store.atomically(write)  # the chunk's events and series: one transaction, retried whole
        for ev in changed:
            self._note_event(ev)
        self.stats.frames += int(new.sum())
        self.stats.lag_s = time.time() - chunk.arrived
        self.stats.lags.append(self.stats.lag_s)

    def _thumbnail(self, ev: LiveEvent, data: np.ndarray, idx: np.ndarray) -> None:
        """Write the event's peak frame (its box drawn) as a JPEG, recorded as the event's thumbnail."""
        import cv2

        from oddeye.core.imageio import write_image

        peak = ev.meta.get("peak_frame", ev.start_frame)
        k = int(np.searchsorted(idx, peak)) if peak is not None else 0
        frame = np.ascontiguousarray(data[min(k, len(data) - 1)])
        if ev.box is not None:
            x1, y1, x2, y2 = (int(round(v)) for v in ev.box)
            cv2.rectangle(frame, (x1, y1), (x2, y2), (255, 40, 40), 2)
        path = Path(self.spec.out) / "thumbnails" / f"{ev.key.replace(':', '_')}.jpg"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_image(path, frame)
            self.store.add_artefact(self.run_id, "thumbnail", path, sample_id=self.spec.name)
        except StoreUnavailable:
            raise  # the chunk's whole write is retried
        except (OSError, OddeyeError) as e:
            self._error("thumbnail", str(e))
            return
        ev.meta["thumbnail"] = str(path.resolve())

    def _write_event(self, ev: LiveEvent) -> None:
        """Upsert an event of the stream and say when one opens or closes."""
        self.store.upsert_event(self.run_id, ev.key, **ev.upsert_args())
        self._note_event(ev)

    def _note_event(self, ev: LiveEvent) -> None:
        """Count a stored event, and say when one opens or closes."""
        new = ev.key not in self._announced
        if new:
            self.stats.events += 1
        if ev.open:
            self._announced.add(ev.key)
        else:
            self._announced.discard(ev.key)
        self.stats.last_event = dt.datetime.now(dt.timezone.utc)
        if new or not ev.open:
            state = "open" if ev.open else "closed"
            self._log(f"event {ev.key} {state}: frames {ev.start_frame}-{ev.end_frame}, score {ev.score:.3g}"
                      + (f" - {ev.reason}" if ev.reason else ""))

    # -- folders ------------------------------------------------------------------------------------------------
    def _run_folder(self, stop: StopFlag) -> None:
        """Poll the folder; score each new item once (the ledger says which are done); go on after a bad one."""
        poller = FolderPoller(self.spec.source, self.spec.glob)
        done: set[str] = set()
        if self.resumed:
            self.store.log_live(self.run_id, "restart", "watcher restarted; items in the ledger are skipped")
        while not stop.is_set():
            for path in poller.ready():
                item = poller.item(path)
                if item in done or stop.is_set():
                    continue
                done.add(item)
                if not self.store.ledger_has(self.run_id, item):
                    self._score_item(path, item)
                self._health("running")
            self._health("running")
            stop.wait(self.spec.poll_s)

    def _score_item(self, path: Path, item: str) -> None:
        """Score one folder item and store it with its ledger row; an unreadable one is recorded as an error."""
        out = Path(self.spec.out) / "items" / item.replace("/", "__")
        t0 = time.time()
        try:
            result: Result = self.head.score([path], ctx=RunContext(out=out, skip_bad=True, progress=False))
        except OddeyeError as e:
            self.store.record_live_error(self.run_id, item, e.message)
            self.stats.errors += 1
            self._log(f"{item}: error: {e.message}")
            return
        except Exception as e:  # noqa: BLE001 - one bad file must not stop the watcher
            message = f"{type(e).__name__}: {str(e)[:300]}"
            self.store.record_live_error(self.run_id, item, message)
            self.stats.errors += 1
            self._log(f"{item}: error: {message}")
            return
        if not self.store.add_live_result(self.run_id, result, item=item):
            return
        bad = result.errors()
        self.stats.items += len(bad) < len(result.scores)
        self.stats.errors += len(bad)
        self.stats.events += len(result.events)
        if result.events:
            self.stats.last_event = dt.datetime.now(dt.timezone.utc)
        try:
            self.stats.lag_s = t0 - path.stat().st_mtime + (time.time() - t0)
        except OSError:
            pass
        if bad:
            self._log(f"{item}: error: {bad[0].meta['error']}")
        else:
            top = max((s.score for s in result.scores), default=float("nan"))
            self._log(f"{item}: score {top:.3g}, {len(result.events)} event(s)")

    # -- health -------------------------------------------------------------------------------------------------
    def _health(self, state: str, force: bool = False) -> None:
        """Write the source's health row about every HEALTH_EVERY_S seconds (or now when forced)."""
        now = time.monotonic()
        if not force and now - self._health_at < HEALTH_EVERY_S:
            return
        feed = self._feed
        t_prev, in_prev, scored_prev = self._counts_at
        frames_in = feed.frames_in if feed is not None else 0
        dt_s = max(now - t_prev, 1e-6) if t_prev else 0.0
        fps_in = (frames_in - in_prev) / dt_s if dt_s else 0.0
        fps_scored = (self.stats.frames - scored_prev) / dt_s if dt_s else 0.0
        self._counts_at, self._health_at = (now, frames_in, self.stats.frames), now
        self.store.set_health(self.spec.name, run_id=self.run_id, state=state, fps_in=fps_in, fps_scored=fps_scored,
                              lag_s=self.stats.lag_s, dropped_frames=feed.queue.dropped_frames if feed else 0,
                              reconnects=feed.reconnects if feed else 0, last_event=self.stats.last_event,
                              frames=self.stats.frames, items=self.stats.items, errors=self.stats.errors)
