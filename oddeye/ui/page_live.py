"""Live page: the watched sources (health), the newest events of live runs with thumbnails and label buttons, and
each source's log. It redraws itself every REFRESH_S seconds (a Streamlit fragment), without reloading the page."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import streamlit as st

from oddeye.core.errors import OddeyeError
from oddeye.store.api import Store
from oddeye.ui.common import draw_boxes, get_store, is_video, label_buttons, read_picture, safe_file, show_image
from oddeye.ui.timeline import downsample_minmax

REFRESH_S = 2.0  # a new event is on the page at most this long (plus one redraw) after it is in the store
EVENTS_SHOWN = 12
LOG_ROWS = 50
THUMB_W, THUMB_H = 320, 96  # thumbnails are at most THUMB_W wide; score plots are THUMB_W x THUMB_H
STALE_STYLE = "background-color: #ffd6d6; color: #8b0000"


def ago(t: dt.datetime | None, now: dt.datetime | None = None) -> str:
    """A stored time (naive = UTC) as `HH:MM:SS (N s ago)` in local time; "-" for none."""
    if t is None:
        return "-"
    u = t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)
    secs = max(0.0, ((now or dt.datetime.now(dt.timezone.utc)) - u).total_seconds())
    span = f"{secs:.0f} s" if secs < 120 else f"{secs / 60:.0f} min" if secs < 7200 else f"{secs / 3600:.0f} h"
    return f"{u.astimezone():%H:%M:%S} ({span} ago)"


def health_table(rows: list[dict[str, Any]], now: dt.datetime | None = None) -> pd.DataFrame:
    """Store.health() rows as the sources table a person reads: one row per source, `stale` as "STALE" or ""."""
    return pd.DataFrame([{
        "source": h["source"], "state": h["state"], "stale": "STALE" if h["stale"] else "",
        "fps in": float(h["fps_in"]), "fps scored": float(h["fps_scored"]), "lag (s)": float(h["lag_s"]),
        "dropped frames": int(h["dropped_frames"]), "reconnects": int(h["reconnects"]),
        "last event": ago(h["last_event"], now), "frames": int(h["frames"]), "items": int(h["items"]),
        "errors": int(h["errors"]), "updated": ago(h["updated"], now), "run": h["run_id"]} for h in rows])


def _stale_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Styles that paint every cell of a stale source's row."""
    return pd.DataFrame([[STALE_STYLE if s else ""] * df.shape[1] for s in df["stale"]], index=df.index,
                        columns=df.columns)


