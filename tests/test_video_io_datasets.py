"""oddeye.video.datasets on tiny fakes of the UCSD Ped2, Avenue and ShanghaiTech layouts."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io as sio

from oddeye.core.errors import DataLayoutError, InputError
from oddeye.video.datasets import load_video_dataset, read_ucsd_m


def _frames(d: Path, n: int, ext: str = ".jpg", fmt: str = "{:03d}") -> None:
    d.mkdir(parents=True)
    for i in range(n):
        cv2.imwrite(str(d / (fmt.format(i) + ext)), np.full((24, 36), i, np.uint8))


def _bmp(mask: np.ndarray) -> bytes:
    return cv2.imencode(".bmp", mask.astype(np.uint8) * 255)[1].tobytes()


@pytest.fixture()
def ped2(tmp_path: Path) -> Path:
    root = tmp_path / "ucsd_ped2"
    for k in (1, 2):
        _frames(root / "training" / "frames" / f"{k:02d}", 5)
    for k in (1, 2, 6):
        _frames(root / "testing" / "frames" / f"{k:02d}", 6)
    gt = np.empty((1, 3), dtype=object)
    gt[0, 0], gt[0, 1], gt[0, 2] = np.array([[2], [3]]), np.array([[1], [6]]), np.array([[5], [6]])
    sio.savemat(root / "ped2.mat", {"gt": gt})
    with tarfile.open(root / "ucsd_ped2_pixel_gt_bmp.tar.gz", "w:gz") as tf:
        for clip, prefix in ((1, ""), (6, "frame")):
            for i in range(1, 7):
                m = np.zeros((24, 36), bool)
                m[:i, :i] = True
                data = _bmp(m)
                info = tarfile.TarInfo(f"UCSD_Anomaly_Dataset.v1p2/UCSDped2/Test/Test{clip:03d}_gt/{prefix}{i:03d}.bmp")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return root


def test_ped2_layout_labels_and_tar_masks(ped2: Path) -> None:
    ds = load_video_dataset("ucsd-ped2", ped2)
    assert [v.name for v in ds.train] == ["01", "02"] and [v.name for v in ds.test] == ["01", "02", "06"]
    assert ds.test[0].labels.tolist() == [0, 1, 1, 0, 0, 0]
    assert ds.test[1].labels.tolist() == [1] * 6 and ds.test[2].labels.tolist() == [0, 0, 0, 0, 1, 1]
    assert ds.test[1].mask_loader is None  # clip 2 has no masks in this archive
    m = ds.test[0].mask_loader(2)  # frame index 2 -> 003.bmp -> 3x3 square
    assert m.dtype == bool and m.shape == (24, 36) and m.sum() == 9
    assert ds.test[2].mask_loader(0).sum() == 1  # clip 006 names its masks frameNNN.bmp
    assert not list(ped2.rglob("*.bmp"))  # nothing extracted next to the data


def test_ped2_labels_from_ucsd_m(ped2: Path) -> None:
    (ped2 / "ped2.mat").unlink()
    (ped2 / "UCSDped2.m").write_text("TestVideoFile = {};\nTestVideoFile{end+1}.gt_frame = [2:3];\n"
                                     "TestVideoFile{end+1}.gt_frame = [1:6];\nTestVideoFile{end+1}.gt_frame = [5:6];\n")
    ds = load_video_dataset("ped2", ped2)
    assert ds.test[0].labels.tolist() == [0, 1, 1, 0, 0, 0]
    assert read_ucsd_m("TestVideoFile{end+1}.gt_frame = [1:3, 7:9];") == [[(1, 3), (7, 9)]]


def test_ped2_missing_labels_and_bad_root(ped2: Path, tmp_path: Path) -> None:
    (ped2 / "ped2.mat").unlink()
    (ped2 / "ucsd_ped2_pixel_gt_bmp.tar.gz").unlink()
    with pytest.raises(DataLayoutError, match="ped2.mat"):
        load_video_dataset("ucsd-ped2", ped2)
    with pytest.raises(DataLayoutError, match="training"):
        load_video_dataset("ucsd-ped2", tmp_path / "ucsd_ped2" / "testing")
    with pytest.raises(InputError, match="unknown video data set"):
        load_video_dataset("kitti", ped2)


def test_avenue_layout(tmp_path: Path) -> None:
    root = tmp_path / "avenue"
    _frames(root / "training" / "frames" / "01", 4, fmt="{:04d}")
    _frames(root / "testing" / "frames" / "01", 5, fmt="{:04d}")
    (root / "testing_label_mask").mkdir()
    vol = np.empty((1, 5), dtype=object)
    for i in range(5):
        m = np.zeros((24, 36), np.uint8)
        if i >= 3:
            m[2:5, 2:5] = 1
        vol[0, i] = m
    sio.savemat(root / "testing_label_mask" / "1_label.mat", {"volLabel": vol})
    ds = load_video_dataset("avenue", root)
    assert ds.test[0].labels.tolist() == [0, 0, 0, 1, 1]
    assert ds.test[0].mask_loader(4).sum() == 9


def test_shanghaitech_layout_refuses_pickles(tmp_path: Path) -> None:
    root = tmp_path / "sht"
    _frames(root / "training" / "frames" / "01_001", 4)
    _frames(root / "testing" / "frames" / "01_0014", 5)
    (root / "testing" / "test_frame_mask").mkdir()
    (root / "testing" / "test_pixel_mask").mkdir()
    np.save(root / "testing" / "test_frame_mask" / "01_0014.npy", np.array([0, 0, 1, 1, 0]))
    pix = np.zeros((5, 24, 36), np.uint8)
    pix[2:4, :2, :2] = 1
    np.save(root / "testing" / "test_pixel_mask" / "01_0014.npy", pix)
    ds = load_video_dataset("shanghaitech", root)
    assert ds.test[0].labels.tolist() == [0, 0, 1, 1, 0] and ds.test[0].mask_loader(2).sum() == 4
    np.save(root / "testing" / "test_frame_mask" / "01_0014.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataLayoutError, match="pickled"):
        load_video_dataset("shanghaitech", root)
