"""One reader for video: files (decord, PyAV fallback), streams (PyAV) and frame folders.

    r = open_video("clip.mp4", size=(64, 64), gray=True)
    len(r), r.fps, r.width, r.height
    f = r.get_batch([0, 10, 20])        # Frames(data (3,64,64) uint8, indices (3,), times (3,) s)
    for f in r.iter_batches(64): ...    # sequential batches
"""

from __future__ import annotations

import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import cv2
import numpy as np

from oddeye.core.errors import EmptyDataError, InputError, require_file
from oddeye.core.imageio import IMAGE_SUFFIXES, list_images

STREAM_RE = re.compile(r"^(rtsp|rtsps|rtmp|http|https|udp|tcp|srt)://", re.I)
DEFAULT_FOLDER_FPS = 25.0


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
            raise InputError(f"cannot decode video {path} with decord: {str(e).splitlines()[0][:200]}") from None
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


def _header_frames(path: Path) -> int:
    """Frame count written in the container header (0 if unknown or unreadable)."""
    import av

    try:
        with av.open(str(path)) as c:
            return int(c.streams.video[0].frames or 0) if c.streams.video else 0
    except (av.FFmpegError, OSError):
        return 0


def _av_open(source: str | int, options: dict[str, str] | None = None) -> Any:
    import av

    fmt = None
    if isinstance(source, int):
        source, fmt = f"/dev/video{source}", "v4l2"
    elif str(source).startswith("/dev/video"):
        fmt = "v4l2"
    try:
        return av.open(str(source), format=fmt, options=options or {}, timeout=10.0)
    except (av.FFmpegError, OSError, ValueError) as e:
        if is_stream(source):
            raise InputError(f"cannot open stream {source}: {e}",
                             "check the URL or device (is the camera or server reachable?)") from None
        raise InputError(f"cannot decode video {source}: not a readable video (corrupt, cut before its index, "
                         f"or not a video at all): {e}", "re-export or re-copy the file") from None


def _to_array(frame: Any, size: tuple[int, int] | None, gray: bool) -> np.ndarray:
    """A PyAV VideoFrame as uint8 gray (H, W) or RGB (H, W, 3), resized by swscale when asked."""
    kw = {"width": size[0], "height": size[1]} if size is not None else {}
    return frame.to_ndarray(format="gray" if gray else "rgb24", **kw)


class PyAVFileReader(VideoReader):
    """A video file read with PyAV (the fallback when decord fails): seek + sequential decode."""

    def __init__(self, path: Path, size: tuple[int, int] | None = None, gray: bool = False,
                 expect: int | None = None) -> None:
        self.source, self.path, self.size, self.gray = str(path), path, size, gray
        self._c = _av_open(str(path))
        if not self._c.streams.video:
            raise InputError(f"{path} has no video stream")
        st = self._c.streams.video[0]
        st.thread_type = "AUTO"
        self._st = st
        self.fps = float(st.average_rate or st.guessed_rate or 25.0)
        self._tb = float(st.time_base) if st.time_base else 1.0 / self.fps
        self._t0 = float(st.start_time * self._tb) if st.start_time is not None else 0.0
        n = expect or st.frames or 0
        if not n and st.duration:
            n = int(round(st.duration * self._tb * self.fps))
        if not n and self._c.duration:
            n = int(round(self._c.duration / 1e6 * self.fps))
        self._n = int(n)
        self.width, self.height = size if size is not None else (st.codec_context.width, st.codec_context.height)
        self._it: Iterator[Any] | None = None
        self._pos = -1  # index of the last decoded frame
        if self._n == 0:
            self._n = self._count()
            if self._n == 0:
                raise EmptyDataError(f"video {path} has no decodable frames")

    @property
    def n_frames(self) -> int:
        """Number of frames (from the container; fewer if the file turns out to be truncated)."""
        return self._n if self.truncated_at is None else self.truncated_at

    def _count(self) -> int:
        n = sum(1 for _ in self._frames_from(0))
        self._it, self._pos = None, -1
        self._c.seek(0, stream=self._st)
        return n

    def _index_of(self, frame: Any) -> int:
        if frame.pts is None:
            return self._pos + 1
        return int(round((frame.pts * self._tb - self._t0) * self.fps))

    def _frames_from(self, target: int) -> Iterator[Any]:
        """Seek (now) to the keyframe before `target`; return an iterator over the frames from there."""
        import av

        ts = int((max(target, 0) / self.fps + self._t0) / self._tb)
        try:
            self._c.seek(max(ts, 0), stream=self._st, backward=True, any_frame=False)
        except av.FFmpegError:
            self._c.seek(0, stream=self._st)

        def gen() -> Iterator[Any]:
            try:
                yield from self._c.decode(self._st)
            except (av.FFmpegError, EOFError):
                return

        return gen()

    def get_batch(self, indices: Sequence[int] | np.ndarray) -> Frames:
        """Decode the frames at `indices` (sorted internally) -> Frames; frames past a cut are dropped."""
        idx = self._check_indices(indices)
        want = sorted(set(idx.tolist()))
        got: dict[int, tuple[np.ndarray, float]] = {}
        for t in want:
            if t in got:
                continue
            if self._it is None or t <= self._pos or t - self._pos > 48:
                self._it, self._pos = self._frames_from(t), -1
            for frame in self._it:
                i = self._index_of(frame)
                self._pos = i
                if i in want and i not in got:
                    got[i] = (_to_array(frame, self.size, self.gray), float(frame.time or i / self.fps))
                if i >= t:
                    break
            else:
                self._it = None
                if t not in got:
                    self._warn_truncated(max(self._pos + 1, 0))
                    break
        keep = [i for i in idx.tolist() if i in got]
        if not keep:
            return _empty(self.height, self.width, self.gray)
        return Frames(np.stack([got[i][0] for i in keep]), np.array(keep, np.int64),
                      np.array([got[i][1] for i in keep], np.float64))

    def close(self) -> None:
        """Close the container."""
        self._c.close()


