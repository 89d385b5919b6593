"""oddeye.core.videoio: folders, mp4/avi files, batches, resize/gray, pts, clip windows, bad inputs."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from oddeye.core.errors import EmptyDataError, InputError
from oddeye.core.videoio import (Frames, TruncatedVideoWarning, clip_windows, iter_windows, open_video)


def _frames(n: int = 40, h: int = 48, w: int = 64) -> np.ndarray:
    """(n, h, w) uint8 frames whose mean brightness encodes the index: frame i has value 5*i."""
    return np.stack([np.full((h, w), (5 * i) % 250, np.uint8) for i in range(n)])


def _write(path: Path, frames: np.ndarray, codec: str = "libx264", fps: int = 25, faststart: bool = False) -> Path:
    opts = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=opts) as c:
        s = c.add_stream(codec, rate=fps)
        s.height, s.width = frames.shape[1:3]
        s.pix_fmt = "yuv420p"
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(np.dstack([f] * 3), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("vid")
    fr = _frames()
    folder = d / "frames"
    folder.mkdir()
    for i, f in enumerate(fr):  # names that sort wrongly as text: 2.png before 10.png only with natural sort
        cv2.imwrite(str(folder / f"{i}.png"), f)
    return {"mp4": _write(d / "a.mp4", fr), "avi": _write(d / "a.avi", fr, codec="mpeg4"), "folder": folder}


@pytest.mark.parametrize("kind,backend", [("mp4", "auto"), ("mp4", "pyav"), ("avi", "auto"), ("avi", "pyav"),
                                          ("folder", "auto")])
def test_reader_random_access_and_batches(videos: dict[str, Path], kind: str, backend: str) -> None:
    r = open_video(videos[kind], backend=backend)
    assert len(r) == 40 and r.width == 64 and r.height == 48 and r.fps == pytest.approx(25)
    f = r.get_batch([30, 2, 17])
    assert isinstance(f, Frames) and f.data.shape == (3, 48, 64, 3) and f.data.dtype == np.uint8
    assert f.indices.tolist() == [30, 2, 17]
    np.testing.assert_allclose(f.times, f.indices / 25.0, atol=1e-3)
    np.testing.assert_allclose(f.data.mean(axis=(1, 2, 3)), 5 * f.indices, atol=4)  # the right frames came back
    batches = list(r.iter_batches(batch_size=16))
    assert [len(b) for b in batches] == [16, 16, 8]
    assert np.concatenate([b.indices for b in batches]).tolist() == list(range(40))
    step = list(r.iter_batches(batch_size=8, start=3, stop=20, step=4))
    assert np.concatenate([b.indices for b in step]).tolist() == [3, 7, 11, 15, 19]
    r.close()


@pytest.mark.parametrize("kind", ["mp4", "avi", "folder"])
def test_resize_gray_and_tensor(videos: dict[str, Path], kind: str) -> None:
    r = open_video(videos[kind], size=(32, 16), gray=True)
    assert (r.width, r.height) == (32, 16)
    f = r.get_batch([0, 10])
    assert f.data.shape == (2, 16, 32)
    assert abs(float(f.data[1].mean()) - 50) < 4
    t = f.to_tensor()
    assert tuple(t.shape) == (2, 1, 16, 32) and float(t.max()) <= 1.0


def test_folder_natural_sort(videos: dict[str, Path]) -> None:
    r = open_video(videos["folder"], gray=True)
    assert [p.name for p in r.files[:3]] == ["0.png", "1.png", "2.png"] and r.files[10].name == "10.png"
    assert int(r.get_batch([10]).data.mean()) == 50


def test_clip_windows_and_iter_windows(videos: dict[str, Path]) -> None:
    w = clip_windows(10, past=4)
    assert w.shape == (6, 5) and w[0].tolist() == [0, 1, 2, 3, 4] and w[-1].tolist() == [5, 6, 7, 8, 9]
    assert clip_windows(10, past=2, step=2)[0].tolist() == [0, 2, 4]
    with pytest.raises(InputError):
        clip_windows(10, past=0)
    r = open_video(videos["folder"], gray=True)
    got = list(iter_windows(r, past=4, batch_size=7))
    clips = np.concatenate([c for c, _ in got])
    targets = np.concatenate([t.indices for _, t in got])
    assert targets.tolist() == list(range(4, 40)) and clips.shape == (36, 5, 48, 64)
    np.testing.assert_array_equal(clips[:, :, 0, 0] // 5, clip_windows(40, 4))


def test_out_of_range_index_is_input_error(videos: dict[str, Path]) -> None:
    with pytest.raises(InputError, match="out of range"):
        open_video(videos["mp4"]).get_batch([40])


def test_zero_byte_and_corrupt_files(tmp_path: Path) -> None:
    z = tmp_path / "zero.mp4"
    z.write_bytes(b"")
    with pytest.raises(InputError, match="zero.mp4"):
        open_video(z)
    c = tmp_path / "junk.avi"
    c.write_bytes(np.random.default_rng(0).integers(0, 255, 50_000, dtype=np.uint8).tobytes())
    with pytest.raises(InputError, match="junk.avi"):
        open_video(c)
    with pytest.raises(InputError, match="nothere.mp4"):
        open_video(tmp_path / "nothere.mp4")


def test_truncated_mp4_without_index_is_input_error(videos: dict[str, Path], tmp_path: Path) -> None:
    data = videos["mp4"].read_bytes()
    t = tmp_path / "cut.mp4"
    t.write_bytes(data[: len(data) // 2])  # moov atom (the index) is at the end: nothing is decodable
    with pytest.raises(InputError, match="cut.mp4"):
        open_video(t)


@pytest.mark.parametrize("name,codec,faststart", [("cut.avi", "mpeg4", False), ("cut_fs.mp4", "libx264", True)])
def test_truncated_video_yields_frames_it_has_and_warns(tmp_path: Path, name: str, codec: str,
                                                        faststart: bool) -> None:
    rng = np.random.default_rng(0)  # noisy frames so the bytes spread evenly over the file
    fr = rng.integers(0, 255, (40, 48, 64), dtype=np.uint8)
    full = _write(tmp_path / ("full_" + name), fr, codec=codec, faststart=faststart).read_bytes()
    t = tmp_path / name
    t.write_bytes(full[: len(full) // 2])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = open_video(t)
        got = r.read_all()
    assert 0 < len(got) < 40
    assert r.truncated_at == len(got) and got.indices.tolist() == list(range(len(got)))
    msgs = [str(w.message) for w in caught if issubclass(w.category, TruncatedVideoWarning)]
    assert msgs and name in msgs[0] and f"stopped at frame {len(got)}" in msgs[0]


def test_folder_without_frames(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(EmptyDataError, match=str(tmp_path.name)):
        open_video(tmp_path)


def test_mixed_frame_sizes(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "000.png"), np.zeros((48, 64), np.uint8))
    cv2.imwrite(str(tmp_path / "001.png"), np.zeros((50, 64), np.uint8))
    with pytest.raises(InputError, match="mixed frame sizes.*001.png"):
        open_video(tmp_path)


def test_broken_frame_in_folder(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "000.png"), np.zeros((48, 64), np.uint8))
    (tmp_path / "001.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match="001.jpg"):
        open_video(tmp_path)


def test_unreachable_stream() -> None:
    t0 = time.perf_counter()
    with pytest.raises(InputError, match="rtsp://127.0.0.1:9/cam"):
        open_video("rtsp://127.0.0.1:9/cam")
    assert time.perf_counter() - t0 < 15


def test_single_image_and_bad_size(videos: dict[str, Path]) -> None:
    with pytest.raises(InputError, match="single image"):
        open_video(videos["folder"] / "0.png")
    with pytest.raises(InputError, match="size"):
        open_video(videos["mp4"], size=(0, 10))


def test_decode_bench_on_a_small_video(tmp_path: Path) -> None:
    from oddeye.video.bench import bench_file, make_test_video

    p = make_test_video(tmp_path / "b.mp4", (128, 96), n_frames=40, gop=10)
    assert len(open_video(p)) == 40
    figs = bench_file(p, n_random=10)
    for k in ("decord_sequential_fps", "pyav_random_each_fps", "ratio_random_each"):
        assert figs[k] > 0, k
