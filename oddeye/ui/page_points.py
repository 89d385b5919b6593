"""3D page: a point cloud coloured by anomaly score (downsampled), and its most anomalous regions."""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from oddeye.store.api import Store
from oddeye.ui.common import artefact_map, first_artefact, label_buttons, safe_file

MAX_POINTS = 30_000
TOP_POINTS = 20


def downsample_cloud(points: np.ndarray, scores: np.ndarray, k: int = MAX_POINTS, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray]:
    """At most k of the points (N,3)/scores (N,): the top 10% by score always, the rest at random."""
    n = len(points)
    if n <= k:
        return points, scores
    top = np.argsort(scores)[::-1][: k // 10]
    rest = np.setdiff1d(np.arange(n), top)
    pick = np.concatenate([top, np.random.default_rng(seed).choice(rest, k - len(top), replace=False)])
    return points[pick], scores[pick]


def load_points(store: Store, run_id: int, sample: dict[str, Any]) -> np.ndarray | None:
    """The (N, 3) points of a cloud sample from its `points` artefact, its input file or its `ply` artefact, or None."""
    arts = artefact_map(store, run_id, sample["id"])
    path = first_artefact(arts, ("points", "cloud")) or sample["path"] or first_artefact(arts, ("ply",))
    if not path:
        st.caption("No point cloud file was recorded for this sample (it was scored from memory).")
        return None
    p = safe_file(store, path, run_id, "point cloud")
    if p is None:
        return None
    try:
        if p.suffix.lower() == ".npy":
            return np.load(p)[:, :3].astype(np.float32)
        from oddeye.pointcloud.io import load_cloud

        return load_cloud(p).points
    except Exception as e:  # noqa: BLE001 - any reader failure is shown, not raised
        st.warning(f"Cannot read the point cloud {p}: {e}")
        return None


def _where(meta: dict[str, Any]) -> str | None:
    """The region's position as text, from event meta centre / hot_xyz."""
    xyz = meta.get("centre", meta.get("hot_xyz"))
    return None if xyz is None else str([round(float(v), 4) for v in np.ravel(xyz)[:3]])


def cloud_figure(points: np.ndarray, scores: np.ndarray) -> go.Figure:
    """Interactive scatter3d of points (N,3) coloured by scores (N,)."""
    fig = go.Figure(go.Scatter3d(x=points[:, 0], y=points[:, 1], z=points[:, 2], mode="markers",
                                 marker={"size": 2, "color": scores, "colorscale": "Jet", "showscale": True,
                                         "colorbar": {"title": "score"}},
                                 hovertemplate="score %{marker.color:.4g}<extra></extra>"))
    fig.update_layout(height=560, margin={"l": 0, "r": 0, "t": 0, "b": 0}, scene={"aspectmode": "data"})
    return fig


def render(store: Store, run: dict[str, Any] | None, runs: list[dict[str, Any]]) -> None:
    """Draw the chosen cloud coloured by its point map, and its anomalous regions."""
    st.header("3D")
    if run is None:
        st.info("No runs in this store.")
        return
    clouds = []
    for s in store.samples(run["id"]):
        maps = {n: a for n, (k, a) in store.maps(s["id"]).items() if k == "point"}
        if maps:
            clouds.append((s, maps))
    if not clouds:
        st.info(f"Run {run['id']} ({run['head']}) has no point maps; pick a point-cloud run.")
        return
    names = {s["id"]: f"{s['sample_id']} (score {s['score'] or 0:.4g})" for s, _ in clouds}
    pk = st.selectbox("Cloud", list(names), format_func=names.get, key=f"cloud_{run['id']}")
    sample, maps = next((s, m) for s, m in clouds if s["id"] == pk)
    scores = maps.get("anomaly", next(iter(maps.values()))).astype(np.float32)
    points = load_points(store, run["id"], sample)
    if points is not None and len(points) != len(scores):
        st.warning(f"The cloud has {len(points)} points but the map has {len(scores)} scores; not drawn.")
        points = None
    if points is not None:
        p, s = downsample_cloud(points, scores)
        st.plotly_chart(cloud_figure(p, s), width="stretch", key=f"cloud_fig_{pk}")
        st.caption(f"{len(p):,} of {len(points):,} points drawn (the most anomalous always).")
    st.subheader("Most anomalous regions")
    events = store.events(run["id"], pk)
    if events:
        st.dataframe([{k: e[k] for k in ("id", "score", "reason")} | {"where": _where(e["meta"] or {})}
                      for e in events], hide_index=True)
        eid = st.selectbox("Region", [e["id"] for e in events], key=f"region_{pk}")
        label_buttons(store, run["id"], event_id=eid, key="cloud_event")
    else:
        top = np.argsort(scores)[::-1][:TOP_POINTS]
        rows = [{"point": int(i), "score": float(scores[i])} for i in top]
        if points is not None:
            for r in rows:
                r["x"], r["y"], r["z"] = (float(v) for v in points[r["point"]])
        st.dataframe(rows, hide_index=True)
    st.write("Label the whole cloud:")
    label_buttons(store, run["id"], sample_pk=pk, key="cloud", name=sample["sample_id"])
