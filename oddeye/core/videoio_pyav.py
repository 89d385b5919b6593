"""PyAV readers: video files (the fallback when decord fails) and live streams (URLs, webcams)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from oddeye.core.errors import EmptyDataError, InputError
from oddeye.core.frames import Frames, VideoReader, _empty

STREAM_RE = re.compile(r"^(rtsp|rtsps|rtmp|http|https|udp|tcp|srt)://", re.I)


def is_stream(source: str | int | Path) -> bool:
    """True for webcam indices, /dev/video* devices and network URLs."""
    return isinstance(source, int) or bool(STREAM_RE.match(str(source))) or str(source).startswith("/dev/video")


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
