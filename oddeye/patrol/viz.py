"""Patrol pictures: query | change overlay with boxes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from oddeye.core.imageio import convert, write_image
from oddeye.core.viz import overlay
from oddeye.patrol.change import Change


def change_overlay(query: np.ndarray, change: Change, reference: np.ndarray | None = None,
                   gt_boxes: np.ndarray | None = None) -> np.ndarray:
    """[reference |] query | heatmap overlay with predicted boxes (magenta) and true boxes (green) -> RGB."""
    ov = overlay(query, change.map, vmin=0.0, vmax=max(0.5, float(change.map.max())))
    for b in change.boxes.astype(int):
        cv2.rectangle(ov, (int(b[0]), int(b[1])), (int(b[2]), int(b[3])), (255, 0, 255), 2)
    for b in ([] if gt_boxes is None else np.asarray(gt_boxes).astype(int)):
        cv2.rectangle(ov, (int(b[0]), int(b[1])), (int(b[2]), int(b[3])), (0, 255, 0), 1)
    parts = ([convert(reference, "rgb")] if reference is not None else []) + [convert(query, "rgb"), ov]
    return np.concatenate(parts, axis=1)


def save_change_overlay(path: str | Path, query: np.ndarray, change: Change, reference: np.ndarray | None = None,
                        gt_boxes: np.ndarray | None = None) -> Path:
    """Write change_overlay() as PNG to `path` and return it."""
    return write_image(path, change_overlay(query, change, reference, gt_boxes))
