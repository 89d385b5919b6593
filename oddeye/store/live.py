"""The live part of the review store (`oddeye watch`): open runs, series chunks, open/closed events, the ledger of
folder items, the fault log and one health row per source. `Store` (oddeye.store.api) inherits `LiveStore`.

    run_id = store.open_live_run("cam-1", head="video-rules", model="models/rules", source_kind="stream")
    pk = store.append_series(run_id, "cam-1", {"frame_scores": s, "frame_indices": i, "frame_times": t})
    store.upsert_event(run_id, "cam-1:120", sample_id="cam-1", score=0.9, start_frame=120, end_frame=150,
                       start=4.8, end=6.0, open=True)
    store.close_live_run(run_id)

Threading rule: one `Store` may be shared by any number of threads. Every method opens its own short session from
the engine's connection pool and commits before it returns; no session, row object or transaction is ever shared
between calls. Each PROCESS opens its own Store (never use one inherited through fork). Writers never lose rows:
on SQLite every write transaction takes the database write lock at BEGIN (WAL mode, 60 s busy timeout), so writes
are serialised; on PostgreSQL a check-then-write (the open run of a source, a sample, an event key, a ledger item, a
health row) holds a transaction-scoped advisory lock on that name, and unique indexes back it up.
"""

from __future__ import annotations

import datetime as dt
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import case, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from oddeye import __version__
from oddeye.core.errors import InputError, StoreUnavailable
from oddeye.core.types import Result, to_jsonable
from oddeye.store import engine as eng
from oddeye.store.convert import _artefact_rows, _finite, absolute_text, pack, unpack
from oddeye.store.models import (ArtefactRow, EventRow, FolderRow, HealthRow, LedgerRow, LiveLogRow, Run, SampleRow,
                                 SeriesChunkRow, utcnow)
from oddeye.store.rows import as_utc, check_chunk, insert_result

STALE_S = 10.0  # a source whose health was not updated for this long (and is not closed) is stale
THUMBNAIL_NAMES = ("thumbnail", "overlay", "heatmap")  # artefact names preferred as an event's thumbnail
_LOCK_SPACE = 0x0DDE7F  # first key of PostgreSQL advisory locks taken by live writes
HEALTH_FIELDS = ("run_id", "state", "fps_in", "fps_scored", "lag_s", "dropped_frames", "reconnects", "last_event",
                 "frames", "items", "errors")


def _meta(key: str) -> Any:
    """SQL expression: the text of runs.meta[key]."""
    return Run.meta[key].as_string()


