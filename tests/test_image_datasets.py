"""Image data set loaders on tiny fake layouts: MVTec AD, MVTec 3D-AD (RGB), magnetic tile; layout errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from oddeye.core.errors import DataLayoutError, EmptyDataError, InputError
from oddeye.core.imageio import write_image
from oddeye.image.datasets import ImageDataset, load_image_dataset


def _img(path: Path, value: int = 100) -> None:
    write_image(path, np.full((8, 8, 3), value, np.uint8))


def _mvtec(root: Path, category: str = "bottle", n_train: int = 3) -> Path:
    c = root / category
    for i in range(n_train):
        _img(c / "train" / "good" / f"{i:03d}.png")
    for i in range(2):
        _img(c / "test" / "good" / f"{i:03d}.png")
        _img(c / "test" / "crack" / f"{i:03d}.png")
        _img(c / "ground_truth" / "crack" / f"{i:03d}_mask.png", 255)
    return c


def _mvtec3d(root: Path, category: str = "bagel") -> Path:
    c = root / category
    for i in range(2):
        _img(c / "train" / "good" / "rgb" / f"{i:03d}.png")
        for d in ("good", "hole"):
            _img(c / "test" / d / "rgb" / f"{i:03d}.png")
            _img(c / "test" / d / "gt" / f"{i:03d}.png", 255 if d == "hole" else 0)
    return c


def _magnetic(root: Path, n_free: int = 10) -> Path:
    for i in range(n_free):
        _img(root / "MT_Free" / "Imgs" / f"exp1_num_{i}.jpg")
        _img(root / "MT_Free" / "Imgs" / f"exp1_num_{i}.png", 0)
    for cls in ("Blowhole", "Crack"):
        for i in range(3):
            _img(root / f"MT_{cls}" / "Imgs" / f"exp2_num_{i}.jpg")
            _img(root / f"MT_{cls}" / "Imgs" / f"exp2_num_{i}.png", 255)
    return root


def test_mvtec_layout(tmp_path: Path) -> None:
    _mvtec(tmp_path)
    _mvtec(tmp_path, "screw")
    ds = load_image_dataset("mvtec", tmp_path, category="bottle")
    assert isinstance(ds, ImageDataset) and ds.name == "mvtec"
    assert len(ds.train) == 3 and all(it.label == 0 and it.split == "train" for it in ds.train)
    assert [it.label for it in ds.test] == [1, 1, 0, 0]
    crack = [it for it in ds.test if it.defect_type == "crack"]
    assert crack[0].mask_path == tmp_path / "bottle" / "ground_truth" / "crack" / "000_mask.png"
    assert all(it.mask_path is None for it in ds.test if it.label == 0)
    assert ds.meta["category"] == "bottle" and ds.meta["n_test_anomalous"] == 2
    # a category folder itself works as root too
    assert len(load_image_dataset("mvtec", tmp_path / "screw").test) == 4


def test_mvtec_errors(tmp_path: Path) -> None:
    _mvtec(tmp_path)
    _mvtec(tmp_path, "screw")
    with pytest.raises(DataLayoutError, match="several categories"):
        load_image_dataset("mvtec", tmp_path)
    with pytest.raises(DataLayoutError, match="nut"):
        load_image_dataset("mvtec", tmp_path, category="nut")
    (tmp_path / "bottle" / "ground_truth" / "crack" / "001_mask.png").unlink()
    with pytest.raises(DataLayoutError, match="001_mask.png"):
        load_image_dataset("mvtec", tmp_path, category="bottle")
    with pytest.raises(DataLayoutError, match="train"):
        load_image_dataset("mvtec", tmp_path / "bottle" / "test")
    with pytest.raises(DataLayoutError, match="not found"):
        load_image_dataset("mvtec", tmp_path / "missing")
    with pytest.raises(InputError, match="unknown image data set"):
        load_image_dataset("cifar", tmp_path)


def test_mvtec_empty_train_split(tmp_path: Path) -> None:
    c = _mvtec(tmp_path, n_train=0)
    (c / "train" / "good").mkdir(parents=True, exist_ok=True)
    with pytest.raises(EmptyDataError, match="train split"):
        load_image_dataset("mvtec", c)


def test_mvtec3d_rgb_layout(tmp_path: Path) -> None:
    _mvtec3d(tmp_path)
    ds = load_image_dataset("mvtec3d-rgb", tmp_path, category="bagel")
    assert len(ds.train) == 2 and ds.train[0].path.parent.name == "rgb"
    hole = [it for it in ds.test if it.label == 1]
    assert len(hole) == 2 and hole[0].mask_path == tmp_path / "bagel" / "test" / "hole" / "gt" / "000.png"
    with pytest.raises(DataLayoutError, match="rgb"):
        load_image_dataset("mvtec3d-rgb", _mvtec(tmp_path / "ad"))


def test_magnetic_tile_seeded_split(tmp_path: Path) -> None:
    _magnetic(tmp_path)
    a = load_image_dataset("magnetic-tile", tmp_path, seed=1)
    b = load_image_dataset("magnetic-tile", tmp_path, seed=1)
    c = load_image_dataset("magnetic-tile", tmp_path, seed=2, train_fraction=0.3)
    assert [it.path for it in a.train] == [it.path for it in b.train]
    assert {it.path for it in a.train} != {it.path for it in load_image_dataset("magnetic-tile", tmp_path, seed=5).train}
    assert len(a.train) == 5 and len(c.train) == 3
    assert all(it.path.suffix == ".jpg" for it in a.train + a.test)
    assert not {it.path for it in a.train} & {it.path for it in a.test}
    assert a.meta["seed"] == 1 and a.meta["n_train"] == 5 and a.meta["n_test"] == 11
    assert a.meta["defect_types"] == {"good": 5, "blowhole": 3, "crack": 3}
    bad = [it for it in a.test if it.label == 1]
    assert all(it.mask_path == it.path.with_suffix(".png") for it in bad)


def test_magnetic_tile_errors(tmp_path: Path) -> None:
    with pytest.raises(DataLayoutError, match="MT_Free"):
        load_image_dataset("magnetic-tile", tmp_path)
    root = _magnetic(tmp_path / "mt")
    with pytest.raises(InputError, match="train_fraction"):
        load_image_dataset("magnetic-tile", root, train_fraction=1.0)
    (root / "MT_Crack" / "Imgs" / "exp2_num_1.png").unlink()
    with pytest.raises(DataLayoutError, match="exp2_num_1.png"):
        load_image_dataset("magnetic-tile", root)
    empty = _magnetic(tmp_path / "empty", n_free=0)
    (empty / "MT_Free" / "Imgs").mkdir(parents=True)
    with pytest.raises(EmptyDataError, match="train split"):
        load_image_dataset("magnetic-tile", empty)
