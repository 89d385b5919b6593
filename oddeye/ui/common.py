"""Pieces every dashboard page shares: the open store, safe file reading, pictures drawn inline, label buttons."""

from __future__ import annotations

import base64
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from oddeye.core.errors import OddeyeError
from oddeye.store.api import LABELS, PathRefusedError, Store, open_store

LABEL_TEXT = {"true_anomaly": "True anomaly", "false_alarm": "False alarm", "unsure": "Unsure"}
PAGE_FOR_KIND = {"video": "Video", "image": "Images", "pointcloud": "3D", "patrol": "Patrol"}
PAGE_FOR_HEAD_PREFIX = (("video", "Video"), ("image", "Images"), ("point", "3D"), ("patrol", "Patrol"))  # older names


def page_for_run(run: dict[str, Any]) -> str | None:
    """The page that shows a run best: by the kind it was written as, else by its head; None: the Runs page only."""
    from oddeye.core.head import HEADS

    head = str(run.get("head") or "")
    kind = run.get("kind") if run.get("kind") in PAGE_FOR_KIND else HEADS.get(head, (None,))[0]
    if kind in PAGE_FOR_KIND:
        return PAGE_FOR_KIND[kind]
    return next((page for prefix, page in PAGE_FOR_HEAD_PREFIX if head.lower().startswith(prefix)), None)


def db_from_args() -> str | None:
    """The store given as `-- --db X` to streamlit run, or in ODDEYE_UI_DB."""
    argv = sys.argv[1:]
    if "--db" in argv and argv.index("--db") + 1 < len(argv):
        return argv[argv.index("--db") + 1]
    return os.environ.get("ODDEYE_UI_DB")


@st.cache_resource(show_spinner=False)
def get_store(db: str) -> Store:
    """One open Store per db for the whole server."""
    return open_store(db)


def safe_file(store: Store, path: str | None, run_id: int, what: str = "file") -> Path | None:
    """The path if it may be read and exists; otherwise show why (refused / missing) and return None."""
    if not path:
        return None
    try:
        p = store.safe_path(path, run_id)
    except PathRefusedError as e:
        st.error(e.message)
        return None
    if not p.exists():
        st.warning(f"The {what} has disappeared: {p} (moved or deleted since the run).")
        return None
    return p


def read_picture(store: Store, path: str | None, run_id: int, what: str = "image") -> np.ndarray | None:
    """An (H, W, 3) uint8 picture read through safe_file, or None with a message."""
    from oddeye.core.imageio import read_image

    p = safe_file(store, path, run_id, what)
    if p is None:
        return None
    try:
        if p.suffix.lower() == ".npy":
            from oddeye.core.viz import colorize

            a = np.load(p)
            return colorize(a) if a.ndim == 2 else a.astype(np.uint8)
        return read_image(p, "rgb")
    except (OddeyeError, OSError, ValueError) as e:
        st.warning(f"Cannot read the {what} {p}: {e}")
        return None


def read_frame(store: Store, path: str | None, run_id: int, index: int, what: str = "video") -> np.ndarray | None:
    """Frame `index` of a video file or frame folder (through safe_file and oddeye.core.videoio), or None with a message."""
    p = safe_file(store, path, run_id, what)
    if p is None:
        return None
    try:
        from oddeye.core.videoio import open_video

        reader = open_video(p)
        try:
            return reader.get_batch([int(index)]).data[0]
        finally:
            getattr(reader, "close", lambda: None)()
    except Exception as e:  # noqa: BLE001 - any decoder failure is shown, not raised
        st.warning(f"Cannot read frame {index} of {p}: {e}")
        return None


VIDEO_EXT = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")


def is_video(path: str | None) -> bool:
    """True for a video file name or an existing frame folder."""
    return bool(path) and (Path(path).suffix.lower() in VIDEO_EXT or Path(path).is_dir())


def artefact_map(store: Store, run_id: int, sample_pk: int) -> dict[str, str]:
    """Artefacts of one sample: name -> path."""
    return {a["name"]: a["path"] for a in store.artefacts(run_id, sample_pk)}


