"""Patrol page: reference | query | change map along the route with a slider, events along the route."""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from oddeye.core.viz import colorize
from oddeye.ui.common import (artefact_map, first_artefact, is_video, label_buttons, pixel_map, read_frame,
                              read_picture)
from oddeye.store.api import Store


def route_figure(scores: np.ndarray, threshold: float | None, at: int) -> go.Figure:
    """Change score per route position (S,), the threshold and the current position."""
    fig = go.Figure(go.Scatter(y=scores, mode="lines+markers", name="change score", marker={"size": 4}))
    if threshold is not None:
        fig.add_hline(y=threshold, line_dash="dash", line_color="#ff7f0e")
    fig.add_vline(x=at, line_color="#2ca02c")
    fig.update_layout(height=220, margin={"l": 40, "r": 10, "t": 10, "b": 30}, xaxis_title="route position",
                      yaxis_title="change score")
    return fig


def route_position(pairs: list[dict[str, Any]], event: dict[str, Any]) -> int:
    """Index in the route of an event: its own pair, else the pair of its start frame, else the start frame."""
    for i, p in enumerate(pairs):
        if p["sample_id"] == event["sample_id"]:
            return i
    start = event["start_frame"] or 0
    for i, p in enumerate(pairs):
        if (p["meta"] or {}).get("index") == start:
            return i
    return int(np.clip(start, 0, len(pairs) - 1))


def render(store: Store, run: dict[str, Any] | None, runs: list[dict[str, Any]]) -> None:
    """Draw the route slider, the three pictures at the chosen position and the events."""
    st.header("Patrol")
    if run is None:
        st.info("No runs in this store.")
        return
    pairs = store.samples(run["id"], order="id")
    if not pairs or not any(s["kind"] == "patrol_pair" for s in pairs):
        st.info(f"Run {run['id']} ({run['head']}) has no reference/query pairs; pick a patrol run.")
        return
    scores = np.array([s["score"] if s["score"] is not None else np.nan for s in pairs])
    rkey = f"route_{run['id']}"
    i = st.slider("Route position", 0, len(pairs) - 1, 0, key=rkey) if len(pairs) > 1 else 0
    st.plotly_chart(route_figure(scores, store.threshold(run["id"]), i), width="stretch",
                    key=f"route_fig_{run['id']}")
    sample = pairs[i]
    arts = artefact_map(store, run["id"], sample["id"])
    ref_path = first_artefact(arts, ("reference", "ref"))
    qry_path = first_artefact(arts, ("query",))
    amap = pixel_map(store.maps(sample["id"]))
    meta = sample["meta"] or {}
    ref_video, ref_index = (run["meta"] or {}).get("reference"), meta.get("ref_index")
    c1, c2, c3 = st.columns(3)
    for col, path, what, video, index in ((c1, ref_path, "reference", ref_video, ref_index),
                                          (c2, qry_path, "query", sample["path"], meta.get("index"))):
        with col:
            if path and not is_video(path):
                pic = read_picture(store, path, run["id"], what)
            elif is_video(video) and index is not None:  # no picture recorded: the frame from the video itself
                pic = read_frame(store, video, run["id"], int(index), what)
            else:
                pic = None
            if pic is not None:
                st.image(pic, caption=what, width="stretch")
            else:
                st.caption(f"no {what} picture recorded")
    with c3:
        change_path = first_artefact(arts, ("change", "heatmap", "overlay"))
        pic = colorize(amap) if amap is not None else (
            read_picture(store, change_path, run["id"], "change map") if change_path else None)
        if pic is not None:
            st.image(pic, caption=f"change map (score {sample['score'] or 0:.4g})", width="stretch")
        else:
            st.caption("no change map recorded")
    st.caption(f"{sample['sample_id']}" + (f": {sample['reason']}" if sample["reason"] else ""))
    label_buttons(store, run["id"], sample_pk=sample["id"], key="patrol", name=sample["sample_id"])
    st.subheader("Events along the route")
    events = store.events(run["id"])
    if not events:
        st.caption("No events in this run.")
        return
    st.dataframe([{k: e[k] for k in ("id", "sample_id", "start_frame", "end_frame", "score", "reason")}
                  for e in events], hide_index=True, width="stretch")
    by_id = {e["id"]: e for e in events}
    eid = st.selectbox("Event", list(by_id), key=f"patrol_event_{run['id']}", format_func=lambda k: (
        f"#{k}: {by_id[k]['sample_id']}, frames {by_id[k]['start_frame']}-{by_id[k]['end_frame']}, "
        f"score {by_id[k]['score'] or 0:.4g}"))
    pos = route_position(pairs, by_id[eid])

    def _go() -> None:
        st.session_state[rkey] = pos

    if len(pairs) > 1:
        st.button(f"Go to event #{eid} (route position {pos})", on_click=_go, key=f"patrol_go_{run['id']}")
    label_buttons(store, run["id"], event_id=eid, key="patrol_event")
