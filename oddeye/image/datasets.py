"""Loaders for industrial image data sets in their public layouts: MVTec AD, MVTec 3D-AD (RGB only), magnetic tile."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from oddeye.core.errors import DataLayoutError, EmptyDataError, InputError, require_range
from oddeye.core.imageio import list_images

DATASETS = ("mvtec", "mvtec3d-rgb", "magnetic-tile")
MAGNETIC_DEFECTS = ("Blowhole", "Break", "Crack", "Fray", "Uneven")


@dataclass
class DatasetItem:
    """One image: its path, label (0 normal, 1 anomalous), mask path (None: no defect pixels), defect type, split."""

    path: Path
    label: int
    mask_path: Path | None
    defect_type: str
    split: str


@dataclass
class ImageDataset:
    """A data set split into normal training images and labelled test images, with meta (root, seed, sizes)."""

    name: str
    train: list[DatasetItem]
    test: list[DatasetItem]
    meta: dict[str, Any] = field(default_factory=dict)


def _images(directory: Path, skip_png: bool = False) -> list[Path]:
    """Image files directly in `directory` (natural order); skip_png drops .png (masks beside the images)."""
    return [p for p in list_images(directory) if not (skip_png and p.suffix.lower() == ".png")]


def _subdirs(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))


def _category_root(root: Path, category: str | None, name: str, marker: str) -> Path:
    """The folder of one category: root/category, or root itself when it already holds `marker`."""
    if category:
        croot = root / category
        if not croot.is_dir():
            found = [p.name for p in _subdirs(root) if (p / marker).is_dir()]
            raise DataLayoutError(f"{name}: category folder {croot} not found",
                                  f"categories under {root}: {', '.join(found) or 'none'}")
        return croot
    if (root / marker).is_dir():
        return root
    found = [p.name for p in _subdirs(root) if (p / marker).is_dir()]
    if found:
        raise DataLayoutError(f"{name}: {root} holds several categories; choose one",
                              f"pass category=... (--category): {', '.join(found)}")
    raise DataLayoutError(f"{name}: {root} has no {marker}/ folder and no category folders with one",
                          f"expected {root}/<category>/{marker}/good/ (the original {name} layout)")


def _check_nonempty(items: list[DatasetItem], where: Path, split: str, name: str) -> None:
    if not items:
        raise EmptyDataError(f"{name}: the {split} split under {where} holds no images",
                             "check the data set was copied completely")


def _load_mvtec(root: Path, category: str | None, rgb_sub: bool) -> tuple[list[DatasetItem], list[DatasetItem], Path]:
    """MVTec AD (train/good, test/<defect>, ground_truth/<defect>/NNN_mask.png) or 3D-AD (rgb/ and gt/ subfolders)."""
    name = "mvtec3d-rgb" if rgb_sub else "mvtec"
    croot = _category_root(root, category, name, "train")
    expected = ("train/good/rgb, test/<defect>/rgb, test/<defect>/gt" if rgb_sub
                else "train/good, test/<defect>, ground_truth/<defect>/NNN_mask.png")
    good = croot / "train" / "good" / ("rgb" if rgb_sub else "")
    if not good.is_dir():
        raise DataLayoutError(f"{name}: {good} not found", f"expected {croot}/{{{expected}}}")
    train = [DatasetItem(p, 0, None, "good", "train") for p in _images(good)]
    test_root = croot / "test"
    if not test_root.is_dir():
        raise DataLayoutError(f"{name}: {test_root} not found", f"expected {croot}/{{{expected}}}")
    test: list[DatasetItem] = []
    for ddir in _subdirs(test_root):
        defect = ddir.name
        img_dir = ddir / "rgb" if rgb_sub else ddir
        if not img_dir.is_dir():
            raise DataLayoutError(f"{name}: {img_dir} not found", f"expected {croot}/{{{expected}}}")
        for p in _images(img_dir):
            if defect == "good":
                test.append(DatasetItem(p, 0, None, "good", "test"))
                continue
            mask = (ddir / "gt" / p.name) if rgb_sub else (croot / "ground_truth" / defect / f"{p.stem}_mask.png")
            if not mask.is_file():
                raise DataLayoutError(f"{name}: no mask for {p}: expected {mask}",
                                      "every defective test image needs its ground-truth mask")
            test.append(DatasetItem(p, 1, mask, defect, "test"))
    return train, test, croot


def _load_magnetic(root: Path, seed: int, train_fraction: float) -> tuple[list[DatasetItem], list[DatasetItem], dict]:
    """MT_<class>/Imgs/<name>.jpg with <name>.png masks; a seeded share of MT_Free trains, the rest tests."""
    require_range(train_fraction, "train_fraction", 0.0, 1.0)
    if not 0.0 < train_fraction < 1.0:
        raise InputError(f"train_fraction must be strictly between 0 and 1, got {train_fraction}")
    free_dir = root / "MT_Free" / "Imgs"
    if not free_dir.is_dir():
        raise DataLayoutError(f"magnetic-tile: {free_dir} not found",
                              f"expected {root}/MT_<class>/Imgs/<name>.jpg with same-name .png masks "
                              f"(classes Free, {', '.join(MAGNETIC_DEFECTS)})")
    free = _images(free_dir, skip_png=True)
    order = np.random.default_rng(seed).permutation(len(free))
    n_train = int(round(train_fraction * len(free)))
    train = [DatasetItem(free[i], 0, None, "good", "train") for i in sorted(order[:n_train])]
    test = [DatasetItem(free[i], 0, None, "good", "test") for i in sorted(order[n_train:])]
    classes = [d for d in _subdirs(root) if d.name.startswith("MT_") and d.name != "MT_Free"]
    if not classes:
        raise DataLayoutError(f"magnetic-tile: {root} has no defect folders MT_<defect>/Imgs",
                              f"expected MT_{', MT_'.join(MAGNETIC_DEFECTS)}")
    for cdir in classes:
        img_dir = cdir / "Imgs"
        if not img_dir.is_dir():
            raise DataLayoutError(f"magnetic-tile: {img_dir} not found", "each MT_<class> folder holds Imgs/")
        for p in _images(img_dir, skip_png=True):
            mask = p.with_suffix(".png")
            if not mask.is_file():
                raise DataLayoutError(f"magnetic-tile: no mask for {p}: expected {mask}")
            test.append(DatasetItem(p, 1, mask, cdir.name[3:].lower(), "test"))
    return train, test, {"n_free": len(free)}


def load_image_dataset(name: str, root: str | Path, category: str | None = None, seed: int = 0,
                       train_fraction: float = 0.5) -> ImageDataset:
    """Read `name` ("mvtec" | "mvtec3d-rgb" | "magnetic-tile") under `root` into train/test ImageItems.

    For magnetic-tile, a seeded `train_fraction` of MT_Free is the training split; meta records seed and sizes.
    """
    if name not in DATASETS:
        raise InputError(f"unknown image data set {name!r}", f"choose one of {', '.join(DATASETS)}")
    r = Path(root).expanduser()
    if not r.is_dir():
        raise DataLayoutError(f"{name}: data root {r} not found or not a directory",
                              "pass --root pointing at the data set folder")
    meta: dict[str, Any] = {"root": str(r)}
    if name == "magnetic-tile":
        train, test, extra = _load_magnetic(r, seed, train_fraction)
        meta.update(seed=int(seed), train_fraction=float(train_fraction), **extra)
        where = r
    else:
        train, test, where = _load_mvtec(r, category, rgb_sub=name == "mvtec3d-rgb")
        meta["category"] = where.name
    _check_nonempty(train, where, "train", name)
    _check_nonempty(test, where, "test", name)
    labels = [it.label for it in test]
    meta.update(n_train=len(train), n_test=len(test), n_test_normal=labels.count(0),
                n_test_anomalous=labels.count(1), defect_types=dict(Counter(it.defect_type for it in test)))
    return ImageDataset(name=name, train=train, test=test, meta=meta)