def first_artefact(arts: dict[str, str], names: tuple[str, ...]) -> str | None:
    """The path of the first artefact whose name is in `names` (or starts with one of them)."""
    for n in names:
        if n in arts:
            return arts[n]
    for n in names:
        for k, v in arts.items():
            if k.startswith(n):
                return v
    return None


def label_buttons(store: Store, run_id: int, *, event_id: int | None = None, sample_pk: int | None = None,
                  key: str = "", name: str = "") -> None:
    """Three buttons (true anomaly / false alarm / unsure) that store a label on an event or a sample."""
    target = f"event {event_id}" if event_id is not None else f"sample {name or sample_pk}"
    cols = st.columns(len(LABELS) + 1)
    for col, lab in zip(cols, LABELS):
        if col.button(LABEL_TEXT[lab], key=f"lab_{key}_{event_id}_{sample_pk}_{lab}"):
            store.add_label(run_id, lab, event_id=event_id, sample_pk=sample_pk,
                            by=st.session_state.get("reviewer", ""))
            st.session_state["last_label"] = f"{target}: {LABEL_TEXT[lab]}"
            st.success(f"Labelled {target} as {LABEL_TEXT[lab]}.")
    mine = [d for d in store.labels(run_id) if (event_id is not None and d["event_id"] == event_id)
            or (sample_pk is not None and d["sample_pk"] == sample_pk)]
    cols[-1].caption(f"{target}: " + (LABEL_TEXT[mine[0]["label"]] if mine else "not labelled yet"))


def pixel_map(maps: dict[str, tuple[str, np.ndarray]]) -> np.ndarray | None:
    """The first pixel (H, W) map of a sample, preferring one named anomaly/change."""
    pix = {n: a for n, (k, a) in maps.items() if k == "pixel"}
    for n in ("anomaly", "change", "heatmap"):
        if n in pix:
            return pix[n]
    return next(iter(pix.values()), None)


def overlay_picture(image: np.ndarray | None, amap: np.ndarray | None) -> np.ndarray | None:
    """The map over the image (resized to it), the colourised map alone, or None."""
    from oddeye.core.viz import colorize, overlay

    if amap is None:
        return None
    if image is None:
        return colorize(amap)
    return overlay(image, amap)


INLINE_PNG_PIXELS = 512 * 512  # larger pictures go as JPEG


def picture_uri(image: np.ndarray) -> str:
    """An (H, W[, 3|4]) RGB(A) picture as a data: URI (PNG, JPEG when large)."""
    import cv2

    a = np.asarray(image)
    if a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 3:
        a = cv2.cvtColor(a, cv2.COLOR_RGBA2BGRA if a.shape[2] == 4 else cv2.COLOR_RGB2BGR)
    big = a.shape[0] * a.shape[1] > INLINE_PNG_PIXELS and (a.ndim == 2 or a.shape[2] == 3)
    ok, buf = cv2.imencode(".jpg" if big else ".png", a, [cv2.IMWRITE_JPEG_QUALITY, 90] if big else [])
    if not ok:
        raise ValueError(f"cannot encode a picture of shape {a.shape}")
    return f"data:image/{'jpeg' if big else 'png'};base64,{base64.b64encode(buf.tobytes()).decode()}"


def show_image(image: np.ndarray, caption: str = "", target: Any = st) -> None:
    """Draw a picture inline in the page (a data: URI), never as a file under /media (which no password covers)."""
    target.image(picture_uri(image), caption=caption or None, width="stretch")


def draw_boxes(image: np.ndarray, boxes: list[list[float]]) -> np.ndarray:
    """The image (H, W[, 3]) as RGB with red rectangles drawn on it."""
    import cv2

    from oddeye.core.imageio import convert

    img = convert(image, "rgb").copy()
    for x1, y1, x2, y2 in boxes:
        cv2.rectangle(img, (int(x1), int(y1)), (int(x2), int(y2)), (255, 0, 0), 2)
    return img


def fmt_metrics(metrics: dict[str, Any]) -> str:
    """Metrics as `k=v` text for tables."""
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in (metrics or {}).items())