def score_plot(scores: np.ndarray, frames: np.ndarray, start: int, end: int, threshold: float | None,
               width: int = THUMB_W, height: int = THUMB_H) -> np.ndarray | None:
    """(height, width, 3) uint8 RGB plot of scores (T,) over frames (T,) around [start, end]: the event shaded red,
    the threshold dashed orange; None when no score lies in the window."""
    pad = max(25, (end - start) // 2)
    lo = int(np.searchsorted(frames, start - pad, side="left"))
    hi = int(np.searchsorted(frames, end + pad, side="right"))
    f, s = np.asarray(frames[lo:hi], np.float64), np.asarray(scores[lo:hi], np.float64)
    ok = np.isfinite(s)
    f, s = f[ok], s[ok]
    if not len(s):
        return None
    f, s = downsample_minmax(f, s, bins=width // 2)
    x0, x1 = float(min(f[0], start)), float(max(f[-1], end, f[0] + 1))
    y_lo, y_hi = float(s.min()), float(s.max())
    if threshold is not None and np.isfinite(threshold):
        y_lo, y_hi = min(y_lo, threshold), max(y_hi, threshold)
    y_hi = y_hi if y_hi > y_lo else y_lo + 1.0
    m = 4

    def px(v: float) -> int:
        return int(round(m + (v - x0) / (x1 - x0) * (width - 2 * m)))

    def py(v: float) -> int:
        return int(round(height - m - (v - y_lo) / (y_hi - y_lo) * (height - 2 * m)))

    img = np.full((height, width, 3), 255, np.uint8)
    cv2.rectangle(img, (px(start), 0), (max(px(end), px(start) + 2), height - 1), (255, 214, 214), -1)
    if threshold is not None and np.isfinite(threshold):
        for x in range(0, width, 8):
            cv2.line(img, (x, py(threshold)), (min(x + 4, width - 1), py(threshold)), (255, 127, 14), 1)
    pts = np.stack([[px(v) for v in f], [py(v) for v in s]], 1).astype(np.int32)
    cv2.polylines(img, [pts], False, (31, 119, 180), 1, cv2.LINE_AA)
    return img


@st.cache_data(show_spinner=False, ttl=REFRESH_S, max_entries=32)
def _series(db: str, sample_pk: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores (T,), frames (T,)) of a live sample, read at most once a refresh."""
    ser = get_store(db).series(sample_pk)
    scores = ser.get("frame_scores", np.zeros(0, np.float32))
    return scores, ser.get("frame_indices", np.arange(len(scores)))


@st.cache_data(show_spinner=False, max_entries=256)
def _small(_store: Store, path: str, run_id: int, mtime: float, box: tuple[float, ...] | None) -> np.ndarray | None:
    """A recorded picture (with the event's box) shrunk to THUMB_W wide; cached by path and modification time."""
    pic = read_picture(_store, path, run_id, "picture")
    if pic is None:
        return None
    if box is not None:
        pic = draw_boxes(pic, [list(box)])
    if pic.shape[1] > THUMB_W:
        pic = cv2.resize(pic, (THUMB_W, max(1, round(pic.shape[0] * THUMB_W / pic.shape[1]))),
                         interpolation=cv2.INTER_AREA)
    return pic


def event_picture(store: Store, ev: dict[str, Any], threshold: float | None) -> tuple[np.ndarray | None, str]:
    """(thumbnail, caption) of a Store.recent_events row: its recorded picture (`thumbnail`, else the input image
    itself) with the event's box, else a plot of the scores around it; (None, why) when neither exists."""
    run_id, pk = ev["run_id"], ev.get("sample_pk")
    path = ev.get("thumbnail") or (ev["path"] if ev.get("path") and not is_video(ev["path"]) else None)
    if path:
        p = safe_file(store, path, run_id, "picture")
        box = tuple(float(ev[k]) for k in ("x1", "y1", "x2", "y2")) if ev.get("x1") is not None else None
        try:
            pic = _small(store, str(p), run_id, p.stat().st_mtime, box) if p is not None else None
        except OSError:  # deleted since safe_file looked
            pic = None
        if pic is not None:
            return pic, Path(path).name
    if pk and ev.get("start_frame") is not None:
        end = ev["end_frame"] if ev.get("end_frame") is not None else ev["start_frame"]
        scores, frames = _series(store.db, pk)
        pic = score_plot(scores, frames, int(ev["start_frame"]), int(end), threshold) if len(scores) else None
        if pic is not None:
            return pic, f"scores around frames {ev['start_frame']}-{end}"
        return None, f"no scores stored yet around frames {ev['start_frame']}-{end}"
    return None, "no picture recorded"


def _event_card(store: Store, ev: dict[str, Any], thresholds: dict[int, float | None]) -> None:
    """One event: thumbnail | what, when, open or closed, reason, label buttons."""
    run_id = ev["run_id"]
    if run_id not in thresholds:
        thresholds[run_id] = store.threshold(run_id)
    is_open = bool(ev.get("is_open"))
    with st.container(border=True):
        c1, c2 = st.columns([1, 3])
        pic, caption = event_picture(store, ev, thresholds[run_id])
        if pic is not None:
            show_image(pic, caption, c1)
        else:
            c1.caption(caption)
        where = f"frames {ev['start_frame']}-{ev['end_frame']}" if ev.get("start_frame") is not None else ""
        if ev.get("start") is not None:
            where += f" ({ev['start']:.1f}-{ev['end'] if ev.get('end') is not None else ev['start']:.1f} s)"
        state = ":red-badge[● open]" if is_open else ":gray-badge[closed]"
        parts = [f"{state} **event #{ev['id']}**", f"source **{ev.get('source') or '?'}**", ev.get("sample_id") or "",
                 where.strip(), f"score {ev.get('score') or 0:.4g}"]
        with c2:
            st.markdown(" · ".join(p for p in parts if p))
            if ev.get("reason"):
                st.caption(ev["reason"])
            label_buttons(store, run_id, event_id=ev["id"], key="live")


def _sources(store: Store, health: list[dict[str, Any]]) -> None:
    """The sources table, stale ones painted and named."""
    st.subheader("Sources")
    if not health:
        st.caption("No source has reported yet.")
        return
    df = health_table(health)
    style = df.style.apply(_stale_rows, axis=None).format({"fps in": "{:.1f}", "fps scored": "{:.1f}",
                                                           "lag (s)": "{:.2f}"})
    st.dataframe(style, hide_index=True, width="stretch")
    stale = [f"{h['source']} (last update {ago(h['updated'])})" for h in health if h["stale"]]
    if stale:
        st.markdown(":red[**Stale:** " + "; ".join(stale) + " — its watcher has stopped reporting.]")


def _events(store: Store) -> None:
    """The newest events of live runs, newest first."""
    st.subheader("Newest events")
    events = store.recent_events(limit=EVENTS_SHOWN)
    if not events:
        st.caption("No events in live runs yet.")
        return
    n_open = sum(bool(e.get("is_open")) for e in events)
    st.caption(f"{len(events)} newest events, {n_open} still open.")
    thresholds: dict[int, float | None] = {}
    for ev in events:
        _event_card(store, ev, thresholds)


def _logs(store: Store, health: list[dict[str, Any]]) -> None:
    """Each source's log (reconnects, restarts, errors, ...), newest first, one tab per source."""
    st.subheader("Log")
    if not health:
        return
    for tab, h in zip(st.tabs([h["source"] for h in health]), health):
        rows = store.live_log(h["run_id"], limit=LOG_ROWS) if h["run_id"] is not None else []
        if rows:
            tab.dataframe(pd.DataFrame([{"time": ago(r["time"]), "what": r["what"], "detail": r["detail"]}
                                        for r in rows]), hide_index=True, width="stretch")
        else:
            tab.caption(f"Nothing logged for {h['source']} (run {h['run_id']}) yet.")


@st.fragment(run_every=REFRESH_S)
def live_view(db: str) -> None:
    """Everything on the page that changes: redrawn every REFRESH_S seconds on its own."""
    store = get_store(db)
    try:
        health = store.health()
        runs = store.live_runs()
        if not runs:
            st.info("No live runs in this store yet. Start one with `oddeye watch CONFIG.yaml --db ...` or "
                    "`oddeye watch --model DIR --source SRC --db ...`; this page shows it as it comes in.")
        n_open = sum(r["state"] == "open" for r in runs)
        last = st.session_state.get("last_label")
        st.caption(f"{len(health)} sources, {n_open} open live runs · refreshed {dt.datetime.now():%H:%M:%S}, "
                   f"every {REFRESH_S:g} s" + (f" · last label: {last}" if last else ""))
        _sources(store, health)
        _events(store)
        _logs(store, health)
    except OddeyeError as e:  # a fragment's rerun runs outside the page's own error handling
        st.error(e.message + (f"\n\n{e.hint}" if e.hint else ""))


def render(store: Store, run: dict[str, Any] | None, runs: list[dict[str, Any]]) -> None:
    """Draw the Live page (the run chosen in the sidebar does not matter here)."""
    st.header("Live")
    live_view(store.db)
