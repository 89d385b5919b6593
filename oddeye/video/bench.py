"""Decoding speed of decord vs PyAV through oddeye.core.videoio on generated 240p and 720p videos."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from oddeye.core.videoio import open_video

RESOLUTIONS = {"240p": (426, 240), "720p": (1280, 720)}


def make_test_video(path: Path, size: tuple[int, int], n_frames: int = 300, fps: int = 30, gop: int = 30,
                    seed: int = 0) -> Path:
    """Write an H.264 mp4 (w, h) of moving shapes over a textured background with PyAV; keyframe every `gop`."""
    import av

    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    bg = ((np.sin(xx / 17.0) + np.cos(yy / 11.0)) * 40 + 110).astype(np.uint8)
    noise = rng.integers(0, 20, (8, h, w), dtype=np.uint8)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps, options={"preset": "veryfast"})
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.codec_context.gop_size = gop
        for i in range(n_frames):
            f = bg + noise[i % 8]
            for k in range(4):
                x = int((i * (3 + k) + k * w / 4) % (w - w // 10))
                y = int(h / 5 * (k + 0.5))
                f[y: y + h // 10, x: x + w // 10] = 230 - 40 * k
            for p in s.encode(av.VideoFrame.from_ndarray(np.dstack([f, f, f]), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def _time(fn: Callable[[], int]) -> float:
    t0 = time.perf_counter()
    n = fn()
    return n / max(time.perf_counter() - t0, 1e-9)


def bench_file(path: Path, n_random: int = 100, seed: int = 0) -> dict[str, float]:
    """frames/s for each backend: sequential, batched random (one get_batch) and frame-by-frame random access."""
    out: dict[str, float] = {}
    for backend in ("decord", "pyav"):
        r = open_video(path, backend=backend)
        n = len(r)
        idx = np.random.default_rng(seed).choice(n, size=min(n_random, n), replace=False)
        out[f"{backend}_sequential_fps"] = _time(lambda: sum(len(b) for b in r.iter_batches(32)))
        out[f"{backend}_random_batch_fps"] = _time(lambda: len(r.get_batch(idx)))
        out[f"{backend}_random_each_fps"] = _time(lambda: sum(len(r.get_batch([int(i)])) for i in idx))
        r.close()
    for k in ("sequential", "random_batch", "random_each"):
        out[f"ratio_{k}"] = out[f"decord_{k}_fps"] / max(out[f"pyav_{k}_fps"], 1e-9)
    return {k: round(v, 2) for k, v in out.items()}


def run_decode_bench(n_frames: int = 300, n_random: int = 100,
                     log: Callable[[str], Any] = print) -> dict[str, Any]:
    """Make 240p and 720p test videos in a temp dir and measure both backends; returns the figures."""
    doc: dict[str, Any] = {"n_frames": n_frames, "n_random": n_random}
    with tempfile.TemporaryDirectory(prefix="oddeye-decode-") as tmp:
        for name, size in RESOLUTIONS.items():
            log(f"writing {name} test video ({size[0]}x{size[1]}, {n_frames} frames, keyframe every 30)")
            p = make_test_video(Path(tmp) / f"{name}.mp4", size, n_frames)
            figs = bench_file(p, n_random)
            for k, v in figs.items():
                log(f"  {name} {k}: {v}")
            doc.update({f"{name}_{k}": v for k, v in figs.items()})
    doc["decord_vs_pyav_random_720p"] = doc["720p_ratio_random_each"]
    return doc
