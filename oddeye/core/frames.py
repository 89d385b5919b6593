"""Decoded-frame batches and the reader base class shared by every video backend."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import cv2
import numpy as np

from oddeye.core.errors import InputError


class TruncatedVideoWarning(UserWarning):
    """A video ended before its header said it would; the frames before the cut are used."""


@dataclass
class Frames:
    """A batch of decoded frames: data (B, H, W[, 3]) uint8, indices (B,) int64, times (B,) seconds."""

    data: np.ndarray
    indices: np.ndarray
    times: np.ndarray

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def to_tensor(self, device: str = "cpu") -> Any:
        """Frames as a float torch tensor in [0, 1], shape (B, C, H, W)."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(self.data))
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
        return x.to(device=device, dtype=torch.float32).div_(255.0)


def _empty(h: int, w: int, gray: bool) -> Frames:
    shape = (0, h, w) if gray else (0, h, w, 3)
    return Frames(np.zeros(shape, np.uint8), np.zeros(0, np.int64), np.zeros(0, np.float64))


def _finish(img: np.ndarray, size: tuple[int, int] | None, gray: bool) -> np.ndarray:
    """Resize an RGB/gray uint8 frame to `size` (w, h) and convert to gray (H, W) or RGB (H, W, 3)."""
    if gray and img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    elif not gray and img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if size is not None and (img.shape[1], img.shape[0]) != tuple(size):
        shrink = size[0] < img.shape[1]
        img = cv2.resize(img, tuple(size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return img


class VideoReader:
    """Base of every reader: len(), fps, width, height (output size), source, get_batch, iter_batches."""

    source: str
    fps: float
    width: int
    height: int
    gray: bool
    size: tuple[int, int] | None
    truncated_at: int | None = None  # first frame index that could not be decoded, if the file is cut

    @property
    def n_frames(self) -> int | None:
        """Number of frames, or None for a live stream."""
        raise TypeError  # overridden

    def __len__(self) -> int:
        n = self.n_frames
        if n is None:
            raise TypeError(f"{self.source} is a live stream and has no length; use iter_batches()")
        return n

    def _check_indices(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = self.n_frames
        if n is None:
            raise InputError(f"{self.source} is a live stream: random access is not possible", "use iter_batches()")
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise InputError(f"frame index out of range for {self.source}: valid 0..{n - 1}, "
                             f"got {int(idx.min())}..{int(idx.max())}")
        return idx

    def get_batch(self, indices: Sequence[int] | np.ndarray) -> Frames:
        """Decode the frames at `indices` -> Frames (B, H, W[, 3]); out-of-range indices are an InputError."""
        raise TypeError  # overridden

    def iter_batches(self, batch_size: int = 64, start: int = 0, stop: int | None = None,
                     step: int = 1) -> Iterator[Frames]:
        """Yield Frames of up to `batch_size` frames from `start` to `stop` (exclusive) every `step` frames."""
        n = len(self)
        stop = n if stop is None else min(stop, n)
        for a in range(start, stop, batch_size * step):
            idx = np.arange(a, min(stop, a + batch_size * step), step)
            if self.truncated_at is not None:
                idx = idx[idx < self.truncated_at]
            if idx.size == 0:
                return
            f = self.get_batch(idx)
            if len(f):
                yield f
            if len(f) < idx.size:  # truncated inside this batch
                return

    def read_all(self) -> Frames:
        """Every frame at once (small videos): Frames (T, H, W[, 3])."""
        parts = list(self.iter_batches(256))
        if not parts:
            return _empty(self.height, self.width, self.gray)
        return Frames(np.concatenate([p.data for p in parts]), np.concatenate([p.indices for p in parts]),
                      np.concatenate([p.times for p in parts]))

    def close(self) -> None:
        """Release the decoder."""

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.source!r}, frames={self.n_frames}, {self.width}x{self.height}, "
                f"fps={self.fps:.3g}, gray={self.gray})")

    def _warn_truncated(self, at: int) -> None:
        self.truncated_at = at
        warnings.warn(f"{self.source}: the video is truncated; decoding stopped at frame {at} "
                      f"({at / self.fps:.2f} s); the {at} frames before it are used", TruncatedVideoWarning,
                      stacklevel=3)
