"""Video page: score timeline with events and threshold, the frame with its map, event list, labels."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from oddeye.core.paths import natural_key
from oddeye.store.api import Store
from oddeye.ui.common import (artefact_map, draw_boxes, get_store, label_buttons, overlay_picture, read_frame,
                              read_picture, safe_file, show_image)
from oddeye.ui.timeline import timeline_figure

MAX_EVENT_CHOICES = 500


@st.cache_data(show_spinner=False, max_entries=16)
def load_series(db: str, sample_pk: int) -> dict[str, np.ndarray]:
    """Per-frame series of a sample (cached: they never change once written)."""
    return get_store(db).series(sample_pk)


@st.cache_data(show_spinner=False, max_entries=16)
def load_events(db: str, run_id: int, sample_pk: int) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """Events of a sample as columns (for the plot) and rows (for the table)."""
    st_ = get_store(db)
    return st_.event_arrays(run_id, sample_pk), st_.events(run_id, sample_pk, with_meta=False)


@st.cache_data(show_spinner=False, max_entries=16)
def map_files(folder: str) -> dict[int, str]:
    """Per-frame map files in a folder, keyed by the frame number in their names."""
    out: dict[int, str] = {}
    for f in sorted(Path(folder).iterdir(), key=natural_key):
        digits = [k for k in natural_key(f.stem) if isinstance(k, int)]
        if digits and f.suffix.lower() in (".npy", ".png", ".jpg", ".tif", ".tiff"):
            out[int(digits[-1])] = str(f)
    return out


def timeline_data(store: Store, run_id: int, sample_pk: int) -> tuple[np.ndarray, np.ndarray, bool, dict, float | None]:
    """(scores (T,), x (T,), x is seconds, event columns, threshold): everything the timeline draws."""
    ser = store.series(sample_pk)
    scores = ser.get("frame_scores", np.zeros(0, np.float32))
    use_times = "frame_times" in ser and len(ser["frame_times"]) == len(scores)
    x = ser["frame_times"] if use_times else ser.get("frame_indices", np.arange(len(scores)))
    return scores, x, use_times, store.event_arrays(run_id, sample_pk), store.threshold(run_id)


def boxes_at(store: Store, ev_cols: dict[str, np.ndarray], frame: int, limit: int = 3) -> list[list[float]]:
    """Boxes (x1, y1, x2, y2) that the events covering `frame` recorded for it (event meta "boxes")."""
    hit = np.flatnonzero((ev_cols["start_frame"] <= frame) & (ev_cols["end_frame"] >= frame))[:limit]
    out = []
    for i in hit:
        boxes = (store.event(int(ev_cols["id"][i]))["meta"] or {}).get("boxes") or {}
        box = boxes.get(str(frame)) if isinstance(boxes, dict) else None
        if box is not None and len(box) == 4:
            out.append([float(v) for v in box])
    return out


def _frame_view(store: Store, run_id: int, sample: dict[str, Any], frame: int, ev_cols: dict[str, np.ndarray]) -> None:
    arts = artefact_map(store, run_id, sample["id"])
    image = read_frame(store, sample["path"], run_id, frame) if sample["path"] else None
    boxes = boxes_at(store, ev_cols, frame) if image is not None and len(ev_cols["id"]) else []
    if boxes:
        image = draw_boxes(image, boxes)
    amap = None
    if "maps_dir" in arts and safe_file(store, arts["maps_dir"], run_id, "maps folder") is not None:
        f = map_files(arts["maps_dir"]).get(frame)
        if f is not None:
            pic = None if f.endswith(".npy") else read_picture(store, f, run_id, "map")
            amap = np.load(f) if f.endswith(".npy") else None if pic is None else pic.mean(-1)
    if image is None and amap is None:
        still = arts.get("overlay") or arts.get("heatmap")
        pic = read_picture(store, still, run_id, "overlay") if still else None
        if pic is not None:
            show_image(pic, Path(still).name)
        elif not sample["path"]:
            st.caption("No frames were recorded for this video (the run stored no input path or maps).")
        return
    c1, c2 = st.columns(2)
    if image is not None:
        show_image(image, f"frame {frame}", c1)
    ov = overlay_picture(image, amap)
    if ov is not None:
        show_image(ov, f"anomaly map, frame {frame}", c2)


def jpeg_picture(text: Any) -> np.ndarray | None:
    """An (H, W, 3) RGB picture from base64 JPEG text (event meta), or None when absent or unreadable."""
    import cv2

    try:
        buf = np.frombuffer(base64.b64decode(str(text), validate=True), np.uint8) if text else None
    except (binascii.Error, ValueError):
        return None
    pic = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf is not None and buf.size else None
    return None if pic is None else cv2.cvtColor(pic, cv2.COLOR_BGR2RGB)


def _appearance_pair(meta: dict[str, Any] | None) -> None:
    """An event whose object looks like none in the normal footage: its crop beside the nearest normal object's."""
    found = (meta or {}).get("appearance") or {}
    pics = [(jpeg_picture(found.get("crop_jpeg")), "this object"),
            (jpeg_picture(found.get("nearest_jpeg")), f"nearest normal object (#{found.get('nearest')})")]
    if all(p is None for p, _ in pics):
        return
    for col, (pic, caption) in zip(st.columns(4), pics):
        if pic is not None:
            show_image(pic, caption, col)


