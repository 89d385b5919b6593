"""Rows in an open session, shared by the store API and its live part: a Result inserted, a stream's chunks read."""

from __future__ import annotations

import datetime as dt

import numpy as np
from sqlalchemy import insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from oddeye.core.errors import InputError
from oddeye.core.types import Result
from oddeye.store.convert import SERIES, attached_rows, sample_rows, unpack
from oddeye.store.models import ArtefactRow, EventRow, FolderRow, MapRow, SampleRow, SeriesChunkRow, SeriesRow


def insert_result(s: Session, result: Result, run_id: int, data: str | None) -> tuple[list[int], int]:
    """Insert a Result's samples, series, maps, events, artefacts and readable folders into run `run_id`.

    Returns (sample pks in the order of result.scores, number of events). Folders already recorded are kept once.
    """
    ins = insert(SampleRow).returning(SampleRow.id, sort_by_parameter_order=True)
    rows = sample_rows(result, run_id, data)
    pks = list(s.scalars(ins, rows)) if rows else []
    series, maps, events, arts, folders = attached_rows(result, run_id, pks, [r["path"] for r in rows])
    for model_cls, batch in ((SeriesRow, series), (MapRow, maps), (EventRow, events), (ArtefactRow, arts)):
        if batch:
            s.execute(insert(model_cls), batch)
    if folders:
        dialect = postgresql if s.get_bind().dialect.name == "postgresql" else sqlite
        s.execute(dialect.insert(FolderRow).on_conflict_do_nothing(index_elements=["run_id", "path"]), folders)
    return pks, len(events)


def chunked_series(s: Session, sample_pk: int) -> dict[str, np.ndarray]:
    """The series a live stream appended to a sample in chunks: name -> (T,) array, chunks in frame order."""
    rows = s.execute(select(SeriesChunkRow.name, SeriesChunkRow.data, SeriesChunkRow.dtype, SeriesChunkRow.length)
                     .where(SeriesChunkRow.sample_pk == sample_pk)
                     .order_by(SeriesChunkRow.name, SeriesChunkRow.first_frame)).all()
    parts: dict[str, list[np.ndarray]] = {}
    for name, data, dtype, length in rows:
        parts.setdefault(name, []).append(unpack(data, dtype, length))
    return {name: np.concatenate(p) for name, p in parts.items()}


def as_utc(t: dt.datetime | None) -> dt.datetime | None:
    """`t` as an aware UTC time (SQLite gives naive times back; naive input is taken as UTC)."""
    if t is None:
        return None
    return t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t.astimezone(dt.timezone.utc)


def check_chunk(chunk: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A series chunk checked: known names, frame_scores and frame_indices present, 1-D, equal lengths."""
    unknown = set(chunk) - set(SERIES)
    if unknown:
        raise InputError(f"series chunk has unknown keys {sorted(unknown)}; known: {list(SERIES)}")
    if not {"frame_scores", "frame_indices"} <= set(chunk):
        raise InputError("a series chunk needs frame_scores and frame_indices (the stream's frame numbers)")
    arrays = {k: np.asarray(v) for k, v in chunk.items()}
    lengths = {k: a.shape for k, a in arrays.items()}
    if any(a.ndim != 1 for a in arrays.values()) or len({a.shape for a in arrays.values()}) != 1:
        raise InputError(f"series chunk arrays must be 1-D of one length, got shapes {lengths}")
    return arrays
