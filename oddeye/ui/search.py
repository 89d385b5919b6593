"""The Runs page's view of how `--auto` chose a model's settings: the search table of the run's model folder, as a
bar per candidate (validation AUROC on held-out normals + synthetic anomalies), the chosen one highlighted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from oddeye.core.auto import table_lines
from oddeye.core.errors import ModelError
from oddeye.core.head import read_manifest

LABEL_CHARS = 70  # a candidate's settings on the chart's axis are cut to this many characters (the table has all)
CHOSEN, TRIED, UNTRIED = "#d62728", "#1f77b4", "#c7c7c7"


def settings_text(settings: dict[str, Any]) -> str:
    """A candidate's settings in one line ("defaults" for {})."""
    return json.dumps(settings, sort_keys=True)[1:-1].replace('"', "") if settings else "defaults"


def model_searches(model: str | None) -> list[tuple[Path, dict[str, Any]]]:
    """(folder, manifest "auto" entry) of each model folder a run names (comma-separated) that was fitted with
    --auto. Only the manifest of a model the run recorded is read, and only its "auto" entry is kept; folders
    without a search or a readable manifest are left out."""
    found = []
    for part in filter(None, (model or "").split(",")):
        try:
            auto = read_manifest(part).get("auto")
        except (ModelError, OSError, ValueError):
            continue
        if isinstance(auto, dict) and auto.get("trials"):
            found.append((Path(part), auto))
    return found


def choice_line(auto: dict[str, Any]) -> str:
    """The search's last line as `oddeye model info` prints it: the chosen settings, why, and the time spent."""
    return table_lines(auto)[-1]


def search_rows(auto: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per candidate of a manifest's "auto" entry: number, chosen, AUROC, times, status, settings."""
    return [{"#": i + 1, "chosen": i == auto.get("chosen"), "auroc": t.get("auroc"), "fit_s": t.get("fit_s"),
             "score_s": t.get("score_s"), "status": t.get("status", "ok"), "settings": settings_text(t["settings"])}
            for i, t in enumerate(auto["trials"])]


def search_figure(auto: dict[str, Any]) -> go.Figure:
    """Validation AUROC per candidate (horizontal bars in the search's order, the chosen one red; candidates the
    budget left untried or that failed are grey, at the axis's start, with their status)."""
    rows = search_rows(auto)
    labels = [f"{r['#']}. {settings_text(t['settings'])[:LABEL_CHARS]}" for r, t in zip(rows, auto["trials"])]
    tried = [r["auroc"] for r in rows if r["auroc"] is not None]
    low = max(0.0, min(tried) - 0.05) if tried else 0.0
    values = [r["auroc"] if r["auroc"] is not None else low for r in rows]
    colours = [CHOSEN if r["chosen"] else TRIED if r["auroc"] is not None else UNTRIED for r in rows]
    text = [f"{r['auroc']:.3f}" if r["auroc"] is not None else r["status"] for r in rows]
    fig = go.Figure(go.Bar(x=values, y=labels, orientation="h", marker_color=colours, text=text,
                           textposition="outside", cliponaxis=False,
                           customdata=[[r["fit_s"], r["score_s"]] for r in rows],
                           hovertemplate="%{y}<br>AUROC %{x:.4f}<br>fit %{customdata[0]} s, score %{customdata[1]} s"
                                         "<extra></extra>"))
    fig.update_layout(height=120 + 24 * len(rows), margin={"l": 10, "r": 50, "t": 10, "b": 40},
                      xaxis={"title": "validation AUROC (held-out normals + synthetic anomalies)",
                             "range": [low, 1.0]},
                      yaxis={"autorange": "reversed", "automargin": True})
    return fig