class StreamReader(VideoReader):
    """A live stream (rtsp/http URL, webcam index or /dev/videoN) read with PyAV; sequential only."""

    def __init__(self, source: str | int, size: tuple[int, int] | None = None, gray: bool = False) -> None:
        self.source, self.size, self.gray = str(source), size, gray
        opts = {"rtsp_transport": "tcp"} if str(source).lower().startswith("rtsp") else {}
        self._c = _av_open(source, opts)
        if not self._c.streams.video:
            raise InputError(f"stream {source} has no video")
        st = self._c.streams.video[0]
        self._st = st
        self.fps = float(st.average_rate or st.guessed_rate or 25.0)
        self.width, self.height = size if size is not None else (st.codec_context.width, st.codec_context.height)

    @property
    def n_frames(self) -> None:
        """Streams have no length."""
        return None

    def get_batch(self, indices: Sequence[int] | np.ndarray) -> Frames:
        """Random access is not possible on a stream: always an InputError."""
        self._check_indices(indices)
        raise AssertionError("unreachable")

    def iter_batches(self, batch_size: int = 64, start: int = 0, stop: int | None = None,
                     step: int = 1) -> Iterator[Frames]:
        """Yield Frames of up to `batch_size` frames as they arrive, from `start` to `stop` every `step`."""
        import av

        buf: list[np.ndarray] = []
        ids: list[int] = []
        times: list[float] = []
        i = -1
        try:
            for frame in self._c.decode(self._st):
                i += 1
                if stop is not None and i >= stop:
                    break
                if i < start or (i - start) % step:
                    continue
                buf.append(_to_array(frame, self.size, self.gray))
                ids.append(i)
                times.append(float(frame.time if frame.time is not None else i / self.fps))
                if len(buf) == batch_size:
                    yield Frames(np.stack(buf), np.array(ids), np.array(times))
                    buf, ids, times = [], [], []
        except av.FFmpegError as e:
            warnings.warn(f"{self.source}: stream ended with an error after frame {i}: {e}", stacklevel=2)
        if buf:
            yield Frames(np.stack(buf), np.array(ids), np.array(times))

    def close(self) -> None:
        """Close the stream."""
        self._c.close()


def is_stream(source: str | int | Path) -> bool:
    """True for webcam indices, /dev/video* devices and network URLs."""
    return isinstance(source, int) or bool(STREAM_RE.match(str(source))) or str(source).startswith("/dev/video")


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
