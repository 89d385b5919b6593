"""The video page's score timeline: min/max downsampling of long series and the plotly figure."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

MAX_BINS = 1000  # about one bin per screen pixel: 1M frames become 2,000 plotted points; peaks survive
SHADE_EVENTS = 150  # up to this many events are shaded rectangles; more become one coverage band
HOVER_EVENTS = 500  # the highest-scoring events get a marker with a hover label


def downsample_minmax(x: np.ndarray, y: np.ndarray, bins: int = MAX_BINS) -> tuple[np.ndarray, np.ndarray]:
    """Keep the min and max of y (T,) in each of `bins` equal chunks, in x order; (x', y') of <= 2*bins points."""
    n = len(y)
    if n <= 2 * bins:
        return np.asarray(x), np.asarray(y)
    k = -(-n // bins)
    yy = np.full(bins * k, np.nan)
    yy[:n] = y
    yy = yy.reshape(bins, k)
    base = np.arange(bins) * k
    i_max = base + np.argmax(np.nan_to_num(yy, nan=-np.inf), axis=1)
    i_min = base + np.argmin(np.nan_to_num(yy, nan=np.inf), axis=1)
    keep = np.unique(np.concatenate([i_min, i_max]))
    keep = keep[keep < n]
    return np.asarray(x)[keep], np.asarray(y)[keep]


def coverage_band(a: np.ndarray, b: np.ndarray, lo: float, hi: float, bins: int = MAX_BINS
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Events [a, b] (E,) as (x (2*bins,), covered (2*bins,)): a step line that is > 0 wherever an event lies."""
    edges = np.linspace(lo, hi, bins + 1)
    width = edges[1] - edges[0] if bins else 1.0
    i0 = np.clip(((a - lo) / (width or 1.0)).astype(np.int64), 0, bins - 1)
    i1 = np.clip(((b - lo) / (width or 1.0)).astype(np.int64), 0, bins - 1)
    diff = np.zeros(bins + 1)
    np.add.at(diff, i0, 1)
    np.add.at(diff, i1 + 1, -1)
    covered = np.cumsum(diff)[:bins]
    x = np.stack([edges[:-1], edges[1:]], 1).ravel()
    return x, np.repeat(covered, 2)


def _segments(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Interleave (a, b, NaN) so one line trace draws many separate segments."""
    out = np.full(3 * len(a), np.nan)
    out[0::3], out[1::3] = a, b
    return out


def timeline_figure(scores: np.ndarray, x: np.ndarray | None = None, *, events: dict[str, np.ndarray] | None = None,
                    threshold: float | None = None, use_times: bool = False, marker: float | None = None,
                    title: str = "") -> go.Figure:
    """Score timeline: scores (T,) over x (T,) (frames or seconds), events as bands, the threshold line.

    events: columns start_frame, end_frame, start, end, score, id (each (E,)), as Store.event_arrays returns.
    """
    s = np.asarray(scores, dtype=np.float64)
    xs = np.arange(len(s)) if x is None else np.asarray(x)
    dx, dy = downsample_minmax(xs, s)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=dx, y=dy, mode="lines", name="score", line={"width": 1, "color": "#1f77b4"},
                               hovertemplate="%{x}: %{y:.4g}<extra></extra>"))
    finite = s[np.isfinite(s)]
    top = float(finite.max()) if finite.size else 1.0
    bottom = float(finite.min()) if finite.size else 0.0
    band = top + 0.05 * (top - bottom or 1.0)
    if events is not None and len(events.get("id", [])):
        a = events["start"] if use_times else events["start_frame"]
        b = events["end"] if use_times else events["end_frame"]
        ok = np.isfinite(a) & np.isfinite(b)
        a, b, ids, sc = a[ok], b[ok], events["id"][ok], events["score"][ok]
        if len(a) <= SHADE_EVENTS:
            for lo, hi in zip(a, b):
                fig.add_vrect(x0=lo, x1=hi if hi > lo else lo + (1 / 25 if use_times else 1), fillcolor="#d62728",
                              opacity=0.15, line_width=0, layer="below")
            fig.add_trace(go.Scatter(x=_segments(a, b), y=np.full(3 * len(a), band), mode="lines", name="events",
                                       line={"width": 6, "color": "#d62728"}, hoverinfo="skip"))
        else:  # many events: one band of event coverage on the plot's bins (<= 2*MAX_BINS points)
            cx, cy = coverage_band(a, b, float(np.min(xs)), float(np.max(xs)))
            fig.add_trace(go.Scatter(x=cx, y=np.where(cy > 0, band, np.nan), mode="lines", name="events",
                                       line={"width": 6, "color": "#d62728"}, hoverinfo="skip", connectgaps=False))
        top = np.argsort(-np.nan_to_num(sc, nan=-np.inf))[:HOVER_EVENTS]
        fig.add_trace(go.Scatter(x=(a[top] + b[top]) / 2, y=np.full(len(top), band), mode="markers", name="event",
                                   marker={"size": 6, "color": "#d62728"}, customdata=np.stack([ids[top], sc[top]], 1),
                                   hovertemplate="event %{customdata[0]:.0f}, score %{customdata[1]:.4g}<extra></extra>",
                                   showlegend=False))
    if threshold is not None and np.isfinite(threshold):
        fig.add_hline(y=float(threshold), line_dash="dash", line_color="#ff7f0e",
                      annotation_text=f"threshold {threshold:.4g}", annotation_position="top left")
    if marker is not None:
        fig.add_vline(x=float(marker), line_color="#2ca02c", line_width=1)
    fig.update_layout(title=title or None, height=320, margin={"l": 40, "r": 10, "t": 30 if title else 10, "b": 30},
                      xaxis_title="time (s)" if use_times else "frame", yaxis_title="anomaly score",
                      legend={"orientation": "h", "y": 1.12}, uirevision="timeline")
    return fig
