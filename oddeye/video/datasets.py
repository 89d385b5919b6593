"""Video anomaly data sets in their public layouts: UCSD Ped2, CUHK Avenue, ShanghaiTech.

    ds = load_video_dataset("ucsd-ped2", "../shared/data/ucsd_ped2")
    ds.train[0].source            # a frame folder (or video file); train items have labels None
    ds.test[0].labels             # (T,) int, 1 = anomalous frame
    ds.test[0].mask_loader(61)    # (H, W) bool pixel mask of frame 61, or None when the set has none
"""

from __future__ import annotations

import re
import tarfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from oddeye.core.errors import DataLayoutError, InputError, require_dir
from oddeye.core.imageio import IMAGE_SUFFIXES
from oddeye.core.paths import natural_key

DATASETS = ("ucsd-ped2", "avenue", "shanghaitech")
VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")
MaskLoader = Callable[[int], np.ndarray]


@dataclass
class VideoItem:
    """One video of a data set: name, source (frame folder or file), labels (T,) or None, mask loader."""

    name: str
    source: Path
    labels: np.ndarray | None = None
    mask_loader: MaskLoader | None = None


@dataclass
class VideoDataset:
    """A data set split into normal training videos and labelled test videos."""

    name: str
    root: Path
    train: list[VideoItem] = field(default_factory=list)
    test: list[VideoItem] = field(default_factory=list)

    @property
    def n_test_frames(self) -> int:
        """Number of labelled test frames."""
        return int(sum(len(v.labels) for v in self.test if v.labels is not None))


def _videos_in(d: Path) -> list[Path]:
    """Frame sub-folders or video files directly under `d`, natural order."""
    out = [p for p in d.iterdir() if (p.is_dir() and _has_frames(p)) or p.suffix.lower() in VIDEO_SUFFIXES]
    return sorted(out, key=natural_key)


def _has_frames(d: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_SUFFIXES for p in d.iterdir())


def _split_dir(root: Path, split: str) -> Path:
    """The folder holding the videos of `split` ('training'/'testing') in the layouts in use."""
    cands = [root / split / "frames", root / split / "videos", root / f"{split}_videos", root / f"{split}_frames",
             root / split]
    for c in cands:
        if c.is_dir() and _videos_in(c):
            return c
    raise DataLayoutError(f"no {split} videos under {root}",
                          f"expected {split}/frames/<video>/<frame>.jpg (or {split}/videos/*.avi); "
                          f"looked in: {', '.join(str(c.relative_to(root)) for c in cands)}")


