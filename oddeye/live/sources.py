"""Readers of live sources: a video feed thread (stream, webcam, file) that reconnects with capped exponential
backoff and hands chunks to a bounded newest-first queue, and a poller of watched folders.

    feed = VideoFeed(spec, start_index=0)
    feed.start()
    chunk = feed.queue.get(timeout=0.5)     # Chunk (T, H, W, 3) uint8 with stream frame numbers, or None
    feed.stop(); feed.join()
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from oddeye.core.errors import InputError
from oddeye.live.config import SourceSpec

BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 10.0


@dataclass
class Chunk:
    """Frames of a video source: data (T, H, W, 3) uint8, stream frame numbers (T,), stream times (T,) s, the
    wall-clock time (time.time()) the last frame arrived, its number in the feed, and whether it is the first after
    a (re)connect or a file loop (its frames do not follow the previous chunk's)."""

    data: np.ndarray
    indices: np.ndarray
    times: np.ndarray
    arrived: float
    seq: int = 0
    after_gap: bool = False

    def __len__(self) -> int:
        return len(self.indices)


class NewestQueue:
    """A bounded queue of chunks that keeps the newest: put() never blocks; when full, the oldest chunk is dropped
    and its frames are counted in `dropped_frames`. Memory stays at most `maxsize` chunks."""

    def __init__(self, maxsize: int = 2) -> None:
        if maxsize < 1:
            raise InputError(f"queue size must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self.dropped_frames = 0
        self._items: deque[Chunk] = deque()
        self._cond = threading.Condition()
        self._closed = False

    def put(self, chunk: Chunk) -> None:
        """Add a chunk; if the queue is full the oldest one is dropped (counted)."""
        with self._cond:
            if len(self._items) >= self.maxsize:
                self.dropped_frames += len(self._items.popleft())
            self._items.append(chunk)
            self._cond.notify()

    def get(self, timeout: float | None = None) -> Chunk | None:
        """The oldest chunk kept, waiting up to `timeout` s; None if there is none (yet, or any more)."""
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout)
            return self._items.popleft() if self._items else None

    def close(self) -> None:
        """The producer has finished: get() returns what is left, then None at once."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def finished(self) -> bool:
        """True when the producer has finished and every chunk was taken."""
        with self._cond:
            return self._closed and not self._items

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


class VideoFeed:
    """Reads a stream, webcam or video file in a thread into chunks of about `spec.chunk_s` seconds.

    The frame numbers are the stream's clock: frames since the run opened (from `start_index`), continuing across
    reconnects and file loops. A stream that ends or fails is reopened after 0.5 s, 1 s, 2 s ... up to 10 s; every
    loss counts one reconnect, and what happened is queued in `notes` as (what, detail) for the store's log.
    A file plays at its own frame rate (as a camera would deliver it); `spec.fps` subsamples the frames scored.
    """

    def __init__(self, spec: SourceSpec, start_index: int = 0, start_time: float = 0.0, queue_size: int = 2) -> None:
        self.spec = spec
        self.queue = NewestQueue(queue_size)
        self.next_index = int(start_index)
        self.clock = float(start_time)  # stream time of the next frame, s
        self.frames_in = 0  # frames received by this feed (kept or subsampled away)
        self.reconnects = 0
        self.state = "connecting"
        self.fps: float | None = None
        self.notes: deque[tuple[str, str]] = deque(maxlen=1000)
        self.error: str | None = None  # why a file source could not be read at all
        self._got = 0  # frames read from the current connection
        self._seq = 0  # number of the next chunk
        self._gap = True  # the next chunk does not follow the previous one
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"feed-{spec.name}", daemon=True)
        self._buf: list[np.ndarray] = []
        self._ids: list[int] = []
        self._times: list[float] = []
        self._chunk_started = 0.0
        self._next_keep = float(start_time)

    def start(self) -> VideoFeed:
        """Start reading in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the reader to stop; it flushes the frames it holds as a last chunk and closes the queue."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the reader thread; True if it has ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- the reader thread ------------------------------------------------------------------------------------
    def _run(self) -> None:
        delay, attempts, down_since, capped = BACKOFF_START_S, 0, None, False
        try:
            while not self._stop.is_set():
                try:
                    reader = self._open()
                except Exception as e:  # noqa: BLE001 - any failure to open is a failed attempt
                    why = e.message if isinstance(e, InputError) else f"{type(e).__name__}: {str(e)[:200]}"
                    if self.spec.kind == "file":
                        self.error, self.state = why, "error"
                        self.notes.append(("error", why))
                        return
                    attempts += 1
                    down_since = down_since or time.monotonic()
                    if delay < BACKOFF_MAX_S:
                        self.notes.append(("retry", f"attempt {attempts} failed ({why}); next in {delay:g} s"))
                    elif not capped:  # one line for a source that stays down, not one every 10 s
                        self.notes.append(("retry", f"still down ({why}); retrying every {BACKOFF_MAX_S:g} s"))
                        capped = True
                    self._stop.wait(delay)
                    delay = min(delay * 2, BACKOFF_MAX_S)
                    continue
                if down_since is not None:
                    self.notes.append(("connected", f"after {attempts} attempt(s), down "
                                                    f"{time.monotonic() - down_since:.1f} s"))
                attempts, down_since, capped = 0, None, False
                self.state = "running"
                try:
                    self._pump(reader)
                except Exception as e:  # noqa: BLE001 - a decoder failing mid-stream is a lost stream, not the end
                    self.notes.append(("error", f"decoding failed: {type(e).__name__}: {str(e)[:200]}"))
                finally:
                    reader.close()
                got = self._got
                self._flush()  # a chunk never spans a reconnect or a file loop
                self._gap = True
                if got:
                    delay = BACKOFF_START_S
                if self._stop.is_set():
                    break
                if self.spec.kind == "file":
                    if self.spec.loop and got:
                        continue
                    self.state = "ended"
                    break
                self.reconnects += 1
                self.state = "reconnecting"
                down_since = time.monotonic()
                self.notes.append(("reconnect", f"stream lost after {got} frame(s); reconnect {self.reconnects}"))
                self._stop.wait(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
        finally:
            self._flush()
            if self.state not in ("error", "ended"):
                self.state = "stopped"
            self.queue.close()

    def _open(self) -> Any:
        """Open the source: PyAV for streams and webcams, the house decoder for files (native size, RGB)."""
        from oddeye.core.videoio import StreamReader, open_video

        src = self.spec.source
        if self.spec.kind == "file":
            return open_video(src)
        return StreamReader(int(src) if src.isdigit() else src)

    def _frames(self, reader: Any) -> Iterator[np.ndarray]:
        """The frames of one connection (or one pass over a file) as RGB (H, W, 3) uint8."""
        if self.spec.kind == "file":
            for batch in reader.iter_batches(8):
                yield from batch.data
        else:
            for batch in reader.iter_batches(1):
                yield batch.data[0]

    def _pump(self, reader: Any) -> None:
        """Read frames until the source ends or stop(), counting them in `_got`."""
        fps = float(reader.fps or 25.0)
        self.fps, self._got = fps, 0
        t0 = time.monotonic()
        for frame in self._frames(reader):
            if self._stop.is_set():
                break
            if self.spec.kind == "file":  # play in real time, as a camera would deliver it
                wait = t0 + self._got / fps - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    break
            self._got += 1
            self._add(frame, fps)

    def _add(self, frame: np.ndarray, fps: float) -> None:
        """Number one frame on the stream clock, keep it if the subsampling wants it, flush a full chunk."""
        i, t = self.next_index, self.clock
        self.next_index += 1
        self.clock = round(self.clock + 1.0 / fps, 6)
        self.frames_in += 1
        if self.spec.fps is not None:
            if t + 1e-9 < self._next_keep:
                return
            self._next_keep = max(self._next_keep + 1.0 / self.spec.fps, t)
        if not self._buf:
            self._chunk_started = time.monotonic()
        self._buf.append(frame)
        self._ids.append(i)
        self._times.append(t)
        if time.monotonic() - self._chunk_started >= self.spec.chunk_s or len(self._buf) >= 4 * self.spec.chunk_s * fps:
            self._flush()

    def _flush(self) -> None:
        """Put the frames held as one chunk on the queue."""
        if not self._buf:
            return
        shapes = {f.shape for f in self._buf}
        if len(shapes) > 1:  # the stream changed size mid-chunk (a camera reconfigured): keep the newest size
            last = self._buf[-1].shape
            keep = [k for k, f in enumerate(self._buf) if f.shape == last]
            self._buf = [self._buf[k] for k in keep]
            self._ids = [self._ids[k] for k in keep]
            self._times = [self._times[k] for k in keep]
        self.queue.put(Chunk(np.stack(self._buf), np.array(self._ids, np.int64), np.array(self._times, np.float64),
                             time.time(), self._seq, self._gap))
        self._buf, self._ids, self._times = [], [], []
        self._seq, self._gap = self._seq + 1, False


class FolderPoller:
    """The items of a watched folder that are ready: matching the glob (files, or folders such as patrol runs), not
    hidden, sorted by modification time then name, and unchanged (size and mtime) since the previous look."""

    def __init__(self, folder: str | Path, glob: str = "*") -> None:
        self.folder = Path(folder)
        self.glob = glob
        self._seen: dict[str, tuple[int, int, int]] = {}

    def item(self, path: Path) -> str:
        """The ledger name of an item: its path relative to the folder."""
        return path.relative_to(self.folder).as_posix()

    def ready(self) -> list[Path]:
        """One look at the folder: the items whose signature did not change since the last look, oldest first."""
        found: dict[str, tuple[Path, tuple[int, int, int]]] = {}
        for p in self.folder.glob(self.glob):
            if any(part.startswith(".") for part in p.relative_to(self.folder).parts):
                continue
            sig = _signature(p)
            if sig is not None:
                found[self.item(p)] = (p, sig)
        ready = [(sig[2], name, p) for name, (p, sig) in found.items() if self._seen.get(name) == sig]
        self._seen = {name: sig for name, (_, sig) in found.items()}
        return [p for _, _, p in sorted(ready)]

    def forget(self, path: Path) -> None:
        """Stop tracking an item (it was scored or recorded)."""
        self._seen.pop(self.item(path), None)


def _signature(p: Path) -> tuple[int, int, int] | None:
    """(files, bytes, newest mtime ns) of a file or a folder's files; None if it vanished or is not readable."""
    try:
        if p.is_file():
            st = p.stat()
            return 1, st.st_size, st.st_mtime_ns
        if p.is_dir():
            files = [q.stat() for q in p.rglob("*") if q.is_file()]
            return len(files), sum(s.st_size for s in files), max((s.st_mtime_ns for s in files),
                                                                 default=p.stat().st_mtime_ns)
    except OSError:
        return None
    return None
