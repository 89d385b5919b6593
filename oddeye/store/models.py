"""SQLAlchemy 2.0 models of the review store: runs, samples, series, maps, events, artefacts, labels, thresholds.

Per-frame score series are kept as one compressed blob per (sample, series name) in `series`: a 1M-frame
video is a ~4 MB row that loads in milliseconds, instead of a million rows. A live stream appends its series in
chunks (`series_chunks`, one row per (sample, name, first frame)). Dense maps (pixel / point) are compressed blobs
in `maps`. Live sources (`oddeye watch`) also keep a ledger of scored folder items, a log of faults and one health
row per source. The Alembic migrations in oddeye/store/migrations create exactly these tables.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint,
                        false)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

LABELS = ("true_anomaly", "false_alarm", "unsure")


def utcnow() -> dt.datetime:
    """The current time in UTC (timezone-aware)."""
    return dt.datetime.now(dt.timezone.utc)


class Base(DeclarativeBase):
    """Declarative base of every store table."""


class Run(Base):
    """One `oddeye score` / `oddeye eval` invocation: which head, model, data, parameters and metrics."""

    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    head: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))  # score | eval | demo | bench | live
    model: Mapped[str | None] = mapped_column(Text)
    data: Mapped[str | None] = mapped_column(Text)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    threshold: Mapped[float | None] = mapped_column(Float)  # the threshold the head used
    n_samples: Mapped[int] = mapped_column(Integer, default=0)
    n_events: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    oddeye_version: Mapped[str] = mapped_column(String(32))


class SampleRow(Base):
    """One scored input of a run: an image, a video, a point cloud or a patrol pair."""

    __tablename__ = "samples"
    __table_args__ = (Index("ix_samples_run_sample", "run_id", "sample_id"), Index("ix_samples_run_score", "run_id", "score"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    sample_id: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(32))
    path: Mapped[str | None] = mapped_column(Text)
    label: Mapped[int | None] = mapped_column(Integer)
    score: Mapped[float | None] = mapped_column(Float)
    frame_start: Mapped[int | None] = mapped_column(Integer)
    frame_end: Mapped[int | None] = mapped_column(Integer)
    n_frames: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text, default="")
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class SeriesRow(Base):
    """A per-frame series of one sample (frame_scores, frame_times, frame_indices) as a compressed blob."""

    __tablename__ = "series"
    __table_args__ = (UniqueConstraint("sample_pk", "name", name="uq_series_sample_name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sample_pk: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    dtype: Mapped[str] = mapped_column(String(96))
    length: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class MapRow(Base):
    """A dense anomaly map of one sample (pixel (H, W) or point (N,)), compressed."""

    __tablename__ = "maps"
    __table_args__ = (Index("ix_maps_sample", "sample_pk"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sample_pk: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    shape: Mapped[list[int]] = mapped_column(JSON)
    dtype: Mapped[str] = mapped_column(String(96))
    data: Mapped[bytes] = mapped_column(LargeBinary)


class EventRow(Base):
    """Something to review: a time range (video, patrol) or a region (image, cloud), with its reason.

    A live event has a `key` unique within its run (a resend updates it) and is `is_open` while it lasts.
    """

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_run_sample", "run_id", "sample_pk"),
                      Index("uq_events_run_key", "run_id", "key", unique=True))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    sample_pk: Mapped[int | None] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"))
    sample_id: Mapped[str] = mapped_column(Text)
    score: Mapped[float | None] = mapped_column(Float)
    start: Mapped[float | None] = mapped_column(Float)
    end: Mapped[float | None] = mapped_column(Float)
    start_frame: Mapped[int | None] = mapped_column(Integer)
    end_frame: Mapped[int | None] = mapped_column(Integer)
    x1: Mapped[float | None] = mapped_column(Float)
    y1: Mapped[float | None] = mapped_column(Float)
    x2: Mapped[float | None] = mapped_column(Float)
    y2: Mapped[float | None] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(Text, default="")
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    key: Mapped[str | None] = mapped_column(Text)
    is_open: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class ArtefactRow(Base):
    """A file a run wrote (heatmap, overlay, render, plot), by path."""

    __tablename__ = "artefacts"
    __table_args__ = (Index("ix_artefacts_run", "run_id"), Index("ix_artefacts_sample", "sample_pk"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    sample_pk: Mapped[int | None] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))
    path: Mapped[str] = mapped_column(Text)


class FolderRow(Base):
    """A folder the dashboard may read files from (artefact folders of a run)."""

    __tablename__ = "folders"
    __table_args__ = (UniqueConstraint("run_id", "path", name="uq_folders_run_path"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(Text)


class LabelRow(Base):
    """A reviewer's decision on an event or a sample: true_anomaly, false_alarm or unsure."""

    __tablename__ = "labels"
    __table_args__ = (Index("ix_labels_run", "run_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    event_id: Mapped[int | None] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    sample_pk: Mapped[int | None] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"))
    label: Mapped[str] = mapped_column(String(16))
    by: Mapped[str] = mapped_column(String(128), default="")
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    note: Mapped[str] = mapped_column(Text, default="")


class ThresholdRow(Base):
    """A threshold applied to a run (suggested from labels or set by hand)."""

    __tablename__ = "thresholds"
    __table_args__ = (Index("ix_thresholds_run", "run_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    value: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(32), default="manual")
    max_false_alarm_rate: Mapped[float | None] = mapped_column(Float)
    by: Mapped[str] = mapped_column(String(128), default="")
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    note: Mapped[str] = mapped_column(Text, default="")


class SeriesChunkRow(Base):
    """A chunk of a live stream's per-frame series, compressed; a sample's series is its chunks by first frame."""

    __tablename__ = "series_chunks"
    __table_args__ = (UniqueConstraint("sample_pk", "name", "first_frame", name="uq_series_chunks_sample_name_first"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sample_pk: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    first_frame: Mapped[int] = mapped_column(Integer)
    dtype: Mapped[str] = mapped_column(String(96))
    length: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class LedgerRow(Base):
    """A folder item a live source has dealt with (scored or error): never scored twice, even after a kill."""

    __tablename__ = "live_ledger"
    __table_args__ = (UniqueConstraint("source", "item", name="uq_live_ledger_source_item"),
                      Index("ix_live_ledger_run", "run_id"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(Text)
    item: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # scored | error
    message: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LiveLogRow(Base):
    """Something that happened to a live run: reconnect, restart, dropped frames, an error."""

    __tablename__ = "live_log"
    __table_args__ = (Index("ix_live_log_run", "run_id", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    what: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text, default="")


class HealthRow(Base):
    """The state of one live source (one row per source name), rewritten about every second by its watcher."""

    __tablename__ = "live_health"
    __table_args__ = (UniqueConstraint("source", name="uq_live_health_source"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    state: Mapped[str] = mapped_column(String(32))
    fps_in: Mapped[float] = mapped_column(Float)
    fps_scored: Mapped[float] = mapped_column(Float)
    lag_s: Mapped[float] = mapped_column(Float)
    dropped_frames: Mapped[int] = mapped_column(Integer)
    reconnects: Mapped[int] = mapped_column(Integer)
    last_event: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    frames: Mapped[int] = mapped_column(Integer)
    items: Mapped[int] = mapped_column(Integer)
    errors: Mapped[int] = mapped_column(Integer)
    updated: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
