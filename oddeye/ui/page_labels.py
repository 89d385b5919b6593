"""Labels page: everything labelled so far, filtered, exportable as CSV."""

from __future__ import annotations

import base64
import csv
import html
import io
from typing import Any

import streamlit as st

from oddeye.store.api import Store

COLUMNS = ("id", "run_id", "head", "event_id", "sample_pk", "sample_id", "start_frame", "end_frame", "score",
           "label", "by", "at", "note", "reason")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet may read as the start of a formula


def safe_cell(value: Any) -> Any:
    """A text cell a spreadsheet shows as text: one that begins like a formula gets a leading single quote."""
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_START) else value


def labels_csv(rows: list[dict[str, Any]]) -> str:
    """Label rows as CSV text with a header; reviewer text that looks like a formula is neutralised (safe_cell)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
    w.writeheader()
    w.writerows([{k: safe_cell(r.get(k)) for k in COLUMNS} for r in rows])
    return buf.getvalue()


def download_link(text: str, file_name: str, label: str) -> None:
    """A link that downloads `text`, carried inside the page (a data: URI in a small frame), not served under /media."""
    uri = "data:text/csv;charset=utf-8;base64," + base64.b64encode(text.encode()).decode()
    st.iframe(f'<a download="{html.escape(file_name)}" href="{uri}" style="font-family:sans-serif;display:inline-block;'
              'padding:.4rem .8rem;border:1px solid #bbb;border-radius:.5rem;color:inherit;text-decoration:none">'
              f"{html.escape(label)}</a>", height=48)


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
    download_link(labels_csv(rows), "oddeye-labels.csv", "Export CSV")