class LiveStore:
    """Mixin of `Store`: the writes and reads of live sources (see the module docstring for the threading rule)."""

    url: URL
    name: str
    is_sqlite: bool

    @contextmanager
    def batch(self) -> Iterator[LiveStore]:
        """This thread's live writes in ONE transaction until the block ends (one commit, one round of lock waits;
        an error rolls all of them back); nested blocks join the outer one, other threads are unaffected."""
        local = self.__dict__.setdefault("_batches", threading.local())
        if getattr(local, "session", None) is not None:
            yield self
            return
        with self._tx() as s:
            local.session = s
            try:
                yield self
            finally:
                local.session = None

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        """One short write transaction (or this thread's open batch); a database that cannot be reached raises
        StoreUnavailable naming it."""
        open_batch = getattr(self.__dict__.get("_batches"), "session", None)
        if open_batch is not None:
            yield open_batch
            return
        try:
            with self._session(write=True) as s, s.begin():  # type: ignore[attr-defined]
                yield s
        except OperationalError as e:
            err = eng.connect_error(self.url, e)
            raise StoreUnavailable(err.message, err.hint) from None

    def _lock(self, s: Session, *name: object) -> None:
        """Serialise writers of `name` until the transaction ends (PostgreSQL; SQLite writers are serial already)."""
        if not self.is_sqlite:
            key = zlib.crc32("\x1f".join(map(str, name)).encode())
            s.execute(text("SELECT pg_advisory_xact_lock(:a, :b)"), {"a": _LOCK_SPACE, "b": key - (1 << 32) * (key >> 31)})

    def _live_run(self, s: Session, run_id: int) -> Run:
        run = s.get(Run, int(run_id))
        if run is None:
            raise InputError(f"no run {run_id} in store {self.name}", "list runs with `oddeye store info --db ...`")
        if run.kind != "live" or not run.meta.get("source"):
            raise InputError(f"run {run_id} of {self.name} is not a live run (kind {run.kind!r})")
        return run

    def _sample_pk(self, s: Session, run_id: int, sample_id: str) -> int:
        """The pk of sample `sample_id` of a live run, created (kind "video") the first time."""
        self._lock(s, "sample", run_id, sample_id)
        pk = s.scalar(select(SampleRow.id).where(SampleRow.run_id == run_id, SampleRow.sample_id == sample_id)
                      .order_by(SampleRow.id).limit(1))
        if pk is None:
            row = SampleRow(run_id=run_id, sample_id=sample_id, kind="video", reason="", meta={})
            s.add(row)
            s.flush()
            s.execute(update(Run).where(Run.id == run_id).values(n_samples=Run.n_samples + 1))
            pk = row.id
        return pk

    # ---- runs ----------------------------------------------------------------------------------------------
    def open_live_run(self, source: str, *, head: str, model: str, source_kind: str) -> int:
        """The open live run of `source` (a restarted watcher resumes it), else a new one; its id.

        An open run of the source with another head or model is closed first and a new run is opened.
        """
        model_text = absolute_text(model)
        with self._tx() as s:
            self._lock(s, "source", source)
            open_runs = s.scalars(select(Run).where(Run.kind == "live", _meta("source") == source,
                                                    _meta("live") == "open").order_by(Run.id.desc())).all()
            for run in open_runs:
                if (run.head, run.model) == (head, model_text):
                    return run.id
                self._close(s, run)
            run = Run(head=head, kind="live", model=model_text, data=None, parameters={}, metrics={},
                      meta={"live": "open", "source": source, "source_kind": source_kind}, n_samples=0, n_events=0,
                      oddeye_version=__version__)
            s.add(run)
            s.flush()
            return run.id

    def close_live_run(self, run_id: int) -> None:
        """Close a live run: its open events end at the last frame seen, meta live = "closed", health "closed"."""
        with self._tx() as s:
            self._close(s, self._live_run(s, run_id))

    def _close(self, s: Session, run: Run) -> None:
        opened = s.scalars(select(EventRow).where(EventRow.run_id == run.id, EventRow.is_open)).all()
        last: dict[int | None, tuple[int | None, float | None]] = {}
        for ev in opened:
            if ev.sample_pk not in last:
                last[ev.sample_pk] = self._last_frame(s, ev.sample_pk)
            frame, time = last[ev.sample_pk]
            if frame is not None and frame > (ev.end_frame if ev.end_frame is not None else -1):
                ev.end_frame, ev.end = frame, time if time is not None else ev.end
            ev.is_open = False
        run.meta = {**run.meta, "live": "closed", "closed": utcnow().isoformat()}
        s.execute(update(HealthRow).where(HealthRow.run_id == run.id).values(state="closed", updated=utcnow()))

    @staticmethod
    def _last_frame(s: Session, sample_pk: int | None) -> tuple[int | None, float | None]:
        """(frame index, time) of the last frame stored for a sample's series chunks; (None, None) if none."""
        if sample_pk is None:
            return None, None
        first = s.scalar(select(func.max(SeriesChunkRow.first_frame)).where(SeriesChunkRow.sample_pk == sample_pk))
        if first is None:
            return None, None
        rows = s.execute(select(SeriesChunkRow.name, SeriesChunkRow.data, SeriesChunkRow.dtype, SeriesChunkRow.length)
                         .where(SeriesChunkRow.sample_pk == sample_pk, SeriesChunkRow.first_frame == first,
                                SeriesChunkRow.name.in_(("frame_indices", "frame_times")))).all()
        last = {n: unpack(d, t, ln)[-1].item() for n, d, t, ln in rows}
        times = last.get("frame_times")
        return int(last["frame_indices"]), _finite(times)

    def live_runs(self, state: str | None = None) -> list[dict[str, Any]]:
        """Runs of kind "live", newest first, as dicts with `source` and `state` ("open" / "closed") added."""
        q = select(Run.__table__).where(Run.kind == "live")
        if state is not None:
            q = q.where(_meta("live") == state)
        with self.engine.connect() as c:  # type: ignore[attr-defined]
            rows = [dict(r) for r in c.execute(q.order_by(Run.id.desc())).mappings()]
        for r in rows:
            r.update(source=(r["meta"] or {}).get("source"), state=(r["meta"] or {}).get("live"))
        return rows

    # ---- streams -------------------------------------------------------------------------------------------
    def append_series(self, run_id: int, sample_id: str, chunk: dict[str, np.ndarray]) -> int:
        """Append a chunk of a stream's series (frame_scores, frame_indices[, frame_times]; (T,) each) to sample
        `sample_id` of the run (created on first call); a chunk whose first frame is stored already is a no-op.
        Returns the sample pk."""
        arrays = check_chunk(chunk)
        with self._tx() as s:
            self._live_run(s, run_id)
            pk = self._sample_pk(s, run_id, str(sample_id))
            idx = arrays["frame_indices"]
            if len(idx) == 0:
                return pk
            first, last = int(idx[0]), int(idx[-1])
            names = set(s.scalars(select(SeriesChunkRow.name).where(SeriesChunkRow.sample_pk == pk).distinct()))
            if names and names != set(arrays):
                raise InputError(f"series chunk of {sample_id!r} has keys {sorted(arrays)}; earlier chunks had "
                                 f"{sorted(names)}")
            if s.scalar(select(SeriesChunkRow.id).where(SeriesChunkRow.sample_pk == pk,
                                                        SeriesChunkRow.first_frame == first).limit(1)) is not None:
                return pk
            rows = []
            for name, a in arrays.items():
                blob, dtype = pack(a)
                rows.append(dict(sample_pk=pk, name=name, first_frame=first, dtype=dtype, length=len(a), data=blob))
            s.execute(insert(SeriesChunkRow), rows)
            scores = arrays["frame_scores"].astype(np.float64)
            top = _finite(np.max(scores[np.isfinite(scores)])) if np.isfinite(scores).any() else None
            sample = s.get(SampleRow, pk)
            sample.frame_start = first if sample.frame_start is None else min(sample.frame_start, first)
            sample.frame_end = last if sample.frame_end is None else max(sample.frame_end, last)
            sample.n_frames = (sample.n_frames or 0) + len(idx)
            if top is not None and (sample.score is None or top > sample.score):
                sample.score = top
            return pk

    def upsert_event(self, run_id: int, key: str, *, sample_id: str, score: float, start_frame: int, end_frame: int,
                     start: float | None, end: float | None, reason: str = "", open: bool,  # noqa: A002
                     box: tuple[float, float, float, float] | None = None, meta: dict | None = None) -> int:
        """Insert event `key` of a run the first time; later calls extend it (end, score = max, open flag). A closed
        event is final: it is never reopened or changed. Returns the event id."""
        with self._tx() as s:
            self._live_run(s, run_id)
            self._lock(s, "event", run_id, key)
            row = s.scalars(select(EventRow).where(EventRow.run_id == run_id, EventRow.key == key)).first()
            coords = dict(zip(("x1", "y1", "x2", "y2"), [float(b) for b in box])) if box is not None else {}
            if row is None:
                row = EventRow(run_id=run_id, key=key, sample_pk=self._sample_pk(s, run_id, str(sample_id)),
                               sample_id=str(sample_id), score=_finite(score), start_frame=int(start_frame),
                               end_frame=int(end_frame), start=_finite(start), end=_finite(end), reason=reason,
                               is_open=bool(open), meta=to_jsonable(meta or {}), **coords)
                s.add(row)
                s.flush()
                s.execute(update(Run).where(Run.id == run_id).values(n_events=Run.n_events + 1))
                return row.id
            if not row.is_open:
                return row.id
            new = _finite(score)
            if new is not None and (row.score is None or new > row.score):
                row.score = new
            if row.end_frame is None or int(end_frame) >= row.end_frame:
                row.end_frame, row.end = int(end_frame), _finite(end)
            if reason:
                row.reason = reason
            for k, v in coords.items():
                setattr(row, k, v)
            if meta:
                row.meta = {**(row.meta or {}), **to_jsonable(meta)}
            row.is_open = bool(open)
            return row.id

    # ---- folders -------------------------------------------------------------------------------------------
    def add_live_result(self, run_id: int, result: Result, *, item: str) -> list[int]:
        """Append a scored folder item (samples, series, maps, events, artefacts) to a live run and, in the same
        transaction, its ledger row ("error" when every score is an error). An item in the ledger already is a
        no-op returning []. Returns the new sample pks."""
        if not isinstance(result, Result):
            raise InputError(f"add_live_result needs an oddeye Result, got {type(result).__name__}")
        with self._tx() as s:
            run = self._live_run(s, run_id)
            source = run.meta["source"]
            self._lock(s, "ledger", source, item)
            if self._in_ledger(s, source, item):
                return []
            pks, n_events = insert_result(s, result, run.id, str(item))
            errors = result.errors()
            status = "error" if result.scores and len(errors) == len(result.scores) else "scored"
            message = "; ".join(str(e.meta["error"]) for e in errors)
            s.add(LedgerRow(run_id=run.id, source=source, item=str(item), status=status, message=message))
            if errors:
                s.add(LiveLogRow(run_id=run.id, what="error", detail=f"{item}: {message}"))
            threshold = _finite(result.threshold)
            s.execute(update(Run).where(Run.id == run.id).values(
                n_samples=Run.n_samples + len(pks), n_events=Run.n_events + n_events,
                threshold=case((Run.threshold.is_(None), threshold), else_=Run.threshold)))
            return pks

    @staticmethod
    def _in_ledger(s: Session, source: str, item: str) -> bool:
        return s.scalar(select(LedgerRow.id).where(LedgerRow.source == source, LedgerRow.item == str(item))) is not None

    def ledger_has(self, run_id: int, item: str) -> bool:
        """True if the run's source has dealt with `item` already (scored or error), in this run or an earlier one."""
        with self._session() as s:  # type: ignore[attr-defined]
            return self._in_ledger(s, self._live_run(s, run_id).meta["source"], item)

    def ledger(self, run_id: int) -> list[dict[str, Any]]:
        """The ledger rows written by a run, oldest first: item, status, message, at."""
        q = select(LedgerRow.item, LedgerRow.status, LedgerRow.message, LedgerRow.at).where(LedgerRow.run_id == run_id)
        with self.engine.connect() as c:  # type: ignore[attr-defined]
            rows = [dict(r) for r in c.execute(q.order_by(LedgerRow.id)).mappings()]
        return [{**r, "at": as_utc(r["at"])} for r in rows]

    def record_live_error(self, run_id: int, item: str, message: str) -> None:
        """Record that folder item `item` could not be scored: a ledger row "error" (unless it has one) and a log row."""
        with self._tx() as s:
            run = self._live_run(s, run_id)
            source = run.meta["source"]
            self._lock(s, "ledger", source, item)
            if not self._in_ledger(s, source, item):
                s.add(LedgerRow(run_id=run.id, source=source, item=str(item), status="error", message=str(message)))
            s.add(LiveLogRow(run_id=run.id, what="error", detail=f"{item}: {message}"))

    def add_artefact(self, run_id: int, name: str, path: str | Path, *, sample_id: str | None = None) -> int | None:
        """Record a file a live source wrote (e.g. an event thumbnail) so the dashboard may show it; its id, or None
        (with a warning) if `path` is not an existing file."""
        with self._tx() as s:
            self._live_run(s, run_id)
            pk = self._sample_pk(s, run_id, str(sample_id)) if sample_id is not None else None
            rows = _artefact_rows(run_id, pk, [(name, path)])
            if not rows:
                return None
            art = ArtefactRow(**rows[0])
            s.add(art)
            s.flush()
            folder = str(Path(art.path) if art.kind == "folder" else Path(art.path).parent)
            dialect = postgresql if not self.is_sqlite else sqlite
            s.execute(dialect.insert(FolderRow).on_conflict_do_nothing(index_elements=["run_id", "path"]),
                      [dict(run_id=run_id, path=folder)])
            return art.id

    # ---- log and health ------------------------------------------------------------------------------------
    def log_live(self, run_id: int, what: str, detail: str = "") -> None:
        """Log something that happened to a live run ("reconnect", "restart", "dropped", ...)."""
        with self._tx() as s:
            s.add(LiveLogRow(run_id=int(run_id), what=str(what), detail=str(detail)))

    def live_log(self, run_id: int, limit: int = 100) -> list[dict[str, Any]]:
        """The log of a live run, newest first: id, time, what, detail."""
        q = (select(LiveLogRow.id, LiveLogRow.at, LiveLogRow.what, LiveLogRow.detail)
             .where(LiveLogRow.run_id == run_id).order_by(LiveLogRow.id.desc()).limit(limit))
        with self.engine.connect() as c:  # type: ignore[attr-defined]
            return [dict(id=i, time=as_utc(at), what=what, detail=detail) for i, at, what, detail in c.execute(q)]

    def set_health(self, source: str, *, run_id: int, state: str, fps_in: float, fps_scored: float, lag_s: float,
                   dropped_frames: int, reconnects: int, last_event: dt.datetime | None, frames: int, items: int,
                   errors: int) -> None:
        """Write the health of `source` (one row per source, replaced; `updated` = now). Naive times are UTC."""
        values = dict(run_id=int(run_id), state=str(state), fps_in=float(fps_in), fps_scored=float(fps_scored),
                      lag_s=float(lag_s), dropped_frames=int(dropped_frames), reconnects=int(reconnects),
                      last_event=as_utc(last_event), frames=int(frames), items=int(items), errors=int(errors),
                      updated=utcnow())
        with self._tx() as s:
            self._lock(s, "health", source)
            done = s.execute(update(HealthRow).where(HealthRow.source == source).values(**values)).rowcount
            if not done:
                s.add(HealthRow(source=source, **values))

    def health(self) -> list[dict[str, Any]]:
        """One dict per source (by name): the set_health fields, `updated`, and `stale` (no update for more than
        STALE_S seconds while the state is not "closed")."""
        cols = [HealthRow.source, *[getattr(HealthRow, f) for f in HEALTH_FIELDS], HealthRow.updated]
        with self.engine.connect() as c:  # type: ignore[attr-defined]
            rows = [dict(r) for r in c.execute(select(*cols).order_by(HealthRow.source)).mappings()]
        now = utcnow()
        for r in rows:
            r.update(last_event=as_utc(r["last_event"]), updated=as_utc(r["updated"]))
            r["stale"] = r["state"] != "closed" and (now - r["updated"]).total_seconds() > STALE_S
        return rows

    def recent_events(self, limit: int = 20, since_id: int | None = None) -> list[dict[str, Any]]:
        """The newest events of live runs (id > since_id if given), newest first, as event dicts plus `source`,
        `source_kind`, `head`, `path` (the sample's input file) and `thumbnail` (an image file, or None)."""
        q = (select(*EventRow.__table__.columns, Run.meta.label("run_meta"), Run.head.label("head"),
                    SampleRow.path.label("path"))
             .join(Run, Run.id == EventRow.run_id).outerjoin(SampleRow, SampleRow.id == EventRow.sample_pk)
             .where(Run.kind == "live"))
        if since_id is not None:
            q = q.where(EventRow.id > since_id)
        with self.engine.connect() as c:  # type: ignore[attr-defined]
            rows = [dict(r) for r in c.execute(q.order_by(EventRow.id.desc()).limit(limit)).mappings()]
            pks = {r["sample_pk"] for r in rows if r["sample_pk"] is not None}
            images = c.execute(select(ArtefactRow.sample_pk, ArtefactRow.name, ArtefactRow.path)
                               .where(ArtefactRow.sample_pk.in_(pks), ArtefactRow.kind == "image")
                               .order_by(ArtefactRow.id)).all() if pks else []
        by_sample: dict[int, dict[str, str]] = {}
        for pk, name, path in images:
            by_sample.setdefault(pk, {}).setdefault(name, path)
        for r in rows:
            run_meta = r.pop("run_meta") or {}
            arts = by_sample.get(r["sample_pk"], {})
            preferred = [arts[n] for n in THUMBNAIL_NAMES if n in arts] + list(arts.values())
            thumb = (r["meta"] or {}).get("thumbnail")
            r.update(source=run_meta.get("source"), source_kind=run_meta.get("source_kind"),
                     thumbnail=thumb if isinstance(thumb, str) and thumb else (preferred[0] if preferred else None))
        return rows