def render(store: Store, run: dict[str, Any] | None, runs: list[dict[str, Any]]) -> None:
    """Draw the video page for the chosen run."""
    st.header("Video")
    if run is None:
        st.info("No runs in this store.")
        return
    videos = [s for s in store.samples(run["id"], order="id") if s["n_frames"]]
    if not videos:
        st.info(f"Run {run['id']} ({run['head']}) has no per-frame scores; pick a video run.")
        return
    names = {s["id"]: f"{s['sample_id']} (score {s['score'] or 0:.4g}, {s['n_frames']} frames)" for s in videos}
    pk = st.selectbox("Video", list(names), format_func=names.get, key=f"video_{run['id']}")
    sample = next(s for s in videos if s["id"] == pk)
    ser = load_series(store.db, pk)
    scores = ser.get("frame_scores")
    use_times = "frame_times" in ser and len(ser["frame_times"]) == len(scores)
    frames = ser.get("frame_indices", np.arange(len(scores)))
    ev_cols, ev_rows = load_events(store.db, run["id"], pk)
    threshold = store.threshold(run["id"])
    fkey = f"frame_{pk}"
    lo, hi = int(frames[0]), int(frames[-1])
    if fkey not in st.session_state:
        st.session_state[fkey] = lo
    frame = int(st.session_state[fkey])
    pos = int(np.clip(np.searchsorted(frames, frame), 0, len(frames) - 1))
    x = ser["frame_times"] if use_times else frames
    fig = timeline_figure(scores, x, events=ev_cols, threshold=threshold, use_times=use_times, marker=float(x[pos]))
    ckey = f"timeline_{pk}"

    def _picked() -> None:  # a click on the timeline moves the frame slider there
        pts = ((st.session_state.get(ckey) or {}).get("selection") or {}).get("points") or []
        if pts and pts[0].get("x") is not None:
            i = int(np.clip(np.searchsorted(x, float(pts[0]["x"])), 0, len(x) - 1))
            st.session_state[fkey] = int(frames[i])

    st.plotly_chart(fig, width="stretch", key=ckey, on_select=_picked, selection_mode="points")
    thr_text = "none" if threshold is None else f"{threshold:.4g}"
    st.caption(f"{len(scores):,} frame scores, {len(ev_rows):,} events, threshold {thr_text}. Click the plot to jump. "
               + (sample["reason"] or ""))
    if hi > lo:
        st.slider("Frame", lo, hi, key=fkey)
    _frame_view(store, run["id"], sample, int(st.session_state[fkey]), ev_cols)
    st.subheader("Events")
    if not ev_rows:
        st.caption("No events for this video.")
    else:
        st.dataframe([{"id": e["id"], "start_frame": e["start_frame"], "end_frame": e["end_frame"], "start_s": e["start"],
                       "end_s": e["end"], "score": e["score"], "reason": e["reason"]} for e in ev_rows],
                     hide_index=True, width="stretch", height=220)
        top = sorted(ev_rows, key=lambda e: -(e["score"] or 0))[:MAX_EVENT_CHOICES]
        top.sort(key=lambda e: (e["start_frame"] or 0))
        by_id = {e["id"]: e for e in top}
        eid = st.selectbox("Event", list(by_id), key=f"event_{pk}", format_func=lambda i: (
            f"#{i}: frames {by_id[i]['start_frame']}-{by_id[i]['end_frame']}, score {by_id[i]['score'] or 0:.4g}"
            + (f" - {by_id[i]['reason'][:80]}" if by_id[i]["reason"] else "")))
        ev = by_id[eid]
        meta = store.event(eid)["meta"]
        target = int((meta or {}).get("peak_frame", ev["start_frame"] if ev["start_frame"] is not None else lo))

        def _jump() -> None:
            st.session_state[fkey] = int(np.clip(target, lo, hi))

        st.button(f"Jump to event #{eid} (frame {target})", on_click=_jump, key=f"jump_{pk}")
        if ev["reason"]:
            st.write(f"**Reason:** {ev['reason']}")
        _appearance_pair(meta)
        label_buttons(store, run["id"], event_id=eid, key="video")
    with st.expander("Label the whole video"):
        label_buttons(store, run["id"], sample_pk=pk, key="video_sample", name=sample["sample_id"])
