"""Point-cloud anomaly data sets in their public layouts: Real3D-AD, Anomaly-ShapeNet, MVTec 3D-AD."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from oddeye.core.errors import DataLayoutError, require_dir
from oddeye.core.paths import natural_key
from oddeye.pointcloud.io import Cloud, load_cloud

DATASETS = ("real3d-ad", "anomaly-shapenet", "mvtec3d")
_NORMAL_WORDS = ("good", "positive", "template", "prototype", "normal")


@dataclass
class TestItem:
    """A test cloud: its file, optional per-point label file / mask, and its object label (1 = anomalous)."""

    path: Path
    label: int
    gt: Path | None = None
    mask: Path | None = None
    defect: str = ""

    def load(self) -> Cloud:
        """Read the cloud with its point labels (all 0 for a normal cloud without a gt file)."""
        if self.path.suffix.lower() in (".tif", ".tiff"):
            return load_cloud(self.path, mask=self.mask)
        c = load_cloud(self.path, labels=self.gt) if self.gt is not None else load_cloud(self.path)
        if c.labels is None and self.label == 0:
            import numpy as np

            c.labels = np.zeros(len(c), dtype=np.int64)
        return c


@dataclass
class Category:
    """One object class: training (normal) cloud files and test items."""

    name: str
    train: list[Path] = field(default_factory=list)
    test: list[TestItem] = field(default_factory=list)


def _files(d: Path, exts: tuple[str, ...]) -> list[Path]:
    return sorted((p for p in d.iterdir() if p.suffix.lower() in exts), key=lambda p: natural_key(p.name))


def _shapes_layout(root: Path, name: str) -> list[Category]:
    """<class>/train/*.pcd, <class>/test/*.pcd, <class>/gt|GT/*.txt (x y z label per point)."""
    cats = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and (p / "train").is_dir() and (p / "test").is_dir()):
        gt_dir = next((d / g for g in ("gt", "GT") if (d / g).is_dir()), None)
        cat = Category(d.name, _files(d / "train", (".pcd", ".ply")))
        for f in _files(d / "test", (".pcd", ".ply")):
            gt = next((g for g in ([gt_dir / f"{f.stem}.txt"] if gt_dir else []) if g.is_file()), None)
            normal = any(w in f.stem.lower() for w in _NORMAL_WORDS)
            if gt is None and not normal:
                raise DataLayoutError(f"{name}: no ground truth {f.stem}.txt for test cloud {f}",
                                      "each anomalous test cloud needs gt/<name>.txt (x y z label per point)")
            cat.test.append(TestItem(f, 0 if normal else 1, gt, defect="good" if normal else f.stem.split("_")[-1]))
        cats.append(cat)
    return cats


def _mvtec3d_layout(root: Path) -> list[Category]:
    """<class>/train/good/xyz/*.tiff, <class>/test/<defect>/xyz/*.tiff with <class>/test/<defect>/gt/*.png."""
    cats = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and (p / "train" / "good" / "xyz").is_dir()):
        cat = Category(d.name, _files(d / "train" / "good" / "xyz", (".tif", ".tiff")))
        for dd in sorted(p for p in (d / "test").iterdir() if (p / "xyz").is_dir()):
            for f in _files(dd / "xyz", (".tif", ".tiff")):
                m = dd / "gt" / f"{f.stem}.png"
                cat.test.append(TestItem(f, int(dd.name != "good"), mask=m if m.is_file() else None, defect=dd.name))
        cats.append(cat)
    return cats


def load_pc_dataset(name: str, root: str | Path) -> list[Category]:
    """Categories of a point-cloud anomaly data set in its public layout (see module doc)."""
    r = require_dir(root, f"{name} root")
    if name in ("real3d-ad", "anomaly-shapenet"):
        cats = _shapes_layout(r, name)
        hint = "expected <class>/train/*.pcd, <class>/test/*.pcd, <class>/gt/*.txt"
    elif name == "mvtec3d":
        cats = _mvtec3d_layout(r)
        hint = "expected <class>/train/good/xyz/*.tiff and <class>/test/<defect>/xyz/*.tiff + gt/*.png"
    else:
        raise DataLayoutError(f"unknown point-cloud data set {name!r}", f"choose from {', '.join(DATASETS)}, bunny-defects")
    cats = [c for c in cats if c.train and c.test]
    if not cats:
        raise DataLayoutError(f"{r}: no {name} category found", hint)
    return cats