def _n_frames(source: Path) -> int:
    """Frame count of a frame folder or video file (via oddeye.core.videoio for files)."""
    if source.is_dir():
        return sum(1 for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    from oddeye.core.videoio import open_video

    with open_video(source) as r:
        return len(r)


def _ranges_to_labels(ranges: list[tuple[int, int]], n: int) -> np.ndarray:
    """1-based inclusive (start, end) ranges -> labels (n,) int."""
    lab = np.zeros(n, np.int64)
    for a, b in ranges:
        lab[max(a - 1, 0): min(b, n)] = 1
    return lab


def video_number(p: Path) -> int:
    """The number in a test video's name (07.avi -> 7, Test007 -> 7): what Ped2 and Avenue labels are keyed by."""
    found = re.findall(r"\d+", p.stem if p.is_file() else p.name)
    if not found:
        raise DataLayoutError(f"cannot tell which labels belong to test video {p}: its name holds no number",
                              "keep the data set's own names (01, 02, ... or 01.avi, 02.avi, ...)")
    return int(found[-1])


def _numbers(tests: list[Path]) -> list[int]:
    """video_number of each test video; two videos with one number is a DataLayoutError naming both."""
    seen: dict[int, Path] = {}
    for p in tests:
        n = video_number(p)
        if n in seen:
            raise DataLayoutError(f"test videos {seen[n].name} and {p.name} have the same number {n}",
                                  "keep one of them: labels are paired with videos by number")
        seen[n] = p
    return list(seen)


def _pair_ranges(tests: list[Path], ranges: list[list[tuple[int, int]]],
                 source: Path | str) -> list[list[tuple[int, int]]]:
    """The label ranges of each test video from a per-video list (ped2.mat, avenue.mat, UCSDped2.m).

    Video n takes entry n - 1, so a subset of the videos (08, 17-21) pairs with the full list; a list made for
    exactly these videos (as many entries, some video numbered beyond it) pairs in order.
    """
    nums = _numbers(tests)
    if max(nums) <= len(ranges):
        return [ranges[n - 1] for n in nums]
    if len(ranges) == len(tests):
        return list(ranges)
    beyond = [p.name for p, n in zip(tests, nums) if n > len(ranges)]
    raise DataLayoutError(f"{source} holds labels for {len(ranges)} videos, but test video(s) {', '.join(beyond)} "
                          f"are numbered beyond that and there are {len(tests)} test videos",
                          "use the data set's own label file and video names")


def read_ped2_mat(path: Path) -> list[list[tuple[int, int]]]:
    """`gt` of ped2.mat / avenue.mat style files: per test video, a list of 1-based (start, end) ranges."""
    import scipy.io as sio

    try:
        gt = sio.loadmat(str(path))["gt"]
    except (KeyError, ValueError, OSError) as e:
        raise DataLayoutError(f"cannot read frame labels from {path}: {e}", "expected a MATLAB file with a `gt` cell") from None
    out = []
    for cell in gt.reshape(-1):
        a = np.asarray(cell, dtype=np.int64)
        a = a.reshape(2, -1) if a.size % 2 == 0 else a.reshape(-1, 1)
        out.append([(int(a[0, k]), int(a[1, k])) for k in range(a.shape[1])])
    return out


def read_ucsd_m(text: str) -> list[list[tuple[int, int]]]:
    """Parse UCSDped2.m (`TestVideoFile{end+1}.gt_frame = [61:180];`) -> per-video 1-based ranges."""
    out = []
    for line in text.splitlines():
        m = re.search(r"gt_frame\s*=\s*\[(.*?)\]", line)
        if m:
            out.append([(int(a), int(b)) for a, b in re.findall(r"(\d+)\s*:\s*(\d+)", m.group(1))])
    return out


class TarMasks:
    """Per-frame masks of UCSD read from the release's tar.gz without extracting (loaded once, lazily)."""

    def __init__(self, tar_path: Path) -> None:
        self.path = tar_path
        self._data: dict[tuple[int, int], bytes] | None = None
        self._m_file: str | None = None
        self._lock = threading.Lock()

    def _load(self) -> dict[tuple[int, int], bytes]:
        with self._lock:
            if self._data is None:
                data: dict[tuple[int, int], bytes] = {}
                try:
                    with tarfile.open(self.path, "r:gz") as tf:
                        for m in tf:
                            hit = re.search(r"Test(\d+)_gt/(?:frame)?(\d+)\.bmp$", m.name)
                            if m.isfile() and hit:
                                data[(int(hit.group(1)), int(hit.group(2)))] = tf.extractfile(m).read()
                            elif m.isfile() and m.name.endswith("UCSDped2.m"):
                                self._m_file = tf.extractfile(m).read().decode("latin-1")
                except (tarfile.TarError, OSError, EOFError) as e:
                    raise DataLayoutError(f"cannot read masks from {self.path}: {e}") from None
                self._data = data
        return self._data

    def clips(self) -> set[int]:
        """Test clip numbers (1-based) that have masks."""
        return {c for c, _ in self._load()}

    def m_file(self) -> str | None:
        """Text of UCSDped2.m if the archive holds it."""
        self._load()
        return self._m_file

    def loader(self, clip: int) -> MaskLoader:
        """A function frame_idx (0-based) -> bool (H, W) mask of test clip `clip` (1-based)."""

        def load(i: int) -> np.ndarray:
            buf = self._load().get((clip, i + 1))
            if buf is None:
                raise InputError(f"no pixel mask for frame {i} of test clip {clip} in {self.path}")
            img = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_GRAYSCALE)
            return img > 127

        return load


