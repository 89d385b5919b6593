"""Score videos with an exported video-prediction head: frames in runs through the graph (the last `lead` frames of a
run carried into the next), raw scores smoothed over time and turned into z-scores: `oddeye score video`'s numbers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from oddeye.core.errors import EmptyDataError, ModelError
from oddeye.runtime.manifest import input_spec, read_export
from oddeye.runtime.session import Session


def smooth_nearest(x: np.ndarray, sigma: float, truncate: float = 4.0) -> np.ndarray:
    """Gaussian smoothing of a 1-D series with repeated ends (= scipy.ndimage.gaussian_filter1d, mode 'nearest')."""
    if sigma <= 0 or len(x) == 0:
        return x
    r = int(truncate * sigma + 0.5)
    t = np.arange(-r, r + 1, dtype=np.float64)
    w = np.exp(-0.5 * (t / sigma) ** 2)
    return np.convolve(np.pad(x, r, mode="edge"), w / w.sum(), mode="valid")


@dataclass
class VideoScores:
    """One video's scores: z-scores (T,) (smoothed, calibrated), raw frame scores (T,), error maps (T, S, S) or
    None, and the error map of the frame with the highest raw score."""

    z: np.ndarray
    raw: np.ndarray
    maps: np.ndarray | None
    peak_map: np.ndarray


class VideoModel:
    """An exported video-prediction head: `score_frames(frame batches)` -> VideoScores."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        self.dir, self.doc = read_export(path)
        if self.doc.get("kind") != "video":
            raise ModelError(f"{self.dir} holds a '{self.doc.get('head')}' export, not a video one")
        self.session = Session(self.dir, self.doc, threads)
        self.size = int(input_spec(self.doc)["shape"][1])
        self.stream = self.doc["stream"]
        self.lead = int(self.stream["lead"])
        self.threshold: float = float(self.doc["threshold"])
        self.batch_size = int(self.doc.get("batch_size", 128))

    def score_frames(self, batches: Iterable[np.ndarray], keep_maps: bool = False) -> VideoScores:
        """Scores of one video given as consecutive batches of gray frames (b, S, S) uint8."""
        carry: np.ndarray | None = None
        raw, maps = [], []
        peak: tuple[float, np.ndarray | None] = (-np.inf, None)
        for batch in batches:
            x = batch if carry is None else np.concatenate([carry, batch])
            if len(x) > self.lead:
                out = self.session.run(frames=x)
                s, m = out["frame_score"], out["error_map"]
                raw.append(s)
                k = int(np.argmax(s))
                if s[k] > peak[0]:
                    peak = (float(s[k]), m[k])
                if keep_maps:
                    maps.append(m)
                carry = x[-self.lead:]
            else:  # too few frames yet to score one: keep them all
                carry = x
        if not raw:
            n = 0 if carry is None else len(carry)
            raise EmptyDataError(f"the video has {n} frames; the model needs more than past x stride = {self.lead}")
        p = np.concatenate(raw).astype(np.float64)
        p = np.concatenate([np.full(self.lead, p[0]), p])
        z = (smooth_nearest(p, float(self.stream["smooth_sigma"])) - self.stream["score_mean"]) / self.stream["score_std"]
        m = None
        if keep_maps:
            m = np.concatenate(maps)
            m = np.concatenate([np.repeat(m[:1], self.lead, 0), m])
        return VideoScores(z, p, m, peak[1])

    def score_video(self, source: Any, keep_maps: bool = False) -> VideoScores:
        """Scores of a video file or frame folder, read as oddeye reads it (oddeye.core.videoio, gray, S x S)."""
        from oddeye.core.videoio import open_video

        reader = open_video(source, size=(self.size, self.size), gray=True)
        try:
            return self.score_frames((f.data for f in reader.iter_batches(self.batch_size)), keep_maps)
        finally:
            reader.close()
