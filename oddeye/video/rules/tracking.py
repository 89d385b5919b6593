"""A small IoU + centroid tracker: links the moving blobs of consecutive frames into tracks."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment


@dataclass
class Track:
    """One tracked object: its id, last box, smoothed velocity (px/frame) and age in frames."""

    id: int
    box: np.ndarray  # (4,) x1, y1, x2, y2
    vx: float = 0.0
    vy: float = 0.0
    age: int = 1
    missed: int = 0
    history: list[float] = field(default_factory=list)  # recent per-frame speeds, newest last


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes a (N, 4) against b (M, 4) -> (N, M)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


class Tracker:
    """Greedy-optimal (Hungarian) assignment on IoU, with a centroid-distance fallback for small fast objects."""

    def __init__(self, iou_min: float = 0.1, max_jump: float = 40.0, max_missed: int = 2,
                 smooth: float = 0.5, history: int = 8) -> None:
        """iou_min: least IoU to link; max_jump: largest centroid move (px) to link without overlap."""
        self.iou_min = iou_min
        self.max_jump = max_jump
        self.max_missed = max_missed
        self.smooth = smooth
        self.history = history
        self.tracks: list[Track] = []
        self._next = 0

    def reset(self) -> None:
        """Forget every track (call between videos)."""
        self.tracks = []
        self._next = 0

    def update(self, boxes: np.ndarray) -> list[Track]:
        """Link boxes (N, 4) of the new frame to tracks; return the track of each box, in order."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        prev = np.array([t.box for t in self.tracks]).reshape(-1, 4)
        cost = np.full((len(prev), len(boxes)), 1e6)
        if len(prev) and len(boxes):
            iou = _iou_matrix(prev, boxes)
            pc = np.stack([(prev[:, 0] + prev[:, 2]) / 2 + [t.vx for t in self.tracks],
                           (prev[:, 1] + prev[:, 3]) / 2 + [t.vy for t in self.tracks]], 1)
            bc = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], 1)
            dist = np.linalg.norm(pc[:, None] - bc[None], axis=2)
            ok = (iou >= self.iou_min) | (dist <= self.max_jump)
            cost = np.where(ok, (1.0 - iou) + dist / max(self.max_jump, 1e-9), 1e6)
        out: list[Track | None] = [None] * len(boxes)
        used: set[int] = set()
        if cost.size:
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols):
                if cost[r, c] >= 1e6:
                    continue
                t = self.tracks[r]
                old_c = (t.box[:2] + t.box[2:]) / 2
                new_c = (boxes[c, :2] + boxes[c, 2:]) / 2
                d = (new_c - old_c) / (t.missed + 1)
                a = self.smooth if t.age > 1 else 1.0
                t.vx = (1 - a) * t.vx + a * float(d[0])
                t.vy = (1 - a) * t.vy + a * float(d[1])
                t.box, t.age, t.missed = boxes[c].copy(), t.age + 1, 0
                out[c] = t
                used.add(r)
        survivors = []
        for i, t in enumerate(self.tracks):
            if i not in used:
                t.missed += 1
                if t.missed > self.max_missed:
                    continue
            survivors.append(t)
        self.tracks = survivors
        for c in range(len(boxes)):
            if out[c] is None:
                t = Track(id=self._next, box=boxes[c].copy())
                self._next += 1
                self.tracks.append(t)
                out[c] = t
        return [t for t in out if t is not None]
