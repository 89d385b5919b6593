"""A reference run: the frames of a patrol route recorded without anomalies, their descriptors and poses/times."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from oddeye.core.errors import EmptyDataError, InputError, ModelError, require_file
from oddeye.core.imageio import write_image
from oddeye.retrieval.index import PatchIndex

FRAMES_DIR = "frames"
INDEX_DIR = "descriptors"
META_FILE = "reference.json"
TIME_COLS = ("time", "t", "timestamp", "seconds")
POSE_COLS = ("x", "y", "z", "yaw")


def read_poses(path: str | Path, n_frames: int | None = None) -> dict[str, np.ndarray]:
    """Read a poses/timestamps CSV with a header (frame, time|t|timestamp, x, y[, z][, yaw]) -> column arrays.

    Without a `frame` column rows are frames in order and their count must equal `n_frames` (if given).
    """
    p = require_file(path, "poses CSV")
    with p.open(newline="") as f:
        reader = csv.DictReader(f)
        cols = [c.strip().lower() for c in (reader.fieldnames or [])]
        rows = [{k.strip().lower(): v for k, v in r.items() if k} for r in reader]
    known = [c for c in cols if c == "frame" or c in TIME_COLS or c in POSE_COLS]
    if not known:
        raise InputError(f"{p}: no known column in header {cols}",
                         "use a header like 'frame,time,x,y,yaw' (frame and time optional, x,y for poses)")
    if not rows:
        raise EmptyDataError(f"poses CSV {p} has a header but no rows")
    out: dict[str, np.ndarray] = {}
    try:
        for c in known:
            out[c] = np.array([float(r[c]) for r in rows], dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise InputError(f"{p}: a value in column {c!r} is not a number ({e})") from None
    if "frame" not in out and n_frames is not None and len(rows) != n_frames:
        raise InputError(f"{p} has {len(rows)} rows but the video has {n_frames} frames",
                         "add a 'frame' column, or give one row per frame")
    return out


def lookup_poses(table: dict[str, np.ndarray] | None, indices: np.ndarray,
                 times: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Times (T,) and poses (T, P) or None of frames `indices`, from a read_poses() table (frames it lacks: NaN)."""
    if table is None:
        return times.astype(np.float64), None
    rows = np.arange(len(indices)) if "frame" not in table else None
    if rows is None:
        pos = {int(f): i for i, f in enumerate(table["frame"])}
        rows = np.array([pos.get(int(i), -1) for i in indices])

    def col(name: str) -> np.ndarray:
        v = np.full(len(indices), np.nan)
        ok = (rows >= 0) & (rows < len(table[name]))
        v[ok] = table[name][rows[ok]]
        return v

    tcol = next((c for c in TIME_COLS if c in table), None)
    t = col(tcol) if tcol else times.astype(np.float64)
    pcols = [c for c in POSE_COLS if c in table]
    poses = np.stack([col(c) for c in pcols], axis=1) if pcols else None
    return t, poses


