"""The oddeye review dashboard (Streamlit). Started by `oddeye ui --db PATH|URL`; reads the store from
`-- --db X` or ODDEYE_UI_DB, asks for ODDEYE_UI_PASSWORD when that is set."""

from __future__ import annotations

import streamlit as st

from oddeye.core.errors import OddeyeError
from oddeye.ui import page_images, page_labels, page_live, page_patrol, page_points, page_runs, page_video
from oddeye.ui.auth import password_gate
from oddeye.ui.common import db_from_args, get_store, page_for_run

PAGES = {"Runs": page_runs.render, "Live": page_live.render, "Video": page_video.render,
         "Images": page_images.render, "3D": page_points.render, "Patrol": page_patrol.render,
         "Labels": page_labels.render}
WHOLE_STORE_PAGES = ("Runs", "Live", "Labels")  # pages about every run: no hint about the run chosen


def main() -> None:
    """Render the page chosen in the sidebar for the run chosen in the sidebar."""
    st.set_page_config(page_title="oddeye review", layout="wide")
    password_gate()
    db = db_from_args()
    if not db:
        st.error("No store given. Start the dashboard with `oddeye ui --db PATH`.")
        st.stop()
    try:
        store = get_store(db)
        runs = store.runs()
    except OddeyeError as e:
        st.error(e.message + (f"\n\n{e.hint}" if e.hint else ""))
        st.stop()
    st.sidebar.title("oddeye review")
    st.sidebar.caption(store.name)
    wanted_page = st.query_params.get("page")
    if wanted_page in PAGES and "page" not in st.session_state:
        st.session_state["page"] = wanted_page
    page = st.sidebar.radio("Page", list(PAGES), key="page")
    run = None
    if runs:
        labels = {r["id"]: f"run {r['id']} · {r['head']} · {r['kind']} · {r['created']:%Y-%m-%d %H:%M}" for r in runs}
        wanted = st.query_params.get("run")
        if wanted and wanted.isdigit() and int(wanted) in labels and "run" not in st.session_state:
            st.session_state["run"] = int(wanted)
        rid = st.sidebar.selectbox("Run", list(labels), format_func=labels.get, key="run")
        run = next(r for r in runs if r["id"] == rid)
        hint = page_for_run(run)
        if hint and hint != page and page not in WHOLE_STORE_PAGES:
            st.sidebar.info(f"This run is from the {run['head']} head: the {hint} page shows it best.")
    st.sidebar.text_input("Reviewer", key="reviewer", placeholder="your name (stored with labels)")
    if st.session_state.get("last_label"):
        st.sidebar.success(f"Labelled {st.session_state['last_label']}")
    try:
        PAGES[page](store, run, runs)
    except OddeyeError as e:
        st.error(e.message + (f"\n\n{e.hint}" if e.hint else ""))


main()
