"""One reader for video: files (decord, PyAV fallback), streams (PyAV) and frame folders.

    r = open_video("clip.mp4", size=(64, 64), gray=True)
    len(r), r.fps, r.width, r.height
    f = r.get_batch([0, 10, 20])        # Frames(data (3,64,64) uint8, indices (3,), times (3,) s)
    for f in r.iter_batches(64): ...    # sequential batches

Base classes live in oddeye.core.frames, the PyAV readers in oddeye.core.videoio_pyav; import from here.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

from oddeye.core.errors import EmptyDataError, InputError, first_line, require_file
from oddeye.core.imageio import IMAGE_SUFFIXES, list_images
from oddeye.core.frames import Frames, TruncatedVideoWarning, VideoReader, _empty, _finish
from oddeye.core.videoio_pyav import STREAM_RE, PyAVFileReader, StreamReader, _header_frames, is_stream

DEFAULT_FOLDER_FPS = 25.0
__all__ = ["Frames", "VideoReader", "FolderReader", "DecordReader", "PyAVFileReader", "StreamReader",
           "TruncatedVideoWarning", "STREAM_RE", "open_video", "is_stream", "clip_windows", "iter_windows"]


class FolderReader(VideoReader):
    """Frames stored as image files in one folder (natural sort), read with OpenCV in threads."""

    def __init__(self, folder: str | Path, size: tuple[int, int] | None = None, gray: bool = False,
                 fps: float = DEFAULT_FOLDER_FPS, threads: int = 2) -> None:
        d = Path(folder).expanduser()
        self.source, self.gray, self.size, self.fps = str(d), gray, size, float(fps)
        self.files = [p for p in list_images(d) if p.suffix.lower() in IMAGE_SUFFIXES]
        if not self.files:
            raise EmptyDataError(f"no frames in folder {d}", f"put frames there as one of {', '.join(IMAGE_SUFFIXES)}")
        self.native = _check_sizes(self.files, d)
        self.width, self.height = size if size is not None else self.native
        self._reduce = _jpeg_reduction(self.native, size)
        self._pool = ThreadPoolExecutor(max(1, threads)) if threads > 1 else None

    @property
    def n_frames(self) -> int:
        """Number of frame files."""
        return len(self.files)

    def _read(self, i: int) -> np.ndarray:
        p = self.files[i]
        flag = cv2.IMREAD_GRAYSCALE if self.gray else cv2.IMREAD_COLOR
        if self._reduce > 1 and p.suffix.lower() in (".jpg", ".jpeg"):
            flag = {(2, True): cv2.IMREAD_REDUCED_GRAYSCALE_2, (4, True): cv2.IMREAD_REDUCED_GRAYSCALE_4,
                    (2, False): cv2.IMREAD_REDUCED_COLOR_2, (4, False): cv2.IMREAD_REDUCED_COLOR_4}[
                (self._reduce, self.gray)]
        img = cv2.imread(str(p), flag)
        if img is None:
            img = _read_fallback(p, self.gray)
        elif img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        return _finish(img, self.size, self.gray)

    def get_batch(self, indices: Sequence[int] | np.ndarray) -> Frames:
        """Read the frame files at `indices` -> Frames (B, H, W[, 3]); times = index / fps."""
        idx = self._check_indices(indices)
        if idx.size == 0:
            return _empty(self.height, self.width, self.gray)
        imgs = list(self._pool.map(self._read, idx.tolist())) if self._pool and idx.size > 4 else \
            [self._read(int(i)) for i in idx]
        return Frames(np.stack(imgs), idx, idx / self.fps)

    def close(self) -> None:
        """Stop the reader threads."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None


def _read_fallback(p: Path, gray: bool) -> np.ndarray:
    """Read a frame OpenCV could not (16-bit tif, odd formats) via oddeye.core.imageio, else InputError."""
    from oddeye.core.imageio import read_image

    return read_image(p, "gray" if gray else "rgb")


def _check_sizes(files: list[Path], folder: Path) -> tuple[int, int]:
    """Native (w, h) of the frames; a frame of another size is an InputError naming both files."""
    from PIL import Image, UnidentifiedImageError

    first: tuple[int, int] | None = None
    for p in files:
        try:
            with Image.open(p) as im:
                wh = im.size
        except (UnidentifiedImageError, OSError) as e:
            raise InputError(f"cannot read frame {p}: {e}", "remove or re-export the broken frame") from None
        if first is None:
            first, first_path = wh, p
        elif wh != first:
            raise InputError(f"mixed frame sizes in {folder}: {first_path.name} is {first[0]}x{first[1]} but "
                             f"{p.name} is {wh[0]}x{wh[1]}", "all frames of a video must have one size")
    assert first is not None
    return first


def _jpeg_reduction(native: tuple[int, int], size: tuple[int, int] | None) -> int:
    """Largest JPEG DCT reduction (1, 2 or 4) that still leaves at least the requested size."""
    if size is None:
        return 1
    for r in (4, 2):
        if native[0] // r >= size[0] and native[1] // r >= size[1]:
            return r
    return 1


