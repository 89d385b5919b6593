"""Score images with an exported image head (PatchCore or Gaussian): read, resize, run the graph, resize the map
back to each image's size: the same numbers as `oddeye score image`, without PyTorch."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

from oddeye.core.errors import InputError, ModelError
from oddeye.core.imageio import convert, read_image
from oddeye.runtime.manifest import input_spec, read_export
from oddeye.runtime.session import Session


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """A uint8 RGB image (H, W, 3) -> (size, size, 3) as the feature extractor resizes it: OpenCV area averaging
    when the shorter side is longer than `size`, bilinear otherwise."""
    if image.shape[:2] == (size, size):
        return image
    interp = cv2.INTER_AREA if min(image.shape[:2]) > size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)


class ImageModel:
    """An exported image head: `score_arrays(images)` -> (image scores (B,), pixel maps [(H_i, W_i)])."""

    def __init__(self, path: str | Path, threads: int | None = None, streams: int | None = None) -> None:
        """threads: CPU threads in all (default: ODDEYE_THREADS or every core); streams: batches scored at once by
        score_files, threads // streams threads each (default: one per thread, the most images per second; 1 for
        the lowest latency of one batch)."""
        self.dir, self.doc = read_export(path)
        if self.doc.get("kind") != "image":
            raise ModelError(f"{self.dir} holds a '{self.doc.get('head')}' export, not an image one",
                             "score it with the runtime class for its kind (see oddeye.runtime)")
        self.session = Session(self.dir, self.doc, threads, streams)
        spec = input_spec(self.doc)
        self.input_name = spec["name"]
        self.size = int(spec["shape"][1])
        self.threshold: float | None = self.doc.get("threshold")
        self.pixel_threshold: float | None = self.doc.get("pixel_threshold")
        self.batch_size = int(self.doc.get("batch_size", 16))

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Any uint8/uint16/float image (H, W[, C]) -> the graph's input row (S, S, 3) uint8 RGB."""
        a = np.asarray(image)
        if a.ndim not in (2, 3) or a.size == 0:
            raise InputError(f"image of shape {a.shape}; expected (H, W) or (H, W, 1|3|4)")
        return resize_square(convert(a, "rgb"), self.size)

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The graph on a prepared batch (B, S, S, 3) uint8: (image scores (B,), pixel maps (B, S, S))."""
        out = self.session.run(**{self.input_name: batch})
        return out["image_score"].astype(np.float64), out["pixel_map"]

    def score_arrays(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """(image scores (B,), pixel maps [(H_i, W_i)] float32) of images of any size."""
        if len(images) == 0:
            return np.zeros(0), []
        scores, maps = self.run(np.stack([self.prepare(im) for im in images]))
        out = []
        for m, im in zip(maps, images):
            h, w = np.asarray(im).shape[:2]
            out.append(m if (h, w) == m.shape else cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR))
        return scores, out

    def score_files(self, paths: Sequence[str | Path]) -> Iterator[tuple[Path, float, np.ndarray]]:
        """(path, image score, pixel map (H, W)) per image file, in order, in batches of the export's batch size;
        `streams` batches are read, decoded and scored at once (each in its own thread), one batch ahead."""
        chunks = [[Path(p) for p in paths[s:s + self.batch_size]] for s in range(0, len(paths), self.batch_size)]
        ahead = self.session.streams + 1
        with ThreadPoolExecutor(self.session.streams) as pool:
            todo = [pool.submit(self._score_chunk, c) for c in chunks[:ahead]]
            for i, chunk in enumerate(chunks):
                scores, maps = todo[i].result()
                todo[i] = None  # its maps leave memory once yielded
                if i + ahead < len(chunks):
                    todo.append(pool.submit(self._score_chunk, chunks[i + ahead]))
                yield from zip(chunk, scores.tolist(), maps)

    def _score_chunk(self, paths: list[Path]) -> tuple[np.ndarray, list[np.ndarray]]:
        """score_arrays() of the images of `paths`."""
        return self.score_arrays(_read_all(paths))


def _read_all(paths: list[Path]) -> list[np.ndarray]:
    """The images (H, W, 3) uint8 RGB of `paths`."""
    return [read_image(p, "rgb") for p in paths]
