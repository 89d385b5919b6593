"""DeepPCB in its public layout (template/test pairs + defect boxes) and the seeded random warp for --warp."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from oddeye.core.errors import DataLayoutError, EmptyDataError, InputError, require_dir


@dataclass
class PcbPair:
    """One DeepPCB pair: paths of the template (reference) and test (query) image and the defect boxes (K, 4)."""

    name: str
    template: Path
    test: Path
    boxes: np.ndarray  # (K, 4) float32 x1 y1 x2 y2
    types: np.ndarray  # (K,) int: 1 open, 2 short, 3 mousebite, 4 spur, 5 copper, 6 pin-hole


def _pcb_root(root: Path) -> Path:
    """The folder holding test.txt / trainval.txt: `root` itself or root/PCBData."""
    for cand in (root, root / "PCBData"):
        if (cand / "test.txt").is_file():
            return cand
    raise DataLayoutError(f"{root} does not look like DeepPCB: no test.txt in it or in {root / 'PCBData'}",
                          "point --root at the folder that holds PCBData/ (e.g. ../shared/data/deeppcb)")


def read_boxes(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a DeepPCB annotation (`x1 y1 x2 y2 type` a line, spaces or commas) -> boxes (K, 4), types (K,)."""
    rows = []
    for i, line in enumerate(path.read_text().splitlines()):
        parts = line.replace(",", " ").split()
        if not parts:
            continue
        if len(parts) != 5:
            raise DataLayoutError(f"{path}:{i + 1}: expected 'x1 y1 x2 y2 type', got {line!r}")
        rows.append([float(v) for v in parts])
    a = np.asarray(rows, np.float32).reshape(-1, 5)
    return a[:, :4], a[:, 4].astype(np.int64)


def load_deeppcb(root: str | Path, split: str = "test", limit: int | None = None) -> list[PcbPair]:
    """Pairs of the DeepPCB `split` ('test' or 'trainval') under `root`, in file order, at most `limit`."""
    base = _pcb_root(require_dir(root, "DeepPCB root"))
    if split not in ("test", "trainval"):
        raise InputError(f"unknown DeepPCB split {split!r}", "use 'test' or 'trainval'")
    pairs = []
    for line in (base / f"{split}.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) != 2:
            continue
        img, ann = base / parts[0], base / parts[1]
        stem = img.with_suffix("")
        temp, test = Path(f"{stem}_temp.jpg"), Path(f"{stem}_test.jpg")
        for p in (temp, test, ann):
            if not p.is_file():
                raise DataLayoutError(f"DeepPCB file missing: {p}", f"check that {base} is a complete copy")
        boxes, types = read_boxes(ann)
        pairs.append(PcbPair(stem.name, temp, test, boxes, types))
        if limit is not None and len(pairs) >= limit:
            break
    if not pairs:
        raise EmptyDataError(f"{base / (split + '.txt')} lists no pairs")
    return pairs


def load_templates(root: str | Path, split: str = "trainval") -> list[Path]:
    """The template (defect-free) images of the DeepPCB `split` under `root`, in file order: only the split's list
    is read, never a test image or an annotation (what `eval patrol --auto` searches on)."""
    base = _pcb_root(require_dir(root, "DeepPCB root"))
    if split not in ("test", "trainval"):
        raise InputError(f"unknown DeepPCB split {split!r}", "use 'test' or 'trainval'")
    listing = base / f"{split}.txt"
    if not listing.is_file():
        raise DataLayoutError(f"DeepPCB split list missing: {listing}", f"check that {base} is a complete copy")
    out = []
    for line in listing.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            temp = Path(f"{(base / parts[0]).with_suffix('')}_temp.jpg")
            if not temp.is_file():
                raise DataLayoutError(f"DeepPCB file missing: {temp}", f"check that {base} is a complete copy")
            out.append(temp)
    if not out:
        raise EmptyDataError(f"{listing} lists no pairs")
    return out


def random_homography(rng: np.random.Generator, shape: tuple[int, int], max_rot_deg: float = 5.0,
                      scale: tuple[float, float] = (0.95, 1.05), max_shift: float = 0.05,
                      jitter: float = 0.01) -> np.ndarray:
    """A random homography (3, 3) about the image centre: rotation, scale, translation and corner jitter."""
    h, w = shape[:2]
    a = np.deg2rad(rng.uniform(-max_rot_deg, max_rot_deg))
    s = rng.uniform(*scale)
    tx, ty = rng.uniform(-max_shift, max_shift, 2) * (w, h)
    c, sn = s * np.cos(a), s * np.sin(a)
    A = np.array([[c, -sn, 0], [sn, c, 0], [0, 0, 1.0]])
    C = np.array([[1, 0, w / 2], [0, 1, h / 2], [0, 0, 1.0]])
    T = np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1.0]])
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = src + rng.uniform(-jitter, jitter, (4, 2)).astype(np.float32) * np.float32([w, h])
    P = cv2.getPerspectiveTransform(src, dst).astype(np.float64)  # perspective jitter of the corners
    H = T @ C @ A @ np.linalg.inv(C) @ P
    return H / H[2, 2]


def warp_reference(image: np.ndarray, H: np.ndarray) -> np.ndarray:
    """Warp `image` (H, W[, C]) by homography H, borders replicated (a camera would see more board there)."""
    h, w = image.shape[:2]
    return cv2.warpPerspective(image, H, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
