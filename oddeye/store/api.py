"""The review store: what heads found (runs, samples, series, events, artefacts) and what people decided.

    from oddeye.store.api import save_result, open_store
    run_id = save_result("results/store.db", result, kind="score", model="model/", data="clips/")
    store = open_store("results/store.db")       # or "postgresql://user:pw@host/db"
    store.add_label(run_id, "false_alarm", event_id=3, by="ana")
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from oddeye import __version__
from oddeye.core.errors import InputError, StoreError
from oddeye.core.types import Result, to_jsonable
from oddeye.store import engine as eng
from oddeye.store.convert import _finite, absolute_text, unpack
from oddeye.store.engine import is_url
from oddeye.store.live import LiveStore
from oddeye.store.rows import chunked_series, insert_result
from oddeye.store.models import (LABELS, ArtefactRow, EventRow, FolderRow, LabelRow, MapRow, Run, SampleRow, SeriesRow,
                              ThresholdRow)

__all__ = ["LABELS", "PathRefusedError", "Store", "is_url", "open_store", "save_result"]


class PathRefusedError(InputError):
    """A file the dashboard was asked to read lies outside the store's artefact folders."""


class Store(LiveStore):
    """An open review store (SQLite or PostgreSQL) with write and query methods (the live ones: LiveStore)."""

    def __init__(self, db: str | Path) -> None:
        self.db = str(db)
        self.url = eng.store_url(db)
        self.name = eng.describe(self.url)
        self.engine, self._write = eng.make_engines(self.url)
        self.revision = eng.migrate(self._write, self.url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"

    def close(self) -> None:
        """Release the connections."""
        self.engine.dispose()
        self._write.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _session(self, write: bool = False) -> Session:
        return Session(self._write if write else self.engine, expire_on_commit=False)

    # ---- writing -------------------------------------------------------------------------------------------
    def save_result(self, result: Result, *, kind: str, model: str | None = None, data: str | None = None,
                    params: dict | None = None) -> int:
        """Write `result` as a new run (samples, series, maps, events, artefacts) in one transaction; its id."""
        try:
            with self._session(write=True) as s, s.begin():
                return self._save(s, result, kind, model, data, params)
        except OperationalError as e:
            raise eng.connect_error(self.url, e) from None

    def _save(self, s: Session, result: Result, kind: str, model: str | None, data: str | None,
              params: dict | None) -> int:
        model, data = absolute_text(model), absolute_text(data)
        run = Run(head=result.head, kind=kind, model=model, data=data, parameters=to_jsonable(params or {}),
                  metrics=to_jsonable(result.metrics), meta=to_jsonable(result.meta),
                  threshold=_finite(result.threshold), n_samples=len(result.scores), n_events=len(result.events),
                  oddeye_version=__version__)
        s.add(run)
        s.flush()
        insert_result(s, result, run.id, data)
        return run.id

    def add_label(self, run_id: int, label: str, *, event_id: int | None = None, sample_pk: int | None = None,
                  by: str = "", note: str = "") -> int:
        """Record a reviewer's decision on an event or a sample; returns the label id."""
        if label not in LABELS:
            raise InputError(f"label must be one of {LABELS}, got {label!r}")
        if (event_id is None) == (sample_pk is None):
            raise InputError("a label needs exactly one of event_id or sample_pk")
        with self._session(write=True) as s, s.begin():
            target = s.get(EventRow, event_id) if event_id is not None else s.get(SampleRow, sample_pk)
            if target is None or target.run_id != run_id:
                what = f"event {event_id}" if event_id is not None else f"sample {sample_pk}"
                raise InputError(f"{what} is not in run {run_id} of {self.name}")
            row = LabelRow(run_id=run_id, event_id=event_id, sample_pk=sample_pk, label=label, by=by or _user(), note=note)
            s.add(row)
            s.flush()
            return row.id

    def set_threshold(self, run_id: int, value: float, *, source: str = "manual",
                      max_false_alarm_rate: float | None = None, by: str = "", note: str = "") -> int:
        """Apply a threshold to a run (a new row; the newest one is in force); returns its id."""
        self.run(run_id)
        with self._session(write=True) as s, s.begin():
            row = ThresholdRow(run_id=run_id, value=float(value), source=source, by=by or _user(), note=note,
                               max_false_alarm_rate=max_false_alarm_rate)
            s.add(row)
            s.flush()
            return row.id

    def delete_run(self, run_id: int) -> None:
        """Remove a run and everything attached to it."""
        with self._session(write=True) as s, s.begin():
            for model_cls in (LabelRow, ThresholdRow, FolderRow, ArtefactRow, EventRow):
                s.execute(delete(model_cls).where(model_cls.run_id == run_id))
            pks = select(SampleRow.id).where(SampleRow.run_id == run_id)
            for model_cls in (SeriesRow, MapRow):
                s.execute(delete(model_cls).where(model_cls.sample_pk.in_(pks)))
            s.execute(delete(SampleRow).where(SampleRow.run_id == run_id))
            s.execute(delete(Run).where(Run.id == run_id))

    # ---- reading -------------------------------------------------------------------------------------------
    def runs(self) -> list[dict[str, Any]]:
        """Every run, newest first, as dicts (id, head, kind, model, data, metrics, created, ...)."""
        with self._session() as s:
            return [_row(r) for r in s.scalars(select(Run).order_by(Run.id.desc()))]

    def run(self, run_id: int) -> dict[str, Any]:
        """One run as a dict; InputError naming it if absent."""
        with self._session() as s:
            r = s.get(Run, int(run_id))
        if r is None:
            raise InputError(f"no run {run_id} in store {self.name}", "list runs with `oddeye store info --db ...`")
        return _row(r)

    def samples(self, run_id: int, *, kind: str | tuple[str, ...] | None = None, order: str = "score",
                limit: int | None = None) -> list[dict[str, Any]]:
        """Samples of a run as dicts, most anomalous first (order="score") or in insertion order ("id")."""
        q = select(SampleRow).where(SampleRow.run_id == run_id)
        if kind:
            q = q.where(SampleRow.kind.in_([kind] if isinstance(kind, str) else list(kind)))
        q = q.order_by(SampleRow.score.desc().nulls_last() if order == "score" else SampleRow.id).limit(limit)
        with self._session() as s:
            return [_row(r) for r in s.scalars(q)]

    def series(self, sample_pk: int) -> dict[str, np.ndarray]:
        """Per-frame series of a sample: name -> (T,) array (a live stream's chunks concatenated in frame order)."""
        with self._session() as s:
            rows = s.execute(select(SeriesRow.name, SeriesRow.data, SeriesRow.dtype, SeriesRow.length)
                             .where(SeriesRow.sample_pk == sample_pk)).all()
            chunks = chunked_series(s, sample_pk)
        return {**{n: unpack(d, t, ln) for n, d, t, ln in rows}, **chunks}

    def maps(self, sample_pk: int) -> dict[str, tuple[str, np.ndarray]]:
        """Dense maps of a sample: name -> (kind, array)."""
        with self._session() as s:
            rows = s.execute(select(MapRow.name, MapRow.kind, MapRow.data, MapRow.dtype, MapRow.shape)
                             .where(MapRow.sample_pk == sample_pk)).all()
        return {n: (k, unpack(d, t, shape)) for n, k, d, t, shape in rows}

    def map_names(self, run_id: int) -> dict[int, list[str]]:
        """Names of the dense maps each sample of a run has: sample pk -> names (one query, no arrays read)."""
        q = (select(MapRow.sample_pk, MapRow.name).join(SampleRow, SampleRow.id == MapRow.sample_pk)
             .where(SampleRow.run_id == run_id).order_by(MapRow.id))
        out: dict[int, list[str]] = {}
        with self.engine.connect() as c:
            for pk, name in c.execute(q):
                out.setdefault(pk, []).append(name)
        return out

    def events(self, run_id: int, sample_pk: int | None = None, with_meta: bool = True) -> list[dict[str, Any]]:
        """Events of a run (or of one sample), in time / insertion order, as dicts (meta left out if not with_meta)."""
        cols = [c for c in EventRow.__table__.columns if with_meta or c.key != "meta"]
        q = select(*cols).where(EventRow.run_id == run_id)
        if sample_pk is not None:
            q = q.where(EventRow.sample_pk == sample_pk)
        with self.engine.connect() as c:  # Core rows, not ORM objects: 10k events in ~50 ms
            return [dict(r) for r in c.execute(q.order_by(EventRow.start_frame, EventRow.id)).mappings()]

    def event(self, event_id: int) -> dict[str, Any]:
        """One event as a dict; InputError naming it if absent."""
        with self._session() as s:
            row = s.get(EventRow, int(event_id))
        if row is None:
            raise InputError(f"no event {event_id} in store {self.name}")
        return _row(row)

    def event_arrays(self, run_id: int, sample_pk: int) -> dict[str, np.ndarray]:
        """Events of one sample as columns (id, start_frame, end_frame, start, end, score): fast for 10k events."""
        cols = (EventRow.id, EventRow.start_frame, EventRow.end_frame, EventRow.start, EventRow.end, EventRow.score)
        with self.engine.connect() as c:
            rows = c.execute(select(*cols).where(EventRow.run_id == run_id, EventRow.sample_pk == sample_pk)
                             .order_by(EventRow.start_frame)).tuples().all()
        columns = list(zip(*rows)) if rows else [()] * len(cols)
        return {c.key: np.array(v, dtype=np.float64) for c, v in zip(cols, columns)}

    def artefacts(self, run_id: int, sample_pk: int | None = None) -> list[dict[str, Any]]:
        """Artefact files of a run (or one sample) as dicts (name, kind, path)."""
        q = select(ArtefactRow).where(ArtefactRow.run_id == run_id)
        if sample_pk is not None:
            q = q.where(ArtefactRow.sample_pk == sample_pk)
        with self._session() as s:
            return [_row(r) for r in s.scalars(q.order_by(ArtefactRow.id))]

    def labels(self, run_id: int | None = None) -> list[dict[str, Any]]:
        """Labels (newest first) with the run, event and sample they are about."""
        q = (select(LabelRow, EventRow.sample_id, EventRow.score, EventRow.start_frame, EventRow.end_frame,
                    EventRow.reason, SampleRow.sample_id, SampleRow.score, Run.head)
             .join(Run, Run.id == LabelRow.run_id)
             .outerjoin(EventRow, EventRow.id == LabelRow.event_id)
             .outerjoin(SampleRow, SampleRow.id == LabelRow.sample_pk).order_by(LabelRow.id.desc()))
        if run_id is not None:
            q = q.where(LabelRow.run_id == run_id)
        out = []
        with self._session() as s:
            for lab, ev_sid, ev_score, f0, f1, reason, s_sid, s_score, head in s.execute(q):
                d = _row(lab)
                d.update(head=head, sample_id=ev_sid or s_sid, score=ev_score if lab.event_id else s_score,
                         start_frame=f0, end_frame=f1, reason=reason or "")
                out.append(d)
        return out

    def threshold(self, run_id: int) -> float | None:
        """The threshold in force for a run: the newest applied one, else the head's own, else None."""
        with self._session() as s:
            v = s.scalar(select(ThresholdRow.value).where(ThresholdRow.run_id == run_id)
                         .order_by(ThresholdRow.id.desc()).limit(1))
            return v if v is not None else s.scalar(select(Run.threshold).where(Run.id == run_id))

    def thresholds(self, run_id: int) -> list[dict[str, Any]]:
        """Every threshold applied to a run, newest first."""
        with self._session() as s:
            return [_row(r) for r in s.scalars(select(ThresholdRow).where(ThresholdRow.run_id == run_id)
                                                .order_by(ThresholdRow.id.desc()))]

    def counts(self) -> dict[str, int]:
        """Row counts of each table (runs, samples, events, labels, ...)."""
        with self._session() as s:
            return {m.__tablename__: int(s.scalar(select(func.count()).select_from(m)) or 0)
                    for m in (Run, SampleRow, SeriesRow, MapRow, EventRow, ArtefactRow, LabelRow, ThresholdRow)}

    def folders(self, run_id: int | None = None) -> list[Path]:
        """Folders the dashboard may read from: those of recorded artefacts and inputs (of one run, or all), plus
        ODDEYE_UI_ROOTS (os.pathsep-separated). The store's own folder is not among them unless a run wrote there."""
        q = select(FolderRow.path).distinct()
        if run_id is not None:
            q = q.where(FolderRow.run_id == run_id)
        with self._session() as s:
            roots = [Path(p) for p in s.scalars(q)]
        roots += [Path(p).expanduser().resolve() for p in os.environ.get("ODDEYE_UI_ROOTS", "").split(os.pathsep) if p]
        return roots

    def safe_path(self, path: str | Path, run_id: int | None = None) -> Path:
        """`path` resolved (links followed) if it lies inside an artefact folder, else PathRefusedError."""
        p = Path(path).expanduser().resolve()
        if not any(p == r or p.is_relative_to(r) for r in self.folders(run_id)):
            raise PathRefusedError(f"refusing to read {path}: it is outside the store's artefact folders",
                                   "only files a run recorded (and folders in ODDEYE_UI_ROOTS) are shown")
        return p

    def update_run_metrics(self, run_id: int, metrics: dict[str, Any]) -> None:
        """Merge `metrics` into a run's metrics (e.g. after an eval finishes)."""
        cur = self.run(run_id)["metrics"] or {}
        with self._session(write=True) as s, s.begin():
            s.execute(update(Run).where(Run.id == run_id).values(metrics={**cur, **to_jsonable(metrics)}))


def _row(obj: Any) -> dict[str, Any]:
    return {c.key: getattr(obj, c.key) for c in obj.__table__.columns}


def _user() -> str:
    return os.environ.get("ODDEYE_UI_USER") or os.environ.get("USER") or "reviewer"


def open_store(db: str | Path) -> Store:
    """Open (creating or upgrading) the store at a SQLite path or a postgresql:// URL; StoreError if it cannot."""
    if db is None or str(db).strip() == "":
        raise StoreError("no store given", "pass --db PATH (a SQLite file) or --db postgresql://...")
    return Store(db)


def save_result(db: str | Path, result: Result, *, kind: str, model: str | None = None, data: str | None = None,
                params: dict | None = None) -> int:
    """Write a head's Result into the store at `db` (path or URL) as a new run; returns the run id."""
    if not isinstance(result, Result):
        raise InputError(f"save_result needs an oddeye Result, got {type(result).__name__}")
    with open_store(db) as store:
        return store.save_result(result, kind=kind, model=model, data=data, params=params)