def frame_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(w, h) scaled so the longest side is at most `max_side` (even numbers), aspect kept."""
    if not max_side or max(width, height) <= max_side:
        return width, height
    s = max_side / max(width, height)
    return max(2, int(round(width * s / 2)) * 2), max(2, int(round(height * s / 2)) * 2)


class ReferenceRun:
    """Reference frames (read from their source on demand), global descriptors in a cosine PatchIndex, times, poses."""

    def __init__(self, source: str, indices: np.ndarray, times: np.ndarray, poses: np.ndarray | None,
                 index: PatchIndex, size: tuple[int, int], center: np.ndarray,
                 meta: dict[str, Any] | None = None) -> None:
        if len(indices) == 0 or len(index) == 0:
            raise EmptyDataError(f"reference run {source} holds no frames", "record a reference route first")
        self.source = str(source)
        self.indices = np.asarray(indices, np.int64)
        self.times = np.asarray(times, np.float64)
        self.poses = None if poses is None else np.asarray(poses, np.float64)
        self.index = index
        self.size = (int(size[0]), int(size[1]))  # (w, h) of every frame
        self.center = np.asarray(center, np.float32)  # (D,) mean reference descriptor, removed before matching
        self.meta = dict(meta or {})
        self._reader = None

    def describe(self, descriptors: np.ndarray) -> np.ndarray:
        """Centre raw global descriptors (B, D) on the reference mean and L2-normalise them (B, D) float32."""
        d = np.asarray(descriptors, np.float32) - self.center
        return d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-8)

    def __len__(self) -> int:
        return len(self.indices)

    @classmethod
    def ingest(cls, source: str | Path, extractor: Any, poses: str | Path | None = None, stride: int = 1,
               max_side: int | None = 640, batch_size: int = 16, progress: bool = True) -> ReferenceRun:
        """Read a route (video file or frame folder), describe every `stride`-th frame; empty -> EmptyDataError.

        A local source is kept as an absolute path (the dashboard reads reference frames from it).
        """
        from oddeye.core.videoio import open_video

        local = Path(str(source)).expanduser()
        source = str(local.resolve()) if local.exists() else str(source)

        if stride < 1:
            raise InputError(f"stride must be >= 1, got {stride}")
        probe = open_video(source)
        n = probe.n_frames
        if n is None:
            raise InputError(f"reference {source} is a live stream", "record the reference route to a file first")
        if not n:
            raise EmptyDataError(f"reference {source} has no frames", "pass a video or a folder with frame images")
        size = frame_size(probe.width, probe.height, max_side)
        probe.close()
        reader = open_video(source, size=size)
        descs, idx, times = [], [], []
        with tqdm(total=(n + stride - 1) // stride, desc="reference frames", unit="frame", leave=False,
                  disable=not progress) as bar:
            for fr in reader.iter_batches(batch_size, step=stride):
                descs.append(extractor.global_descriptor(fr.data))
                idx.append(fr.indices)
                times.append(fr.times)
                bar.update(len(fr))
        reader.close()
        if not descs:
            raise EmptyDataError(f"no frame of reference {source} could be decoded", "check the file plays")
        d = np.concatenate(descs)
        indices, t = np.concatenate(idx), np.concatenate(times)
        table = read_poses(poses, n) if poses is not None else None
        t, pose_arr = lookup_poses(table, indices, t)
        center = d.mean(axis=0) if len(d) > 1 else np.zeros(d.shape[1], np.float32)
        dc = d - center
        dc /= np.maximum(np.linalg.norm(dc, axis=1, keepdims=True), 1e-8)
        index = PatchIndex.build(dc.astype(np.float32), kind="flat", metric="cosine", device="cpu")
        meta = {"extractor": extractor.config(), "source_frames": int(n), "stride": int(stride),
                "poses_file": str(Path(poses).expanduser().resolve()) if poses else None}
        return cls(str(source), indices, t, pose_arr, index, size, center, meta)

    def frames(self, ids: np.ndarray | list[int]) -> np.ndarray:
        """Reference frames at positions `ids` (0..len-1) as uint8 (B, H, W, 3)."""
        from oddeye.core.videoio import open_video

        if self._reader is None:
            self._reader = open_video(self.source, size=self.size)
        return self._reader.get_batch(self.indices[np.asarray(ids, np.int64)]).data

    def save(self, directory: str | Path) -> Path:
        """Write frames/ (PNG), descriptors/ (PatchIndex) and reference.json under `directory`; return it."""
        d = Path(directory)
        fdir = d / FRAMES_DIR
        fdir.mkdir(parents=True, exist_ok=True)
        own = Path(self.source).resolve() == fdir.resolve()
        if not own:
            for a in tqdm(range(0, len(self), 32), desc="saving reference frames", leave=False):
                ids = np.arange(a, min(len(self), a + 32))
                for i, img in zip(ids, self.frames(ids)):
                    write_image(fdir / f"{i:06d}.png", img)
        self.index.save(d / INDEX_DIR)
        doc = {"n": len(self), "size": list(self.size), "times": self.times.tolist(), "center": self.center.tolist(),
               "poses": None if self.poses is None else self.poses.tolist(),
               "source_indices": self.indices.tolist(), "original_source": self.meta.get("original_source", self.source),
               "meta": self.meta}
        (d / META_FILE).write_text(json.dumps(doc))
        return d

    @classmethod
    def load(cls, directory: str | Path) -> ReferenceRun:
        """Read a reference written by save(); missing parts are a ModelError naming them."""
        d = Path(directory)
        meta_path = d / META_FILE
        if not meta_path.is_file():
            raise ModelError(f"{d} holds no reference run ({META_FILE} missing)", "refit with `oddeye fit patrol`")
        try:
            doc = json.loads(meta_path.read_text())
            n = int(doc["n"])
            poses = None if doc["poses"] is None else np.asarray(doc["poses"], np.float64)
            times, size = np.asarray(doc["times"], np.float64), tuple(doc["size"])
            center = np.asarray(doc["center"], np.float32)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise ModelError(f"{meta_path} is corrupt ({e})", "refit with `oddeye fit patrol`") from None
        index = PatchIndex.load(d / INDEX_DIR, device="cpu")
        if len(index) != n:
            raise ModelError(f"{d}: {len(index)} descriptors for {n} frames", "refit with `oddeye fit patrol`")
        meta = dict(doc.get("meta", {}))
        meta["original_source"] = doc.get("original_source")
        return cls(str(d / FRAMES_DIR), np.arange(n), times, poses, index, size, center, meta)