def load_ped2(root: Path) -> VideoDataset:
    """UCSD Ped2: training/frames/NN/*.jpg, testing/frames/NN/*.jpg, ped2.mat (or UCSDped2.m), masks tar.gz."""
    ds = VideoDataset("ucsd-ped2", root)
    ds.train = [VideoItem(p.name, p) for p in _videos_in(_split_dir(root, "training"))]
    tests = _videos_in(_split_dir(root, "testing"))
    tars = sorted(root.glob("*pixel_gt*.tar.gz")) + sorted(root.glob("*.tar.gz"))
    masks = TarMasks(tars[0]) if tars else None
    ranges = None
    for cand in (root / "ped2.mat", root / "testing" / "ped2.mat"):
        if cand.is_file():
            ranges = read_ped2_mat(cand)
            break
    if ranges is None:
        m_files = list(root.rglob("UCSDped2.m"))
        text = m_files[0].read_text(errors="replace") if m_files else (masks.m_file() if masks else None)
        if text:
            ranges = read_ucsd_m(text)
    if ranges is None:
        raise DataLayoutError(f"no frame labels for UCSD Ped2 under {root}", "put ped2.mat (or UCSDped2.m) in the root")
    have_masks = masks.clips() if masks is not None else set()
    for p, clip, r in zip(tests, _numbers(tests), _pair_ranges(tests, ranges, f"the Ped2 labels under {root}")):
        loader = masks.loader(clip) if masks is not None and clip in have_masks else None  # 06: Test006's masks
        ds.test.append(VideoItem(p.name, p, _ranges_to_labels(r, _n_frames(p)), loader))
    return ds


def _avenue_masks(label_dir: Path, k: int) -> tuple[np.ndarray, MaskLoader] | None:
    """Avenue testing_label_mask/<k>_label.mat (`volLabel`: one mask per frame) -> (labels, loader)."""
    import scipy.io as sio

    p = label_dir / f"{k}_label.mat"
    if not p.is_file():
        return None
    try:
        vol = sio.loadmat(str(p))["volLabel"].reshape(-1)
    except (KeyError, ValueError, OSError) as e:
        raise DataLayoutError(f"cannot read {p}: {e}", "expected the Avenue release's volLabel masks") from None
    masks = [np.asarray(m) > 0 for m in vol]
    labels = np.array([int(m.any()) for m in masks], np.int64)
    return labels, lambda i: masks[i]


def load_avenue(root: Path) -> VideoDataset:
    """CUHK Avenue: training/testing frames or videos, labels from testing_label_mask/*.mat or avenue.mat."""
    ds = VideoDataset("avenue", root)
    ds.train = [VideoItem(p.name, p) for p in _videos_in(_split_dir(root, "training"))]
    tests = _videos_in(_split_dir(root, "testing"))
    label_dirs = [d for d in (root / "testing_label_mask", root / "ground_truth_demo" / "testing_label_mask",
                              root / "testing" / "testing_label_mask") if d.is_dir()]
    mat = next((p for p in (root / "avenue.mat", root / "testing" / "avenue.mat") if p.is_file()), None)
    ranges = read_ped2_mat(mat) if mat else None
    if not label_dirs and ranges is None:
        raise DataLayoutError(f"no Avenue labels under {root}", "expected testing_label_mask/<k>_label.mat or avenue.mat")
    nums = _numbers(tests)
    masks = [_avenue_masks(label_dirs[0], k) if label_dirs else None for k in nums]  # 07.avi <-> 7_label.mat
    lacking = [i for i, m in enumerate(masks) if m is None]
    if lacking and ranges is None:
        i = lacking[0]
        raise DataLayoutError(f"no labels for Avenue test video {tests[i].name}: "
                              f"{label_dirs[0] / f'{nums[i]}_label.mat'} is missing", "add it, or leave the video out")
    paired = _pair_ranges(tests, ranges, mat) if lacking else []
    for i, (p, got) in enumerate(zip(tests, masks)):
        if got is not None:
            ds.test.append(VideoItem(p.name, p, got[0], got[1]))
        else:
            ds.test.append(VideoItem(p.name, p, _ranges_to_labels(paired[i], _n_frames(p))))
    return ds


