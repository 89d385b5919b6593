"""Turning a head's Result into store rows: samples, compressed series and maps, events, artefacts, folders."""

from __future__ import annotations

import os
import warnings
import zlib
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from oddeye.core.types import Result, to_jsonable

SERIES = ("frame_scores", "frame_times", "frame_indices")
REVIEW_SIDE = 256  # pixel maps are kept for review at this size at most (metrics never read them back)
_KIND_BY_EXT = {".png": "image", ".jpg": "image", ".jpeg": "image", ".bmp": "image", ".tif": "image", ".tiff": "image",
                ".npy": "array", ".npz": "array", ".mp4": "video", ".avi": "video", ".mkv": "video",
                ".ply": "pointcloud", ".pcd": "pointcloud", ".xyz": "pointcloud", ".json": "json", ".html": "html"}


def pack(a: np.ndarray) -> tuple[bytes, str]:
    """Compress an array into (bytes, dtype tag); an evenly spaced 1-D series (frame numbers, times) costs 0 bytes."""
    a = np.ascontiguousarray(a)
    if a.ndim == 1 and len(a) > 2 and a.dtype.kind in "iuf":
        start, step = a[0].item(), (a[1] - a[0]).item()
        even = start + step * np.arange(len(a), dtype=np.float64)
        if np.array_equal(even.astype(a.dtype), a) or (
                a.dtype.kind == "f" and np.max(np.abs(even - a)) <= 1e-9 * max(1.0, float(np.max(np.abs(a))))):
            return b"", f"arange:{a.dtype.str}:{start!r}:{step!r}"
    return zlib.compress(a.tobytes(), 1), a.dtype.str


def unpack(data: bytes, dtype: str, shape: Iterable[int] | int) -> np.ndarray:
    """Inverse of pack: the array of `shape` stored in `data`."""
    if dtype.startswith("arange:"):
        _, dt, start, step = dtype.split(":")
        n = int(shape if isinstance(shape, int) else np.prod(list(shape)))
        return (float(start) + float(step) * np.arange(n, dtype=np.float64)).astype(np.dtype(dt))
    return np.frombuffer(zlib.decompress(data), dtype=np.dtype(dtype)).reshape(shape)


def review_map(a: np.ndarray, side: int = REVIEW_SIDE) -> np.ndarray:
    """A pixel map (H, W) as the dashboard keeps it: at most `side` px on the long side, float16 when it fits."""
    import cv2

    a = np.asarray(a, dtype=np.float32)
    scale = side / max(a.shape)
    if scale < 1:
        a = cv2.resize(a, (max(1, round(a.shape[1] * scale)), max(1, round(a.shape[0] * scale))),
                       interpolation=cv2.INTER_AREA)
    finite = a[np.isfinite(a)]
    return a.astype(np.float16) if finite.size and np.abs(finite).max() < 6e4 else a


def _artefact_kind(path: Path) -> str:
    return "folder" if path.is_dir() else _KIND_BY_EXT.get(path.suffix.lower(), "file")


