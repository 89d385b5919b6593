"""Images page: the most anomalous images as a heatmap grid; original | overlay of one; label buttons."""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

from oddeye.store.api import Store
from oddeye.ui.common import (artefact_map, draw_boxes, first_artefact, label_buttons, overlay_picture, pixel_map,
                              read_picture, show_image)

OVERLAY_NAMES = ("overlay", "heatmap", "map")


def sample_pictures(store: Store, run_id: int, sample: dict[str, Any]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(original, overlay) pictures of an image sample from its input path, map and artefacts."""
    arts = artefact_map(store, run_id, sample["id"])
    original = read_picture(store, sample["path"], run_id, "input image") if sample["path"] else None
    amap = pixel_map(store.maps(sample["id"]))
    ov = overlay_picture(original, amap)
    if ov is None:
        path = first_artefact(arts, OVERLAY_NAMES)
        ov = read_picture(store, path, run_id, "overlay") if path else None
    return original, ov


def render(store: Store, run: dict[str, Any] | None, runs: list[dict[str, Any]]) -> None:
    """Draw the grid of the most anomalous images and the chosen one side by side."""
    st.header("Images")
    if run is None:
        st.info("No runs in this store.")
        return
    n = st.slider("How many of the most anomalous", 4, 48, 12, 4, key="img_n")
    samples = [s for s in store.samples(run["id"], kind=("image", "sample"), limit=n) if not s["n_frames"]]
    if not samples:
        st.info(f"Run {run['id']} ({run['head']}) has no image samples; pick an image run.")
        return
    thr = store.threshold(run["id"])
    cols = st.columns(4)
    for i, s in enumerate(samples):
        with cols[i % 4]:
            _, ov = sample_pictures(store, run["id"], s)
            flag = " ⚠" if thr is not None and s["score"] is not None and s["score"] >= thr else ""
            caption = f"{s['sample_id']}: {s['score'] or 0:.4g}{flag}"
            if ov is not None:
                show_image(ov, caption)
            else:
                st.caption(caption + " (no picture)")
    st.subheader("Side by side")
    names = {s["id"]: f"{s['sample_id']} (score {s['score'] or 0:.4g})" for s in samples}
    pk = st.selectbox("Image", list(names), format_func=names.get, key=f"img_pick_{run['id']}")
    sample = next(s for s in samples if s["id"] == pk)
    original, ov = sample_pictures(store, run["id"], sample)
    events = store.events(run["id"], pk)
    boxes = [[e[k] for k in ("x1", "y1", "x2", "y2")] for e in events if e["x1"] is not None]
    if boxes and ov is not None:
        ov = draw_boxes(ov, boxes)
    c1, c2 = st.columns(2)
    if original is not None:
        show_image(original, "original", c1)
    if ov is not None:
        show_image(ov, "anomaly map overlay", c2)
    if sample["reason"]:
        st.write(f"**Reason:** {sample['reason']}")
    label_buttons(store, run["id"], sample_pk=pk, key="image", name=sample["sample_id"])
    if events:
        st.dataframe([{k: e[k] for k in ("id", "score", "x1", "y1", "x2", "y2", "reason")} for e in events],
                     hide_index=True)
