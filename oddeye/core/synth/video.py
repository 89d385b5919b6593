"""Walkers on a walkway with an injected abnormal object; frames and video files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from oddeye.core.errors import InputError
from oddeye.core.synth._common import _check_size, _ellipse, _paste, _smooth

VIDEO_ANOMALIES = ("fast", "big", "wrong_place")


@dataclass
class SynthVideo:
    """frames (T, H, W) uint8 gray, labels (T,) int 0/1, masks (T, H, W) bool of the abnormal object, fps."""

    frames: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    fps: float



def _bounce(p0: float, v: float, t: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Positions p0 + v t reflected into [lo, hi] (a triangle wave)."""
    span = max(hi - lo, 1e-6)
    u = np.mod(p0 - lo + v * t, 2 * span)
    return lo + np.where(u <= span, u, 2 * span - u)


# ---------------------------------------------------------------------------------------------- (a) video

def _walker_sprite(rng: np.random.Generator, h: int, w: int, base: float) -> tuple[np.ndarray, np.ndarray]:
    """A small upright textured figure: body ellipse, slightly brighter head."""
    m = _ellipse(h, w)
    vals = base + rng.normal(0, 7, (h, w))
    vals[: max(h // 4, 2)] += 25
    return vals.astype(np.float32), m


def make_video(seed: int = 0, n_frames: int = 120, size: tuple[int, int] = (120, 160), n_walkers: int = 4,
               anomaly: str | None = "fast", anomaly_span: tuple[int, int] = (60, 100)) -> SynthVideo:
    """Walkers crossing a walkway on a static textured scene; `anomaly` is injected during anomaly_span.

    "fast": a walker-size figure 5x faster; "big": a cart-size object; "wrong_place": a walker on the grass.
    Returns frames (T, H, W) uint8, labels (T,) (1 where the abnormal object is in view), masks (T, H, W).
    """
    H, W = _check_size(size)
    if n_frames < 1:
        raise InputError(f"n_frames must be >= 1, got {n_frames}")
    if anomaly is not None and anomaly not in VIDEO_ANOMALIES:
        raise InputError(f"anomaly must be one of {VIDEO_ANOMALIES} or None, got {anomaly!r}")
    a0, a1 = int(anomaly_span[0]), int(anomaly_span[1])
    if anomaly is not None and not (0 <= a0 < a1 <= n_frames):
        raise InputError(f"anomaly_span must satisfy 0 <= start < end <= n_frames={n_frames}, got {anomaly_span}")
    rng = np.random.default_rng([seed, 0])
    band0, band1 = int(0.35 * H), int(0.8 * H)
    bg = 80 + 30 * _smooth(rng, (H, W), 12) + rng.normal(0, 6, (H, W)).astype(np.float32)
    walk = 160 + 18 * _smooth(rng, (H, W), 6)
    walk[:, ::12] -= 14  # paving joints
    bg[band0:band1] = walk[band0:band1]
    hw, ww = max(8, round(0.13 * H)), max(4, round(0.05 * H))
    t = np.arange(n_frames, dtype=np.float64)
    frames = np.repeat(bg[None].astype(np.float32), n_frames, axis=0)
    for _ in range(max(int(n_walkers), 0)):
        vals, m = _walker_sprite(rng, hw, ww, rng.uniform(35, 75))
        y0 = rng.uniform(band0, band1 - hw)
        x0, v = rng.uniform(0, W), rng.uniform(0.8, 1.2) * rng.choice([-1, 1])
        xs = np.mod(x0 + v * t, W + ww) - ww
        ys = y0 + 0.8 * np.sin(0.5 * t + rng.uniform(0, 6.3))
        for i in range(n_frames):
            _paste(frames[i], vals, m, int(round(ys[i])), int(round(xs[i])))
    masks = np.zeros((n_frames, H, W), dtype=bool)
    if anomaly is not None:
        arng = np.random.default_rng([seed, 2])
        if anomaly == "big":
            h, w = int(0.32 * H), int(0.3 * W)
            vals = (55 + 25 * (np.indices((h, w))[1] % 8 < 4) + arng.normal(0, 5, (h, w))).astype(np.float32)
            m, speed = np.ones((h, w), dtype=bool), 1.0
            y = arng.uniform(band0, max(band1 - h, band0 + 1))
        else:
            h, w = hw, ww
            vals, m = _walker_sprite(arng, h, w, arng.uniform(30, 60))
            speed = 5.0 if anomaly == "fast" else 1.0
            y = arng.uniform(band0, band1 - h) if anomaly == "fast" else arng.uniform(1, max(band0 - h - 2, 2))
        ts = np.arange(a1 - a0, dtype=np.float64)
        xs = _bounce(arng.uniform(0, W - w), speed * arng.choice([-1, 1]), ts, 0, W - w)
        for k, i in enumerate(range(a0, a1)):
            _paste(frames[i], vals, m, int(round(y)), int(round(xs[k])), masks[i])
    frames += np.random.default_rng([seed, 1]).normal(0, 2.0, frames.shape).astype(np.float32)
    out = np.clip(frames, 0, 255).astype(np.uint8)
    labels = masks.any(axis=(1, 2)).astype(np.int64)
    return SynthVideo(frames=out, labels=labels, masks=masks, fps=25.0)


def write_frames(frames: np.ndarray, directory: str | Path, ext: str = ".png") -> Path:
    """Write frames (T, H, W[, 3]) uint8 as 000000<ext>, 000001<ext>, ... into `directory`; returns it."""
    from oddeye.core.imageio import write_image

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    if not ext.startswith("."):
        ext = "." + ext
    for i, f in enumerate(frames):
        write_image(d / f"{i:06d}{ext}", f)
    return d


def write_video_file(frames: np.ndarray, path: str | Path, fps: float = 25.0) -> Path:
    """Encode frames (T, H, W[, 3]) uint8 into an mp4 (h264, else mpeg4; yuv420p) with PyAV; returns the path."""
    import av
    from fractions import Fraction

    frames = np.asarray(frames)
    if frames.ndim not in (3, 4) or frames.shape[0] == 0:
        raise InputError(f"frames must be (T, H, W) or (T, H, W, 3) with T >= 1, got {frames.shape}")
    h, w = frames.shape[1] - frames.shape[1] % 2, frames.shape[2] - frames.shape[2] % 2
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    fmt = "gray" if frames.ndim == 3 else "rgb24"
    with av.open(str(p), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "18", "preset": "veryfast"}
        for f in frames:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f[:h, :w]), format=fmt).reformat(format="yuv420p")
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return p


# ---------------------------------------------------------------------------------------------- (b) images