def _finite(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None


def _kind_of(head: str, sc: Any) -> str:
    for prefix, kind in (("video", "video"), ("patrol", "patrol_pair"), ("point", "pointcloud"), ("image", "image")):
        if head.lower().startswith(prefix):
            return kind
    if sc.frame_scores is not None:
        return "video"
    kinds = {m.kind for m in sc.maps.values()}
    return "image" if "pixel" in kinds else "pointcloud" if "point" in kinds else "sample"


def file_path(p: Any) -> Path | None:
    """`p` absolute with links followed when it names an existing file or folder now; None for anything else.

    A URL, a webcam index ("0"), a name such as "synth" or an in-memory source is not a file: it gets no path.
    Relative paths are resolved against the working directory of the process that writes (the one that read them).
    """
    if not isinstance(p, (str, os.PathLike)):
        return None
    s = str(p).strip()
    if not s or "://" in s or s.isdigit():
        return None
    try:
        q = Path(s).expanduser()
        return q.resolve() if q.exists() else None
    except (OSError, RuntimeError, ValueError):
        return None


def absolute_text(p: str | Path | None) -> str | None:
    """A run's model/data: existing path(s) (comma-separated) absolute; anything else (a URL, a description) as given."""
    if p is None:
        return None
    parts = [q for q in str(p).split(",") if q]
    found = [file_path(q) for q in parts]
    if parts and all(found):
        return ",".join(str(f) for f in found)
    return str(p)


def _input_path(sc: Any, data: str | None = None) -> str | None:
    """The input file of a score: meta path/source when it is a file, else data itself or data/<sample_id>."""
    p = file_path(sc.meta.get("path") or sc.meta.get("source"))
    d = file_path(data) if p is None and data else None
    if d is not None:
        sid = str(sc.sample_id)
        if d.name == sid or d.stem == sid:
            p = d
        elif d.is_dir() and sid and (d / sid).exists():
            p = (d / sid).resolve()
    return str(p) if p else None


def _artefact_rows(run_id: int, sample_pk: int | None, items: Iterable[tuple[str, Any]]) -> list[dict[str, Any]]:
    """Rows for the artefacts that exist (absolute paths); one that does not is left out with a warning."""
    rows = []
    for name, p in items:
        path = file_path(p)
        if path is None:
            warnings.warn(f"artefact {name!r} is not a file or folder ({p!r}): not recorded in the store", stacklevel=3)
            continue
        rows.append(dict(run_id=run_id, sample_pk=sample_pk, name=str(name), kind=_artefact_kind(path), path=str(path)))
    return rows


def sample_rows(result: Result, run_id: int, data: str | None) -> list[dict[str, Any]]:
    """One `samples` row per Score: id, kind, input path, label, score, frame range, reason, meta."""
    rows = []
    for sc in result.scores:
        idx = sc.frame_indices if sc.frame_indices is not None else (
            np.arange(len(sc.frame_scores)) if sc.frame_scores is not None else None)
        has_frames = idx is not None and len(idx) > 0
        rows.append(dict(run_id=run_id, sample_id=str(sc.sample_id), kind=str(sc.meta.get("kind") or
                                                                                _kind_of(result.head, sc)),
                         path=_input_path(sc, data), label=sc.label, score=_finite(sc.score), reason=sc.reason or "",
                         frame_start=int(idx[0]) if has_frames else None, frame_end=int(idx[-1]) if has_frames else None,
                         n_frames=None if sc.frame_scores is None else len(sc.frame_scores),
                         meta=to_jsonable({k: v for k, v in sc.meta.items() if k != "kind"})))
    return rows


def attached_rows(result: Result, run_id: int, pks: list[int], inputs: list[str | None]
                  ) -> tuple[list[dict], list[dict], list[dict], list[dict], list[dict]]:
    """(series, maps, events, artefacts, folders) rows of a run whose samples got ids `pks`."""
    series, maps, arts = [], [], []
    for sc, pk, inp in zip(result.scores, pks, inputs):
        for name in SERIES:
            v = getattr(sc, name)
            if v is not None:
                blob, dtype = pack(np.asarray(v))
                series.append(dict(sample_pk=pk, name=name, dtype=dtype, length=len(v), data=blob))
        for name, m in sc.maps.items():
            arr = review_map(m.values) if m.kind == "pixel" else m.values
            blob, dtype = pack(arr)
            maps.append(dict(sample_pk=pk, name=name, kind=m.kind, shape=list(arr.shape), dtype=dtype, data=blob))
        arts += _artefact_rows(run_id, pk, list(sc.artefacts.items()) + ([("input", inp)] if inp else []))
    arts += _artefact_rows(run_id, None, (result.meta.get("artefacts") or {}).items())
    # the dashboard may read only where recorded files are: a folder artefact itself, else a file's folder
    folders = {str(Path(a["path"]) if a["kind"] == "folder" else Path(a["path"]).parent) for a in arts}
    by_id = {str(sc.sample_id): pk for sc, pk in zip(result.scores, pks)}
    events = [dict(run_id=run_id, sample_pk=by_id.get(str(e.sample_id)), sample_id=str(e.sample_id),
                   score=_finite(e.score), start=_finite(e.start), end=_finite(e.end), start_frame=e.start_frame,
                   end_frame=e.end_frame, reason=e.reason or "", meta=to_jsonable(e.meta),
                   **dict(zip(("x1", "y1", "x2", "y2"), [float(b) for b in e.box] if e.box else [None] * 4)))
              for e in result.events]
    return series, maps, events, arts, [dict(run_id=run_id, path=f) for f in sorted(folders)]
