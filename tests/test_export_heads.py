"""oddeye export beyond images: video prediction (generator + frame-score arithmetic, frames carried between calls),
the point-cloud adapter, and the OpenVINO format."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from contract_pointcloud import _train as cloud_train
from contract_pointcloud import _test as cloud_test
from contract_prediction import TINY
from contract_prediction import _test as video_test
from contract_prediction import _train as video_train

from oddeye.core.errors import EmptyDataError, InputError, ModelError
from oddeye.core.head import RunContext
from oddeye.export.api import export_model
from oddeye.pointcloud.features import raw_features
from oddeye.pointcloud.head import PointCloudHead
from oddeye.runtime.manifest import read_export
from oddeye.runtime.session import Session
from oddeye.runtime.video import VideoModel, smooth_nearest
from oddeye.video.prediction.head import PredictionHead

TOL = 1e-3
QUIET = RunContext(progress=False)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """A tiny video-prediction model scoring z-scores over the top 5 % of its pixels (the top-p reduction), its
    export, and two test videos (a frame folder and an mp4)."""
    root = tmp_path_factory.mktemp("video")
    cfg = TINY.replace(score=TINY.score.replace(norm="z", patch=4, reduce="top5"))
    PredictionHead(cfg, device="cpu").fit(video_train(root), ctx=QUIET).save(root / "model")
    export_model(root / "model", root / "x")
    return root / "model", root / "x", video_test(root)


def test_video_export_matches_score_video(video):
    model_dir, export_dir, tests = video
    head, model = PredictionHead.load(model_dir, device="cpu"), VideoModel(export_dir)
    model.batch_size = 7  # runs of 7 frames: the last `lead` frames of each are carried into the next
    for src in tests:
        want = head.video_series(src, keep_maps=True)
        z = (want.score - head.calibration.score_mean) / head.calibration.score_std
        got = model.score_video(src, keep_maps=True)
        assert np.abs(z - got.z).max() <= TOL * np.abs(z).max()
        assert np.abs(want.maps - got.maps).max() <= TOL * np.abs(want.maps).max()
    _, doc = read_export(export_dir)
    assert doc["stream"]["lead"] == TINY.lead and "last 6 frames" in doc["stream"]["keep_between_calls"]
    assert doc["threshold"] == pytest.approx(head.calibration.threshold)


def test_bench_export_video(video):
    from oddeye.export.bench import bench_export

    model_dir, export_dir, tests = video
    doc = bench_export(model_dir, export_dir, tests[0].parent, limit=2)  # frame folders and the mp4 found there
    assert doc["head"] == "video-prediction" and doc["n_videos"] == 2 and doc["auroc_export"] is None
    assert doc["max_rel_diff"] <= TOL and doc["speed_ratio"] > 0


def test_video_export_refuses_too_few_frames(video):
    model = VideoModel(video[1])
    with pytest.raises(EmptyDataError, match="the video has 6 frames; the model needs more than past x stride = 6"):
        model.score_frames([np.zeros((6, 32, 32), np.uint8)])
    with pytest.raises(InputError, match=r"expected frames: uint8 \(frames, 32, 32\)"):
        model.session.run(frames=np.zeros((9, 32, 32, 3), np.uint8))


def test_smooth_nearest_is_scipys():
    from scipy.ndimage import gaussian_filter1d

    x = np.random.default_rng(0).normal(size=40)
    np.testing.assert_allclose(smooth_nearest(x, 2.5), gaussian_filter1d(x, 2.5, mode="nearest"), atol=1e-12)


def test_pointcloud_adapter_export(tmp_path):
    head = PointCloudHead(target_points=300, adapt_steps=20).fit(cloud_train(tmp_path), ctx=QUIET)
    head.save(tmp_path / "m")
    man = export_model(tmp_path / "m", tmp_path / "x")
    d, doc = read_export(man)
    assert doc["preprocessing"]["fpfh"]["voxel_size"] == pytest.approx(head.fpfh.voxel_size)
    cloud, _ = head.prepare(cloud_test(tmp_path)[1])
    _, feats = raw_features(cloud.points, head.fpfh)
    got = Session(d, doc).run(features=feats)["adapted"]
    np.testing.assert_allclose(got, head.adapter(feats), atol=1e-5)
    PointCloudHead(target_points=300, adapt=False).fit(cloud_train(tmp_path)[:1], ctx=QUIET).save(tmp_path / "raw")
    with pytest.raises(ModelError, match="no learned adapter"):
        export_model(tmp_path / "raw", tmp_path / "y")


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="openvino is not installed (pip install "
                                                                         "openvino, or 'oddeye[openvino]')")
def test_openvino_export_matches(video, tmp_path):
    model_dir, _, tests = video
    man = export_model(model_dir, tmp_path / "ov", "openvino")
    doc = json.loads(man.read_text())
    assert doc["files"] == {"model": "model.xml", "weights": "model.bin"} and doc["backend"] == "openvino"
    assert not (tmp_path / "ov" / "model.onnx").exists()
    head, model = PredictionHead.load(model_dir, device="cpu"), VideoModel(tmp_path / "ov")
    want = head.video_series(tests[0])
    z = (want.score - head.calibration.score_mean) / head.calibration.score_std
    assert np.abs(z - model.score_video(tests[0]).z).max() <= TOL * np.abs(z).max()
    (tmp_path / "ov" / "model.bin").write_bytes(b"\0" * 10)
    with pytest.raises(ModelError, match=r"model\.bin is corrupt"):
        VideoModel(tmp_path / "ov")