class DecordReader(VideoReader):
    """A video file read with decord: fast random access and batched reads."""

    def __init__(self, path: Path, size: tuple[int, int] | None = None, gray: bool = False) -> None:
        import decord

        self.source, self.gray, self.size, self.path = str(path), gray, size, path
        kw = {"width": size[0], "height": size[1]} if size is not None else {}
        try:
            self._vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=0, **kw)
            n = len(self._vr)
            first = self._vr[0].shape if n else None
        except (decord.DECORDError, RuntimeError, IndexError) as e:
            raise InputError(f"cannot decode video {path} with decord: {first_line(e)}") from None
        if not n or first is None:
            raise EmptyDataError(f"video {path} has no frames")
        self._n = n
        self.fps = float(self._vr.get_avg_fps() or 25.0)
        header = _header_frames(path)
        if header > n:  # decord counts the frames present; the header knows how many there should be
            self._n = header
            self._warn_truncated(n)
        self.height, self.width = int(first[0]), int(first[1])
        self._fallback: PyAVFileReader | None = None

    @property
    def n_frames(self) -> int:
        """Number of frames the container reports (fewer if the file turns out to be truncated)."""
        return self._n if self.truncated_at is None else self.truncated_at

    def get_batch(self, indices: Sequence[int] | np.ndarray) -> Frames:
        """Decode the frames at `indices` with decord -> Frames; a decode failure falls back to PyAV."""
        import decord

        idx = self._check_indices(indices)
        if idx.size == 0:
            return _empty(self.height, self.width, self.gray)
        if self._fallback is None:
            try:
                uniq, inv = np.unique(idx, return_inverse=True)  # decord decodes sorted indices in one pass
                data = self._vr.get_batch(uniq.tolist()).asnumpy()[inv]
                times = self._vr.get_frame_timestamp(uniq.tolist())[:, 0].astype(np.float64)[inv]
                if self.gray:
                    data = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in data])
                return Frames(data, idx, times)
            except (decord.DECORDError, RuntimeError):
                self._fallback = PyAVFileReader(self.path, self.size, self.gray, expect=self._n)
        f = self._fallback.get_batch(idx)
        if self._fallback.truncated_at is not None and self.truncated_at is None:
            self.truncated_at = self._fallback.truncated_at
        return f

    def close(self) -> None:
        """Drop the decord reader."""
        self._vr = None
        if self._fallback is not None:
            self._fallback.close()


def open_video(source: str | int | Path, size: tuple[int, int] | None = None, gray: bool = False,
               backend: str = "auto", fps: float | None = None) -> VideoReader:
    """Open a video file, frame folder, stream URL or webcam index; `size` is (w, h). Errors name the input."""
    if size is not None:
        if len(size) != 2 or min(size) <= 0:
            raise InputError(f"size must be (width, height) > 0, got {size}")
        size = (int(size[0]), int(size[1]))
    if backend not in ("auto", "decord", "pyav", "folder"):
        raise InputError(f"unknown video backend {backend!r}", "use auto, decord, pyav or folder")
    if isinstance(source, str) and source.isdigit():
        source = int(source)
    if is_stream(source):
        return StreamReader(source, size, gray)
    p = Path(source).expanduser()
    if p.is_dir():
        return FolderReader(p, size, gray, fps or DEFAULT_FOLDER_FPS)
    p = require_file(p, "video")
    if p.suffix.lower() in IMAGE_SUFFIXES:
        raise InputError(f"{p} is a single image, not a video", "pass the folder that holds the frames")
    if backend in ("auto", "decord"):
        try:
            import decord  # noqa: F401
        except ImportError:
            if backend == "decord":
                raise InputError("backend 'decord' requested but decord is not installed", "use --backend pyav")
        else:
            try:
                return DecordReader(p, size, gray)
            except InputError:
                if backend == "decord":
                    raise
    return PyAVFileReader(p, size, gray)


def clip_windows(n_frames: int, past: int, step: int = 1, stride: int = 1) -> np.ndarray:
    """Index windows (N, past + 1) of `past` frames then the target: rows [t-past*step, ..., t-step, t]."""
    if past < 1:
        raise InputError(f"past must be >= 1, got {past}")
    first = past * step
    targets = np.arange(first, n_frames, stride)
    return targets[:, None] + (np.arange(-past, 1) * step)[None, :]


def iter_windows(reader: VideoReader, past: int, batch_size: int = 64) -> Iterator[tuple[np.ndarray, Frames]]:
    """Slide over `reader` once: yield (clips (B, past+1, H, W[, 3]) uint8, target Frames) for every target."""
    buf: np.ndarray | None = None
    for f in reader.iter_batches(batch_size):
        buf = f.data if buf is None else np.concatenate([buf[-past:], f.data])
        if buf.shape[0] <= past:
            continue
        n_new = min(len(f), buf.shape[0] - past)
        starts = np.arange(buf.shape[0] - n_new - past, buf.shape[0] - past)
        clips = np.stack([buf[s: s + past + 1] for s in starts])
        tgt = Frames(f.data[-n_new:], f.indices[-n_new:], f.times[-n_new:])
        yield clips, tgt
