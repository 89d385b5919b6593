"""What the rules head accepts as a video: a path (file or frame folder), a VideoReader, or an array (T, H, W[, 3])."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from oddeye.core.errors import EmptyDataError, InputError
from oddeye.core.videoio import VideoReader, is_stream, open_video


@dataclass
class VideoSource:
    """One input video: its name, frame rate, length (None for a stream) and a way to read its frames."""

    name: str
    fps: float
    n_frames: int | None
    reader: VideoReader | None = None
    array: np.ndarray | None = None  # (T, H, W[, 3]) uint8 when the video was given as an array

    @property
    def frame_shape(self) -> tuple[int, int] | None:
        """(H, W) of its frames, or None when the reader does not know it before decoding."""
        if self.array is not None:
            return int(self.array.shape[1]), int(self.array.shape[2])
        assert self.reader is not None
        h, w = int(self.reader.height or 0), int(self.reader.width or 0)
        return (h, w) if h and w else None

    def iter_frames(self, batch_size: int = 64, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, float, np.ndarray]]:
        """Yield (index, time s, frame (H, W) uint8 grey) from `start` to `stop`."""
        if self.array is not None:
            stop = len(self.array) if stop is None else min(stop, len(self.array))
            for i in range(start, stop):
                yield i, i / self.fps, _gray(self.array[i])
            return
        assert self.reader is not None
        for batch in self.reader.iter_batches(batch_size, start=start, stop=stop):
            for i, t, f in zip(batch.indices, batch.times, batch.data):
                yield int(i), float(t), _gray(f)

    def get(self, indices: np.ndarray) -> np.ndarray:
        """Frames at `indices` as (B, H, W) uint8 grey."""
        if self.array is not None:
            return np.stack([_gray(self.array[i]) for i in indices])
        assert self.reader is not None
        return np.stack([_gray(f) for f in self.reader.get_batch(indices).data])

    def close(self) -> None:
        """Release the reader if this source opened it."""
        if self.reader is not None:
            self.reader.close()


def _gray(f: np.ndarray) -> np.ndarray:
    """(H, W[, 3]) uint8 -> (H, W) uint8."""
    from oddeye.video.rules.perception import to_gray

    return to_gray(np.asarray(f))


def as_source(video: Any, name: str | None = None, fps: float = 25.0) -> VideoSource:
    """Wrap a path, VideoReader or uint8 array (T, H, W[, 3]) as a VideoSource; other things are an InputError."""
    if isinstance(video, VideoSource):
        return video
    if isinstance(video, np.ndarray):
        if video.ndim not in (3, 4) or video.dtype != np.uint8:
            raise InputError(f"a video array must be uint8 (T, H, W) or (T, H, W, 3), got {video.dtype} {video.shape}")
        if len(video) == 0:
            raise EmptyDataError(f"video {name or 'array'} has no frames")
        return VideoSource(name or "video", float(fps), len(video), array=video)
    if isinstance(video, VideoReader):
        n = video.n_frames
        return VideoSource(name or Path(str(video.source)).name, float(video.fps or fps), n, reader=video)
    if isinstance(video, (str, Path, int)):
        reader = open_video(video, gray=True)
        n = reader.n_frames
        if n == 0:
            raise EmptyDataError(f"video {video} has no frames", "check the file or folder")
        return VideoSource(name or Path(str(video)).name, float(reader.fps or fps), n, reader=reader)
    raise InputError(f"cannot read a video from {type(video).__name__}",
                     "pass a video file, a frame folder, a VideoReader or a uint8 array (T, H, W)")


def sample_name(video: Any) -> str:
    """The sample id a video that could not be opened is recorded under (as as_source names it)."""
    if isinstance(video, VideoReader):
        return Path(str(video.source)).name
    return Path(str(video)).name if isinstance(video, (str, Path)) else str(video)


def local_path(video: Any) -> str | None:
    """The file or folder behind `video`, when it is one (not an array, a webcam index or a stream URL)."""
    if isinstance(video, Path) or (isinstance(video, str) and not is_stream(video)):
        return str(video)
    return None


def spread_frames(lengths: np.ndarray, k: int) -> list[tuple[int, int]]:
    """k (video, frame) pairs spread evenly over videos of `lengths` (V,)."""
    total = int(lengths.sum())
    flat = np.unique(np.linspace(0, total - 1, max(1, k)).round().astype(int))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    v = np.searchsorted(starts, flat, side="right") - 1
    return [(int(a), int(b - starts[a])) for a, b in zip(v, flat)]


def group_frames(pairs: list[tuple[int, int]]) -> dict[int, list[int]]:
    """{video: [frames]} of (video, frame) pairs."""
    out: dict[int, list[int]] = {}
    for v, i in pairs:
        out.setdefault(v, []).append(i)
    return out
