"""Runs page: every run with its metrics; details, artefacts and thresholds of the chosen run."""

from __future__ import annotations

from typing import Any

import streamlit as st

from oddeye.core.errors import InputError
from oddeye.ui.common import fmt_metrics
from oddeye.ui.search import choice_line, model_searches, search_figure, search_rows
from oddeye.store.api import Store


def render(store: Store, run: dict[str, Any] | None, runs: list[dict[str, Any]]) -> None:
    """Draw the runs table and the chosen run's details, with threshold suggestion from labels."""
    st.header("Runs")
    if not runs:
        st.info("This store has no runs yet. Score something with `oddeye score ... --db` or run `oddeye demo`.")
        return
    rows = [{"id": r["id"], "head": r["head"], "kind": r["kind"], "created": r["created"], "samples": r["n_samples"],
             "events": r["n_events"], "threshold": store.threshold(r["id"]), "model": r["model"], "data": r["data"],
             **{k: v for k, v in (r["metrics"] or {}).items() if isinstance(v, (int, float, str))}} for r in runs]
    st.dataframe(rows, hide_index=True, width="stretch")
    if run is None:
        return
    st.subheader(f"Run {run['id']}: {run['head']} ({run['kind']})")
    c1, c2 = st.columns(2)
    c1.write(f"**model** {run['model'] or '-'}  \n**data** {run['data'] or '-'}  \n"
             f"**oddeye** {run['oddeye_version']}  \n**metrics** {fmt_metrics(run['metrics']) or '-'}")
    c2.json(run["parameters"] or {}, expanded=False)
    _searches(run)
    arts = store.artefacts(run["id"])
    if arts:
        with st.expander(f"{len(arts)} artefact files"):
            st.dataframe([{k: a[k] for k in ("name", "kind", "path")} for a in arts], hide_index=True)
    st.subheader("Threshold")
    st.write(f"In force: **{store.threshold(run['id'])}** (head's own: {run['threshold']})")
    c1, c2 = st.columns([3, 1])
    manual = c1.number_input("Set a threshold by hand", value=float(store.threshold(run["id"]) or 0.0), format="%.6g",
                             key=f"thr_manual_{run['id']}")
    if c2.button("Apply", key="apply_manual"):
        store.set_threshold(run["id"], manual, source="manual", by=st.session_state.get("reviewer", ""))
        st.success(f"Threshold {manual:.6g} applied to run {run['id']}.")
    rate = st.slider("False-alarm rate you accept", 0.0, 0.5, 0.05, 0.01, key="far")
    try:
        from oddeye.ui.threshold import apply_threshold, suggest_threshold

        sug = suggest_threshold(store, run["id"], rate)
    except InputError as e:
        st.info(e.message)
        return
    st.write(f"Suggested from labels: **{sug['threshold']:.6g}** keeps {sug['true_anomalies_kept']}/"
             f"{sug['n_true_anomaly']} true anomalies and {sug['false_alarms_kept']}/{sug['n_false_alarm']} false alarms.")
    if st.button("Apply suggested threshold", key="apply_thr"):
        apply_threshold(store, run["id"], sug, by=st.session_state.get("reviewer", ""))
        st.success(f"Threshold {sug['threshold']:.6g} applied to run {run['id']}.")
    if store.thresholds(run["id"]):
        st.dataframe(store.thresholds(run["id"]), hide_index=True)


def _searches(run: dict[str, Any]) -> None:
    """How --auto chose the settings of the run's model, if it was fitted with --auto."""
    found = model_searches(run["model"])
    for folder, auto in found:
        tried = sum(t["auroc"] is not None for t in auto["trials"])
        which = f" ({folder.name})" if len(found) > 1 else ""
        with st.expander(f"How --auto chose the model's settings{which}: {tried} of {len(auto['trials'])} "
                         "candidates tried", expanded=False):
            st.caption(f"{auto.get('metric', '')}. {choice_line(auto)}. `oddeye model info {folder}` prints the same.")
            st.plotly_chart(search_figure(auto), width="stretch", key=f"search_{run['id']}_{folder}")
            st.dataframe(search_rows(auto), hide_index=True, width="stretch")
