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


def _vol(n: int, anomalous: list[int]) -> np.ndarray:
    """An Avenue volLabel cell array: n masks (24, 36), a 3x3 square in the frames listed."""
    vol = np.empty((1, n), dtype=object)
    for i in range(n):
        m = np.zeros((24, 36), np.uint8)
        if i in anomalous:
            m[2:5, 2:5] = 1
        vol[0, i] = m
    return vol


@pytest.fixture()
def avenue_subset(tmp_path: Path) -> Path:
    """Avenue with test videos 08 and 17-21 only (tiny .avi files) and their <k>_label.mat: video k's anomalous frame
    is frame k % 6, so a label file paired by position shows."""
    from oddeye.core.synth import write_video_file

    root = tmp_path / "avenue"
    (root / "training_videos").mkdir(parents=True)
    (root / "testing_videos").mkdir()
    (root / "testing_label_mask").mkdir()
    frames = np.stack([np.full((24, 36), 10 * i, np.uint8) for i in range(6)])
    write_video_file(frames, root / "training_videos" / "01.avi", fps=25)
    for k in (8, 17, 18, 19, 20, 21):
        write_video_file(frames, root / "testing_videos" / f"{k:02d}.avi", fps=25)
        sio.savemat(root / "testing_label_mask" / f"{k}_label.mat", {"volLabel": _vol(6, [k % 6])})
    return root


def test_avenue_subset_pairs_videos_and_labels_by_number(avenue_subset: Path) -> None:
    ds = load_video_dataset("avenue", avenue_subset)
    assert [v.name for v in ds.test] == ["08.avi", "17.avi", "18.avi", "19.avi", "20.avi", "21.avi"]
    for item in ds.test:
        k = int(item.name[:2])
        assert item.labels.tolist() == [int(i == k % 6) for i in range(6)], item.name
        assert item.mask_loader(k % 6).sum() == 9


def test_avenue_subset_with_the_full_avenue_mat(avenue_subset: Path) -> None:
    """avenue.mat lists all 21 test videos; a subset takes entry k - 1 for video k."""
    import shutil

    shutil.rmtree(avenue_subset / "testing_label_mask")
    gt = np.empty((1, 21), dtype=object)
    for k in range(1, 22):
        gt[0, k - 1] = np.array([[k % 6 + 1], [k % 6 + 1]])  # 1-based inclusive: frame k % 6 only
    sio.savemat(avenue_subset / "avenue.mat", {"gt": gt})
    ds = load_video_dataset("avenue", avenue_subset)
    for item in ds.test:
        k = int(item.name[:2])
        assert item.labels.tolist() == [int(i == k % 6) for i in range(6)], item.name
    sio.savemat(avenue_subset / "avenue.mat", {"gt": gt[:, :5]})  # 5 entries, 6 videos numbered up to 21
    with pytest.raises(DataLayoutError, match="21.avi"):
        load_video_dataset("avenue", avenue_subset)


def test_avenue_missing_label_file_and_unnumbered_video(avenue_subset: Path) -> None:
    (avenue_subset / "testing_label_mask" / "19_label.mat").unlink()
    with pytest.raises(DataLayoutError, match="19.avi.*19_label.mat"):
        load_video_dataset("avenue", avenue_subset)
    (avenue_subset / "testing_videos" / "19.avi").unlink()
    (avenue_subset / "testing_videos" / "20.avi").rename(avenue_subset / "testing_videos" / "walk.avi")
    with pytest.raises(DataLayoutError, match="walk.avi.*no number"):
        load_video_dataset("avenue", avenue_subset)


def test_ped2_subset_pairs_by_number(ped2: Path) -> None:
    """Test clips 02 and 06 only, with the labels of all of 01..06: clip k takes entry k - 1."""
    import shutil

    shutil.rmtree(ped2 / "testing" / "frames" / "01")
    _frames(ped2 / "testing" / "frames" / "07", 6)  # a 4th video makes positional pairing impossible
    gt = np.empty((1, 7), dtype=object)
    for k in range(1, 8):
        gt[0, k - 1] = np.array([[k % 6 + 1], [k % 6 + 1]])
    sio.savemat(ped2 / "ped2.mat", {"gt": gt})
    ds = load_video_dataset("ucsd-ped2", ped2)
    assert [v.name for v in ds.test] == ["02", "06", "07"]
    for item in ds.test:
        k = int(item.name)
        assert item.labels.tolist() == [int(i == k % 6) for i in range(6)], item.name
    assert ds.test[1].mask_loader is not None and ds.test[0].mask_loader is None  # masks by number too
    _frames(ped2 / "testing" / "frames" / "Test007", 6)
    with pytest.raises(DataLayoutError, match="the same number 7"):
        load_video_dataset("ucsd-ped2", ped2)