def _load_npy(p: Path) -> np.ndarray:
    try:
        return np.load(p, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise DataLayoutError(f"cannot read {p}: {e}", "expected a plain numpy array (pickled files are refused)") from None


def load_shanghaitech(root: Path) -> VideoDataset:
    """ShanghaiTech: training videos or frames, testing/frames/<id>/, testing/test_frame_mask/<id>.npy (+ pixel masks)."""
    ds = VideoDataset("shanghaitech", root)
    ds.train = [VideoItem(p.stem if p.is_file() else p.name, p) for p in _videos_in(_split_dir(root, "training"))]
    tests = _videos_in(_split_dir(root, "testing"))
    fm = next((d for d in (root / "testing" / "test_frame_mask", root / "test_frame_mask") if d.is_dir()), None)
    pm = next((d for d in (root / "testing" / "test_pixel_mask", root / "test_pixel_mask") if d.is_dir()), None)
    if fm is None:
        raise DataLayoutError(f"no ShanghaiTech frame labels under {root}", "expected testing/test_frame_mask/<id>.npy")
    for p in tests:
        name = p.stem if p.is_file() else p.name
        lab_path = fm / f"{name}.npy"
        if not lab_path.is_file():
            raise DataLayoutError(f"no frame labels for test video {name}: {lab_path} is missing")
        labels = _load_npy(lab_path).astype(np.int64).reshape(-1)
        loader = None
        if pm is not None and (pm / f"{name}.npy").is_file():
            loader = _npy_mask_loader(pm / f"{name}.npy")
        ds.test.append(VideoItem(name, p, labels, loader))
    return ds


def _npy_mask_loader(path: Path) -> MaskLoader:
    """Loader over a (T, H, W) mask .npy, memory-mapped so only the frames asked for are read."""
    cache: dict[str, np.ndarray] = {}

    def load(i: int) -> np.ndarray:
        if "a" not in cache:
            try:
                cache["a"] = np.load(path, mmap_mode="r", allow_pickle=False)
            except (ValueError, OSError) as e:
                raise DataLayoutError(f"cannot read {path}: {e}") from None
        return np.asarray(cache["a"][i]) > 0

    return load


def load_video_dataset(name: str, root: str | Path) -> VideoDataset:
    """Load a video anomaly data set (ucsd-ped2 | avenue | shanghaitech) from its public layout under `root`."""
    key = name.lower().replace("_", "-")
    key = {"ped2": "ucsd-ped2", "ucsdped2": "ucsd-ped2", "cuhk-avenue": "avenue", "shanghai": "shanghaitech"}.get(key, key)
    if key not in DATASETS:
        raise InputError(f"unknown video data set {name!r}", f"choose one of {', '.join(DATASETS)}")
    r = require_dir(root, f"{key} root")
    ds = {"ucsd-ped2": load_ped2, "avenue": load_avenue, "shanghaitech": load_shanghaitech}[key](r)
    if not ds.train or not ds.test:
        raise DataLayoutError(f"{r}: {len(ds.train)} training and {len(ds.test)} test videos; both must be > 0")
    return ds


__all__ = ["VideoDataset", "VideoItem", "load_video_dataset", "read_ped2_mat", "read_ucsd_m", "TarMasks",
           "video_number"]
