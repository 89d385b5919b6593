"""Offline perception: background subtraction + optical flow -> tracked moving objects with attributes and words."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import cv2
import numpy as np

from oddeye.core.errors import InputError
from oddeye.video.rules.config import PerceptionConfig
from oddeye.video.rules.tracking import Tracker
from oddeye.video.rules.zones import ZoneMap

# attributes of one object that rules may constrain (numbers) -- see ObjectObs
OBJECT_ATTRIBUTES = ("speed", "track_speed", "area", "height", "width", "aspect", "appearance")
FRAME_ATTRIBUTES = ("count",)


@dataclass
class ObjectObs:
    """One moving object in one frame: box in px (x1, y1, x2, y2), size, speed (px/frame), direction, zone."""

    frame: int
    track: int
    box: tuple[float, float, float, float]
    area: float
    height: float
    width: float
    aspect: float  # height / width
    speed: float  # px/frame: flow inside the blob (or the track when flow is off)
    track_speed: float  # px/frame of the tracked centre
    vx: float
    vy: float
    direction: str
    zone: str
    age: int = 1
    appearance: float = math.nan  # distance of its crop to the nearest normal crop (NaN: not measured)
    nearest: int = -1  # that normal crop's number in the appearance index (-1: none)

    @property
    def kind(self) -> str:
        """Shape kind: 'tall' (height/width > 1.6), 'wide' (< 0.8) or 'compact'."""
        return "tall" if self.aspect > 1.6 else ("wide" if self.aspect < 0.8 else "compact")

    def value(self, attribute: str) -> float:
        """The number of a rule attribute ("speed", "area", ...)."""
        return float(getattr(self, attribute))

    def sentence(self, frame_height: int) -> str:
        """A short description: 'a tall object moves slowly left along the lower left walkway'."""
        shape = self.kind
        rel = self.height / max(frame_height, 1)
        size = "large " if rel > 0.35 else ("small " if rel < 0.08 else "")
        pct = 100.0 * self.speed / max(frame_height, 1)
        if self.direction == "still" or pct < 0.2:
            return f"a {size}{shape} object stands still in the {self.zone}"
        how = "slowly" if pct < 1.0 else ("quickly" if pct < 2.5 else "very fast")
        return f"a {size}{shape} object moves {how} {self.direction} along the {self.zone}"


@dataclass
class FrameObs:
    """What perception saw in one frame: its objects and their count."""

    index: int
    time: float
    objects: list[ObjectObs] = field(default_factory=list)
    motion: float = 0.0  # share of foreground pixels
    video: int = 0  # which input video it came from (fitting on several)

    @property
    def count(self) -> int:
        """Number of moving objects."""
        return len(self.objects)

    def value(self, attribute: str) -> float:
        """The number of a frame-level rule attribute ("count")."""
        return float(getattr(self, attribute))

    def description(self, frame_height: int) -> str:
        """All objects as sentences, e.g. 'two objects: ...; ...' ('nothing moves' when empty)."""
        if not self.objects:
            return "nothing moves"
        head = "one object" if self.count == 1 else f"{self.count} objects"
        return head + ": " + "; ".join(o.sentence(frame_height) for o in self.objects)


def to_gray(frame: np.ndarray) -> np.ndarray:
    """A uint8 frame (H, W) or (H, W, 3|4) as grey (H, W)."""
    if frame.ndim == 2:
        return frame
    if frame.ndim == 3 and frame.shape[2] == 1:
        return frame[..., 0]
    if frame.ndim == 3 and frame.shape[2] in (3, 4):
        return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY if frame.shape[2] == 3 else cv2.COLOR_RGBA2GRAY)
    raise InputError(f"a frame must be (H, W) or (H, W, 3), got shape {frame.shape}")


def shrunk_shape(shape: tuple[int, ...], height: int) -> tuple[int, int]:
    """(h, w) of a frame of `shape` (H, W[, C]) resized down to `height` rows keeping the aspect (never up)."""
    h, w = int(shape[0]), int(shape[1])
    if h <= height:
        return h, w
    f = height / h
    return int(height), max(8, round(w * f))


def _direction(vx: float, vy: float, still: float) -> str:
    """'left', 'right', 'up', 'down' or 'still' from a velocity in px/frame (image y grows downwards)."""
    if math.hypot(vx, vy) < still:
        return "still"
    if abs(vx) >= abs(vy):
        return "right" if vx > 0 else "left"
    return "down" if vy > 0 else "up"


class Perceiver:
    """Turns grey frames into FrameObs: foreground blobs, optical-flow speed, tracks and zones."""

    def __init__(self, params: PerceptionConfig | None = None, zones: ZoneMap | None = None) -> None:
        """Build from params (defaults) and an optional fitted ZoneMap."""
        self.params = params or PerceptionConfig()
        self.zones = zones or ZoneMap()
        self.background: np.ndarray | None = None  # (h, w) float32 at processing scale
        self.tracker = Tracker()
        self._bg: np.ndarray | None = None
        self._mog: Any = None
        self._prev_flow: np.ndarray | None = None
        self._dis: Any = None
        self.frame_size: tuple[int, int] = (0, 0)  # (w, h) of input frames
        self.prev_gray: np.ndarray | None = None  # full-resolution frames kept for re-checks
        self.gray: np.ndarray | None = None

    # -- background ---------------------------------------------------------------------------------
    def shrink(self, gray: np.ndarray, height: int) -> np.ndarray:
        """Resize (H, W) down to `height` rows keeping the aspect (area interpolation; never upscales)."""
        shape = shrunk_shape(gray.shape, height)
        if shape == gray.shape:
            return gray
        return cv2.resize(gray, shape[::-1], interpolation=cv2.INTER_AREA)

    def fit_background(self, frames: Iterable[np.ndarray]) -> np.ndarray:
        """Median background (h, w) at processing scale from normal frames (H, W[, 3]); EmptyDataError if none."""
        smalls = [self.shrink(to_gray(f), self.params.proc_height) for f in frames]
        if not smalls:
            from oddeye.core.errors import EmptyDataError

            raise EmptyDataError("no frames to learn the background from", "give normal footage with frames")
        shapes = {s.shape for s in smalls}
        if len(shapes) > 1:
            raise InputError(f"normal footage mixes frame sizes {sorted(shapes)}", "use one camera per model")
        self.background = np.median(np.stack(smalls), axis=0).astype(np.float32)
        return self.background

    def reset(self) -> None:
        """Start a new video: fresh tracker, flow history and adapted background."""
        self.tracker.reset()
        self._prev_flow = None
        self.prev_gray = self.gray = None
        self._bg = None if self.background is None else self.background.copy()
        self._mog = None

    def scene_similarity(self, frame: np.ndarray) -> float:
        """Correlation in [-1, 1] between the edges of `frame` and of the learned background (low: camera moved)."""
        if self.background is None:
            return 1.0
        small = self.shrink(to_gray(frame), self.params.proc_height).astype(np.float32)
        if small.shape != self.background.shape:
            return -1.0
        a = cv2.Laplacian(cv2.GaussianBlur(small, (5, 5), 0), cv2.CV_32F).ravel()
        b = cv2.Laplacian(cv2.GaussianBlur(self.background, (5, 5), 0), cv2.CV_32F).ravel()
        a, b = np.abs(a) - np.abs(a).mean(), np.abs(b) - np.abs(b).mean()
        return float((a @ b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-9))

    def _foreground(self, small: np.ndarray) -> np.ndarray:
        """Binary foreground mask (h, w) uint8 of a processing-scale grey frame."""
        p = self.params
        if p.background == "mog2" or self.background is None:
            if self._mog is None:
                self._mog = cv2.createBackgroundSubtractorMOG2(history=300, varThreshold=16, detectShadows=False)
                if self.background is not None:
                    self._mog.apply(self.background.astype(np.uint8), learningRate=1.0)
            fg = self._mog.apply(small)
        else:
            if self._bg is None:
                self._bg = self.background.copy()
            if self._bg.shape != small.shape:
                raise InputError(f"frames are {small.shape[::-1]} at processing scale but the model learned "
                                 f"{self._bg.shape[::-1]}", "score footage of the camera and size the model was fit on")
            diff = cv2.absdiff(small, self._bg.astype(np.uint8))
            _, fg = cv2.threshold(diff, p.diff_threshold, 255, cv2.THRESH_BINARY)
            if p.bg_rate > 0:
                cv2.accumulateWeighted(small.astype(np.float32), self._bg, p.bg_rate, mask=cv2.bitwise_not(fg))
        fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
        if p.close_px > 1:
            fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, np.ones((p.close_px, p.close_px), np.uint8))
        return fg

    def _flow(self, gray: np.ndarray, roi: tuple[float, float, float, float] | None) -> np.ndarray | None:
        """Optical flow (h', w', 2) in px/frame at flow scale between the previous and this frame, or None.

        roi: (x1, y1, x2, y2) as shares of the frame; flow is computed only there (zero elsewhere) to save time.
        """
        p = self.params
        if p.flow == "none":
            return None
        cur = self.shrink(gray, p.flow_height)
        prev, self._prev_flow = self._prev_flow, cur
        if prev is None or prev.shape != cur.shape or roi is None:
            return None
        fh, fw = cur.shape
        pad = 6
        x1, y1 = max(int(roi[0] * fw) - pad, 0), max(int(roi[1] * fh) - pad, 0)
        x2, y2 = min(int(roi[2] * fw + 1) + pad, fw), min(int(roi[3] * fh + 1) + pad, fh)
        a, b = prev[y1:y2, x1:x2], cur[y1:y2, x1:x2]
        if p.flow == "dis":
            if self._dis is None:
                self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
            part = self._dis.calc(np.ascontiguousarray(a), np.ascontiguousarray(b), None)  # DIS refuses views
        else:
            part = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 2, 9, 2, 5, 1.1, 0)
        flow = np.zeros((fh, fw, 2), np.float32)
        flow[y1:y2, x1:x2] = part
        return flow

    # -- one frame ----------------------------------------------------------------------------------
    def step(self, frame: np.ndarray, index: int = 0, time: float = 0.0) -> FrameObs:
        """Perceive one frame (H, W[, 3]) uint8 -> FrameObs with tracked objects (px units of the input)."""
        p = self.params
        gray = to_gray(frame)
        h, w = gray.shape
        self.frame_size = (w, h)
        self.prev_gray, self.gray = self.gray, gray
        small = self.shrink(gray, p.proc_height)
        sy, sx = h / small.shape[0], w / small.shape[1]
        fg = self._foreground(small)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
        keep = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] * sx * sy >= p.min_area * h * w]
        roi = None
        if keep:
            st = stats[keep]
            sh, sw = fg.shape
            roi = (st[:, 0].min() / sw, st[:, 1].min() / sh, (st[:, 0] + st[:, 2]).max() / sw,
                   (st[:, 1] + st[:, 3]).max() / sh)
        flow = self._flow(gray, roi)
        boxes = np.array([[stats[i, 0] * sx, stats[i, 1] * sy, (stats[i, 0] + stats[i, 2]) * sx,
                           (stats[i, 1] + stats[i, 3]) * sy] for i in keep]).reshape(-1, 4)
        tracks = self.tracker.update(boxes)
        fx = fy = 0.0
        if flow is not None:
            fy, fx = flow.shape[0] / small.shape[0], flow.shape[1] / small.shape[1]
        objs = []
        for i, box, tr in zip(keep, boxes, tracks):
            x, y, bw, bh, area = (int(v) for v in stats[i])
            vx, vy, speed = tr.vx, tr.vy, math.hypot(tr.vx, tr.vy)
            if flow is not None:
                blob = labels[y:y + bh, x:x + bw] == i
                ys, xs = np.nonzero(blob)
                fxy = flow[np.minimum(((ys + y) * fy).astype(np.int32), flow.shape[0] - 1),
                           np.minimum(((xs + x) * fx).astype(np.int32), flow.shape[1] - 1)]
                fxy *= h / flow.shape[0]  # px/frame at full resolution
                mag = np.sqrt(fxy[:, 0] ** 2 + fxy[:, 1] ** 2)
                k = (3 * len(mag)) // 4
                speed = float(np.partition(mag, k)[k])
                vx, vy = (float(v) for v in fxy.mean(axis=0))
            tr.history = (tr.history + [speed])[-self.tracker.history:]
            cx, foot = (box[0] + box[2]) / 2, box[3]
            bw_px, bh_px = box[2] - box[0], box[3] - box[1]
            objs.append(ObjectObs(
                frame=index, track=tr.id, box=tuple(round(float(v), 1) for v in box), area=float(area * sx * sy),
                height=float(bh_px), width=float(bw_px), aspect=float(bh_px / max(bw_px, 1e-6)), speed=float(speed),
                track_speed=float(math.hypot(tr.vx, tr.vy)), vx=float(vx), vy=float(vy),
                direction=_direction(vx, vy, 0.002 * h), zone=self.zones.name(cx, foot), age=tr.age))
        return FrameObs(index=index, time=time, objects=objs, motion=float(np.count_nonzero(fg)) / fg.size)

    def run(self, frames: Iterable[np.ndarray], start: int = 0, fps: float = 25.0) -> Iterator[FrameObs]:
        """Perceive a sequence of frames (one video) from a fresh state."""
        self.reset()
        for k, f in enumerate(frames):
            yield self.step(f, start + k, (start + k) / fps)


def recheck_speed(prev: np.ndarray | None, cur: np.ndarray, box: tuple[float, float, float, float],
                  pad: int = 6) -> float | None:
    """Robust reasoning: re-measure an object's speed (px/frame) with full-resolution flow on its box crop.

    prev, cur: consecutive grey frames (H, W); returns the 75th percentile of the moving pixels' flow, or None.
    """
    if prev is None or prev.shape != cur.shape:
        return None
    h, w = cur.shape
    x1, y1 = max(int(box[0]) - pad, 0), max(int(box[1]) - pad, 0)
    x2, y2 = min(int(box[2]) + pad, w), min(int(box[3]) + pad, h)
    if x2 - x1 < 8 or y2 - y1 < 8:
        return None
    a, b = prev[y1:y2, x1:x2], cur[y1:y2, x1:x2]
    flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 9, 3, 5, 1.1, 0)
    mag = np.hypot(flow[..., 0], flow[..., 1])
    moving = cv2.absdiff(a, b) > 8
    vals = mag[moving] if np.count_nonzero(moving) >= 8 else mag.ravel()
    return float(np.percentile(vals, 75))
