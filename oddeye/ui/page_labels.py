"""Labels page: everything labelled so far, filtered, exportable as CSV."""

from __future__ import annotations

import csv
import io
from typing import Any

import streamlit as st

from oddeye.store.api import Store

COLUMNS = ("id", "run_id", "head", "event_id", "sample_pk", "sample_id", "start_frame", "end_frame", "score",
           "label", "by", "at", "note", "reason")


def labels_csv(rows: list[dict[str, Any]]) -> str:
    """Label rows as CSV text with a header."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def render(store: Store, run: dict[str, Any] | None, runs: list[dict[str, Any]]) -> None:
    """Draw the filters, the labels table and the CSV download."""
    st.header("Labels")
    rows = store.labels()
    if not rows:
        st.info("Nothing is labelled yet: use the label buttons on the Video, Images, 3D or Patrol pages.")
        return
    c1, c2, c3 = st.columns(3)
    run_ids = sorted({r["run_id"] for r in rows})
    pick_runs = c1.multiselect("Runs", run_ids, default=run_ids, key="lab_runs")
    kinds = c2.multiselect("Label", ["true_anomaly", "false_alarm", "unsure"],
                           default=["true_anomaly", "false_alarm", "unsure"], key="lab_kinds")
    who = c3.text_input("By (contains)", key="lab_by")
    rows = [r for r in rows if r["run_id"] in pick_runs and r["label"] in kinds and who.lower() in (r["by"] or "").lower()]
    st.write(f"{len(rows)} label(s)")
    st.dataframe([{k: r.get(k) for k in COLUMNS} for r in rows], hide_index=True, width="stretch")
    st.download_button("Export CSV", labels_csv(rows), file_name="oddeye-labels.csv", mime="text/csv", key="lab_csv")
