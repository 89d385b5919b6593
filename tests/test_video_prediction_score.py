"""Frame-prediction scoring options: per-location normalisation, temporal stride (scoring and training),
format-1 models."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from oddeye.core.errors import ConfigError, InputError, ModelError
from oddeye.core.metrics import auroc
from oddeye.core.synth import make_video
from oddeye.video.prediction.config import PredictorConfig, ScoreConfig, TrainConfig
from oddeye.video.prediction.head import LOCATION, PredictionHead
from oddeye.video.prediction.model import psnr_map
from oddeye.video.prediction.score import ErrorAccumulator, FrameScorer, LocationStats
from oddeye.video.prediction.train import Trainer

SIZE = 32
TINY = PredictorConfig(size=SIZE, past=3, channels=(8, 16, 16), heads=2, d_channels=4)


def _small(frames: np.ndarray) -> np.ndarray:
    return np.stack([cv2.resize(f, (SIZE, SIZE), interpolation=cv2.INTER_AREA) for f in frames])


def _copy_last_head(score: ScoreConfig) -> PredictionHead:
    """A head whose generator predicts 'the last past frame': its error map is the frame difference over stride."""
    torch.manual_seed(0)
    head = PredictionHead(model=TINY, score=score)
    head.g.predict = lambda feats, idx, last: last  # type: ignore[method-assign]
    return head


def test_scorer_normalised_map_finds_error_where_normal_frames_are_quiet() -> None:
    busy = np.zeros((SIZE, SIZE), np.float32)
    busy[8:16] = 1.0  # a walkway: normal frames err there
    loc = LocationStats(mean=busy * 0.01 + 1e-4, std=busy * 0.005 + 1e-4, n_frames=100)
    crowd = torch.zeros(4, 1, SIZE, SIZE)
    crowd[:, 0, 8:16] = 0.02  # a busier walkway than usual: all of it errs a little more
    odd = torch.zeros(1, 1, SIZE, SIZE)
    odd[0, 0, 24:28, 4:8] = 0.02  # a small object erring as much, on the grass
    maps = torch.cat([crowd, odd])
    plain = FrameScorer(ScoreConfig(motion=0), None)(maps)
    assert plain[-1] < plain[:-1].min()  # whole-frame PSNR: the crowd is worse
    for norm in ("ratio", "z"):
        s = FrameScorer(ScoreConfig(norm=norm, patch=3, reduce="max"), loc)(maps)
        assert s[-1] > s[:-1].max(), norm
    s = FrameScorer(ScoreConfig(norm="ratio", patch=3, reduce="top5"), loc)(maps)
    assert s.shape == (5,) and torch.isfinite(s).all()


def test_motion_term_scores_error_relative_to_how_much_changed() -> None:
    c = torch.arange(1, 5, dtype=torch.float32)[:, None, None, None]
    crowd_err, crowd_copy = 0.002 * c * torch.ones(4, 1, 8, 8), 0.005 * c * torch.ones(4, 1, 8, 8)
    odd_err, odd_copy = torch.full((1, 1, 8, 8), 0.004), torch.full((1, 1, 8, 8), 0.001)  # little moved, badly predicted
    err, copy = torch.cat([crowd_err, odd_err]), torch.cat([crowd_copy, odd_copy])
    plain = FrameScorer(ScoreConfig(motion=0), None)(err, copy)
    assert plain[-1] < plain[:-1].max()  # plain PSNR: the busiest crowd frame is worse
    s = FrameScorer(ScoreConfig(motion=0.6), None)(err, copy)
    assert s[-1] > s[:-1].max()
    want = -10 * torch.log10(1 / err.flatten(1).mean(1)) - 6 * torch.log10(copy.flatten(1).mean(1) + 1e-5)
    assert torch.allclose(s, want, atol=1e-4)
    # a frozen scene stays finite
    assert torch.isfinite(FrameScorer(ScoreConfig(), None)(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))).all()
    with pytest.raises(InputError, match="copy_err"):
        FrameScorer(ScoreConfig(), None)(err)
    with pytest.raises(ConfigError, match=r"ScoreConfig\.motion"):
        ScoreConfig(motion=-1)


def test_motion_term_copies_the_frame_motion_gap_strides_back() -> None:
    frames = np.random.default_rng(0).integers(0, 255, (30, SIZE, SIZE), dtype=np.uint8)
    head = _copy_last_head(ScoreConfig(stride=2, motion_gap=3, batch_size=7))
    x = torch.from_numpy(frames).float().div(127.5).sub(1)[:, None]
    copies = torch.cat([c for _, c, _, _ in head._errors(head._array_batches(frames))])
    lead = TINY.past * 2
    assert torch.allclose(copies, psnr_map(x[lead - 6:-6], x[lead:]), atol=1e-6)  # frame t vs frame t - 3 x 2
    with pytest.raises(ConfigError, match=r"PredictionConfig\.score\.motion_gap"):
        _copy_last_head(ScoreConfig(motion_gap=TINY.past + 1))
    with pytest.raises(ConfigError, match=r"ScoreConfig\.motion_gap"):
        ScoreConfig(motion_gap=0)


def test_perspective_weights_far_rows_more() -> None:
    from oddeye.video.prediction.score import row_weights

    w = row_weights(16, 32.0)
    assert w.shape == (16, 1) and abs(float(w.mean()) - 1.0) < 1e-6 and abs(float(w[0] / w[-1]) - 32.0) < 1e-4
    far, near = torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 16, 16)
    far[0, 0, 1:3, 4:6] = 0.05  # the same error, high (far) and low (near) in the frame
    near[0, 0, 13:15, 4:6] = 0.05
    copy = torch.full((2, 1, 16, 16), 1e-3)
    err = torch.cat([far, near])
    flat = FrameScorer(ScoreConfig(), None)(err, copy)
    assert torch.allclose(flat[0], flat[1])
    s = FrameScorer(ScoreConfig(perspective=32.0), None)(err, copy)
    assert s[0] > s[1] + 6.0  # dB: rows 1-2 weigh ~7x rows 13-14
    with pytest.raises(ConfigError, match=r"ScoreConfig\.perspective"):
        ScoreConfig(perspective=0.5)


def test_perspective_leaves_the_copy_error_unweighted_unless_asked() -> None:
    err = torch.full((2, 1, 16, 16), 1e-3)
    copy = torch.full((2, 1, 16, 16), 1e-4)
    copy[0, 0, :3] = 1e-2  # the scene changed at the top (far) rows of frame 0, at the bottom of frame 1
    copy[1, 0, -3:] = 1e-2
    s = FrameScorer(ScoreConfig(perspective=32.0), None)(err, copy)
    assert torch.allclose(s[0], s[1])  # the copy error is the scene's whole change: no row weights
    both = FrameScorer(ScoreConfig(perspective=32.0, perspective_copy=True), None)(err, copy)
    assert both[1] > both[0] + 3.0  # weighted, the far change counts more: frame 0 'moved more', scores lower
    assert "prediction error weighted 32:1" in ScoreConfig(perspective=32.0).describe()
    assert "both errors" in ScoreConfig(perspective=32.0, perspective_copy=True).describe()


def test_accumulator_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    e = rng.random((50, 1, 6, 6)).astype(np.float32)
    acc = ErrorAccumulator()
    for a in range(0, 50, 16):
        acc.add(torch.from_numpy(e[a: a + 16]))
    st = acc.stats()
    assert st.n_frames == 50
    np.testing.assert_allclose(st.mean, e[:, 0].mean(0), rtol=1e-5)
    np.testing.assert_allclose(st.std, e[:, 0].std(0), rtol=1e-4)
    with pytest.raises(ModelError, match="no normal frames"):
        ErrorAccumulator().stats()


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_stride_predicts_from_frames_stride_apart(stride: int) -> None:
    torch.set_num_threads(1)
    frames = np.random.default_rng(stride).integers(0, 255, (40, SIZE, SIZE), dtype=np.uint8)
    head = _copy_last_head(ScoreConfig(stride=stride, smooth_sigma=0, batch_size=7))  # batches cut windows
    s = head._series_from_array(frames, keep_maps=True)
    lead = TINY.past * stride
    x = torch.from_numpy(frames).float().div(127.5).sub(1)[:, None]
    want = psnr_map(x[:-stride], x[stride:])[:, 0].numpy()  # frame t vs frame t - stride
    assert len(s.score) == 40 and s.maps.shape == (40, SIZE, SIZE)
    np.testing.assert_allclose(s.maps[lead:], want[lead - stride:], atol=1e-6)
    np.testing.assert_allclose(s.score[:lead], s.score[lead])  # the first frames copy the first score
    with pytest.raises(Exception, match="past x stride"):
        head._series_from_array(frames[:lead])


def test_training_stride_takes_every_kth_frame() -> None:
    frames = np.repeat(np.arange(60, dtype=np.uint8)[:, None, None], SIZE, 1).repeat(SIZE, 2)  # frame i holds i
    tr = Trainer(TINY, TrainConfig(batch_size=5, stride=3), [frames])
    b = tr._batch(np.random.default_rng(0))[:, :, 0, 0, 0].add(1).mul(127.5).round()  # back to frame numbers
    assert b.shape == (5, TINY.past + 1)
    assert (b.diff(dim=1) == 3).all() and (b[:, -1] < 60).all()
    with pytest.raises(InputError, match="past x stride"):
        Trainer(TINY, TrainConfig(stride=3), [frames[:9]])
    with pytest.raises(ConfigError, match=r"TrainConfig\.stride"):
        TrainConfig(stride=0)


def test_per_location_norm_detects_walker_in_the_wrong_place() -> None:
    """A walker on the grass (normal speed, a place normal clips never move in) vs whole-frame PSNR.

    Eight normal clips cover the walkway; with three, places on it that they left quiet outscore the grass
    (AUROC < 0.5): the statistics need normal footage that covers where people normally move.
    """
    torch.set_num_threads(1)
    normal = [_small(make_video(seed=s, anomaly=None, n_frames=60).frames) for s in range(1, 9)]
    test = make_video(seed=7, anomaly="wrong_place", n_frames=120)
    got = {}
    for norm in ("none", "ratio", "z"):
        head = _copy_last_head(ScoreConfig(norm=norm, patch=3, smooth_sigma=1))
        head.calibrate(normal)
        assert head.location is not None and head.location.n_frames == 8 * (60 - head.config.lead)
        got[norm] = auroc(test.labels, head._series_from_array(_small(test.frames)).score)
    assert got["none"] < 0.7 and got["ratio"] > 0.9 and got["z"] > 0.9, got


def test_save_load_keeps_location_stats_and_old_models_load(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    normal = [_small(make_video(seed=s, anomaly=None, n_frames=40).frames) for s in (1, 2)]
    test = _small(make_video(seed=5, anomaly="fast", n_frames=80, anomaly_span=(40, 70)).frames)
    torch.manual_seed(0)
    head = PredictionHead(model=TINY, score=ScoreConfig(norm="ratio", patch=3))
    head.calibrate(normal)
    head.save(tmp_path / "v2")
    loaded = PredictionHead.load(tmp_path / "v2")
    np.testing.assert_array_equal(loaded.location.mean, head.location.mean)
    np.testing.assert_array_equal(loaded._series_from_array(test).score, head._series_from_array(test).score)
    assert loaded.calibration == head.calibration and "ratio" in loaded.describe()

    # a format-1 model: PSNR calibration in the manifest, no location statistics, stride 1 (no key)
    head.config = head.config.replace(score=ScoreConfig(stride=1, motion=0.0, smooth_sigma=3.0))  # format 1
    cal = head.calibrate(normal)
    head.save(tmp_path / "v1")
    (tmp_path / "v1" / LOCATION).unlink()
    doc = json.loads((tmp_path / "v1" / "oddeye_model.json").read_text())
    c = doc["calibration"]
    c["psnr_mean"], c["psnr_std"] = -c.pop("score_mean"), c.pop("score_std")
    doc["format_version"] = 1
    cfg = doc.pop("config")
    doc["model"], doc["train"] = cfg["model"], cfg["train"]
    doc["score"] = {"patch": 0, "smooth_sigma": 3.0, "quantile": 0.99, "batch_size": 128}
    (tmp_path / "v1" / "oddeye_model.json").write_text(json.dumps(doc))
    old = PredictionHead.load(tmp_path / "v1")
    assert old.location is None and old.calibration == cal
    assert old.config.score.stride == 1 and old.config.score.motion == 0 and old.config.score.smooth_sigma == 3.0
    sc, _ = old.to_score(old._series_from_array(test))
    np.testing.assert_allclose(sc.frame_scores, head.to_score(head._series_from_array(test))[0].frame_scores,
                               rtol=1e-5)
    assert "PSNR" in sc.reason or "PSNR" in str(old.describe())
    old.config = old.config.replace(score=ScoreConfig(norm="z"))
    with pytest.raises(ModelError, match="per-location"):
        old._series_from_array(test)

    # saved before perspective_copy: a perspective weighed both errors, and still does
    head.config = head.config.replace(score=ScoreConfig(perspective=8.0, perspective_copy=True))
    head.calibrate(normal)
    head.save(tmp_path / "p")
    doc = json.loads((tmp_path / "p" / "oddeye_model.json").read_text())
    cfg = doc.pop("config")
    del cfg["score"]["perspective_copy"]
    doc.update(format_version=2, **cfg)
    (tmp_path / "p" / "oddeye_model.json").write_text(json.dumps(doc))
    assert PredictionHead.load(tmp_path / "p").config == head.config


@pytest.mark.parametrize("bad", [{"norm": "rank"}, {"reduce": "top0"}, {"reduce": "median"}, {"stride": 0},
                                 {"patch": -1}, {"quantile": 1.0}, {"motion_floor": 0.0}])
def test_bad_score_options(bad: dict) -> None:
    (field,) = bad
    with pytest.raises(ConfigError, match=rf"ScoreConfig\.{field}"):
        ScoreConfig(**bad)
