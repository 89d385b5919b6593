"""Patrol page: reference | query | change map along the route with a slider, events along the route."""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from oddeye.core.errors import InputError
from oddeye.store.api import Store
from oddeye.ui.common import (artefact_map, first_artefact, is_video, label_buttons, overlay_picture, pixel_map,
                              read_frame, read_picture, show_image)

CHANGE_NAMES = ("change", "heatmap", "overlay")


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


def first_position(pairs: list[dict[str, Any]], with_picture: set[int], events: list[dict[str, Any]]) -> int:
    """Where the route opens: the highest-scoring pair that has a change map, else the top event's, else 0."""
    scored = [(p["score"], i) for i, p in enumerate(pairs) if p["id"] in with_picture and p["score"] is not None]
    if scored:
        return max(scored)[1]
    if events:
        return route_position(pairs, max(events, key=lambda e: e["score"] or -np.inf))
    return 0


def reference_source(store: Store, run: dict[str, Any]) -> str | None:
    """The reference route (video or frame folder): the run's `reference` artefact, else its meta when readable."""
    arts = {a["name"]: a["path"] for a in store.artefacts(run["id"]) if a["sample_pk"] is None}
    if arts.get("reference"):
        return arts["reference"]
    path = (run["meta"] or {}).get("reference")
    try:  # an older run recorded it only in meta: used when the store allows reading it, silently skipped if not
        return str(store.safe_path(path, run["id"])) if path else None
    except InputError:
        return None


def _picture(store: Store, run_id: int, still: str | None, video: str | None, index: Any, what: str
             ) -> np.ndarray | None:
    """A recorded picture, else frame `index` of the video it came from, else None."""
    if still and not is_video(still):
        return read_picture(store, still, run_id, what)
    if is_video(video) and index is not None:
        return read_frame(store, video, run_id, int(index), what)
    return None


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
    events = store.events(run["id"])
    with_picture = set(store.map_names(run["id"])) | {
        a["sample_pk"] for a in store.artefacts(run["id"]) if a["name"].startswith(CHANGE_NAMES)}
    scores = np.array([s["score"] if s["score"] is not None else np.nan for s in pairs])
    rkey = f"route_{run['id']}"
    if rkey not in st.session_state:
        st.session_state[rkey] = first_position(pairs, with_picture, events)
    i = st.slider("Route position", 0, len(pairs) - 1, key=rkey) if len(pairs) > 1 else 0
    st.plotly_chart(route_figure(scores, store.threshold(run["id"]), i), width="stretch",
                    key=f"route_fig_{run['id']}")
    sample = pairs[i]
    arts = artefact_map(store, run["id"], sample["id"])
    meta = sample["meta"] or {}
    ref = _picture(store, run["id"], first_artefact(arts, ("reference", "ref")), reference_source(store, run),
                   meta.get("ref_frame", meta.get("ref_index")), "reference")
    qry = _picture(store, run["id"], first_artefact(arts, ("query",)), sample["path"], meta.get("index"), "query")
    change_path = first_artefact(arts, CHANGE_NAMES)
    change = read_picture(store, change_path, run["id"], "change map") if change_path else None
    if change is None:
        change = overlay_picture(qry, pixel_map(store.maps(sample["id"])))
    for col, pic, what in zip(st.columns(3), (ref, qry, change), ("reference", "query", "change map")):
        if pic is not None:
            show_image(pic, what if what != "change map" else f"change map (score {sample['score'] or 0:.4g})", col)
        else:
            col.caption(f"no {what} for this position" + (f" ({meta['status']})" if meta.get("status") else ""))
    st.caption(f"{sample['sample_id']}" + (f": {sample['reason']}" if sample["reason"] else ""))
    label_buttons(store, run["id"], sample_pk=sample["id"], key="patrol", name=sample["sample_id"])
    st.subheader("Events along the route")
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
