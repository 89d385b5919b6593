"""Frame-prediction head: training, checkpoints, save/load, scoring a synthetic anomaly, bad model dirs."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from oddeye.core.errors import ConfigError, InputError, ModelError
from oddeye.core.head import RunContext, write_manifest
from oddeye.core.metrics import auroc
from oddeye.core.synth import make_video, write_frames, write_video_file
from oddeye.video.prediction.config import PredictionConfig, PredictorConfig, ScoreConfig, TrainConfig
from oddeye.video.prediction.head import PredictionHead, split_validation
from oddeye.video.prediction.model import Generator
from oddeye.video.prediction.train import CHECKPOINT, Trainer

SIZE = 32
TINY = PredictorConfig(size=SIZE, past=3, channels=(8, 16, 16), heads=2, d_channels=4)


def _small(frames: np.ndarray) -> np.ndarray:
    return np.stack([cv2.resize(f, (SIZE, SIZE), interpolation=cv2.INTER_AREA) for f in frames])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[PredictionHead, Path, dict]:
    """A tiny head trained briefly on normal synthetic videos (frame folders), saved to a model dir."""
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("pred")
    srcs = [write_frames(make_video(seed=s, anomaly=None, n_frames=80).frames, d / f"train{s}") for s in (1, 2, 3)]
    test = make_video(seed=9, anomaly="fast")
    test_dir = write_frames(test.frames, d / "test")
    head = PredictionHead(model=TINY, train=TrainConfig(minutes=2, max_steps=60, batch_size=8, checkpoint_every_s=1e9),
                          score=ScoreConfig(patch=0))
    head.fit(srcs, ctx=RunContext(out=d / "model", progress=False))
    assert (d / "model" / CHECKPOINT).is_file()
    head.save(d / "model")
    return head, d / "model", {"test": test, "test_dir": test_dir, "dir": d}


def test_generator_shapes() -> None:
    g = Generator(TINY)
    clip = torch.zeros(2, TINY.past, 1, SIZE, SIZE)
    assert tuple(g(clip).shape) == (2, 1, SIZE, SIZE)
    with pytest.raises(ConfigError, match=r"PredictorConfig\.heads"):
        PredictorConfig(channels=(8, 16, 18), heads=4)
    with pytest.raises(ConfigError, match=r"PredictorConfig\.size: must be a multiple of 8"):
        PredictorConfig(size=36)
    with pytest.raises(ConfigError, match=r"PredictorConfig\.past"):
        PredictorConfig(past=1)


def test_loss_decreases_on_a_fixed_batch() -> None:
    torch.set_num_threads(1)
    vids = [_small(make_video(seed=1, anomaly=None, n_frames=40).frames)]
    tr = Trainer(TINY, TrainConfig(batch_size=4, lr_g=1e-3), vids)
    batch = tr._batch(np.random.default_rng(0))
    first = tr.train_step(batch)["int"]
    for _ in range(15):
        last = tr.train_step(batch)["int"]
    assert last < 0.7 * first


def test_checkpoint_resume_continues_at_saved_step(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    vids = [_small(make_video(seed=2, anomaly=None, n_frames=30).frames)]
    cfg = TrainConfig(minutes=1, max_steps=3, batch_size=2)
    tr = Trainer(TINY, cfg, vids)
    tr.run(tmp_path, progress=False)
    assert (tmp_path / CHECKPOINT).is_file() and tr.step == 3
    tr2 = Trainer(TINY, cfg, vids)
    tr2.load_checkpoint(tmp_path)
    assert tr2.step == 3 and tr2.train_seconds == pytest.approx(tr.train_seconds)
    for (k, a), b in zip(tr.g.state_dict().items(), tr2.g.state_dict().values()):
        assert torch.equal(a, b), k
    assert tr2.opt_g.state  # Adam moments came back too
    tr2.run(tmp_path, progress=False)
    assert tr2.step == 6
    other = Trainer(PredictorConfig(size=SIZE, past=2, channels=(8, 16, 16), heads=2), cfg, vids)
    with pytest.raises(ModelError, match="other model sizes"):
        other.load_checkpoint(tmp_path)
    with pytest.raises(ModelError, match="no checkpoint"):
        Trainer(TINY, cfg, vids).load_checkpoint(tmp_path / "nothing")


def test_fast_anomaly_scores_higher(trained: tuple[PredictionHead, Path, dict]) -> None:
    head, _, data = trained
    res = head.score([data["test_dir"]], ctx=RunContext(progress=False))
    sc = res.scores[0]
    assert len(sc.frame_scores) == 120 and sc.frame_indices.tolist() == list(range(120))
    assert auroc(data["test"].labels, sc.frame_scores) > 0.75
    assert res.threshold == head.calibration.threshold and np.isfinite(res.threshold)
    assert sc.maps["peak_error"].values.shape == (SIZE, SIZE)
    assert any(e.start_frame >= 55 for e in res.events)


def test_save_load_identical_scores(trained: tuple[PredictionHead, Path, dict]) -> None:
    head, model_dir, data = trained
    a = head.score([data["test_dir"]], ctx=RunContext(progress=False)).scores[0].frame_scores
    loaded = PredictionHead.load(model_dir)
    b = loaded.score([data["test_dir"]], ctx=RunContext(progress=False)).scores[0].frame_scores
    np.testing.assert_array_equal(a, b)
    assert loaded.calibration == head.calibration and loaded.config == head.config and loaded.config.model == TINY
    assert "threshold" in loaded.describe()


def test_model_dir_from_another_head(tmp_path: Path) -> None:
    write_manifest(tmp_path, "image-patchcore")
    with pytest.raises(ModelError, match="image-patchcore"):
        PredictionHead.load(tmp_path)
    with pytest.raises(ModelError, match="not an oddeye model"):
        PredictionHead.load(tmp_path / "..")


def test_truncated_video_scores_frames_it_has(trained: tuple[PredictionHead, Path, dict], tmp_path: Path) -> None:
    head, _, data = trained
    full = write_video_file(data["test"].frames, tmp_path / "full.mp4", fps=25)
    import av

    with av.open(str(full)) as c_in, av.open(str(tmp_path / "cut.avi"), "w") as c_out:
        s = c_out.add_stream("mpeg4", rate=25)
        s.width, s.height, s.pix_fmt = 160, 120, "yuv420p"
        for f in c_in.decode(video=0):
            for p in s.encode(f):
                c_out.mux(p)
        for p in s.encode():
            c_out.mux(p)
    data_b = (tmp_path / "cut.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(data_b[: len(data_b) // 2])
    head1 = copy.copy(head)
    head1.config = head.config.replace(score=head.config.score.replace(stride=1))  # 5 frames survive: < past x 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sc = head1.score([tmp_path / "cut.avi"], ctx=RunContext(progress=False)).scores[0]
    n = sc.meta["truncated_at"]
    assert 0 < n < 120 and len(sc.frame_scores) == n and f"the {n} frames before the cut" in sc.reason
    assert any("stopped at frame" in str(w.message) for w in caught)


def test_split_validation_and_bad_inputs(tmp_path: Path) -> None:
    vids = [(f"v{i}", np.zeros((20, 8, 8), np.uint8)) for i in range(10)]
    tr, va = split_validation(vids, 0.1, 3, 0)
    assert len(va) == 1 and len(tr) == 9 and not {n for n, _ in va} & {n for n, _ in tr}
    tr, va = split_validation([("one", np.zeros((100, 8, 8), np.uint8))], 0.1, 3, 0)
    assert len(tr[0][1]) == 89 and len(va[0][1]) == 11  # at least past + 8 frames held out
    with pytest.raises(InputError, match="too short"):
        split_validation([("short", np.zeros((14, 8, 8), np.uint8))], 0.1, 3, 0)
    head = PredictionHead(model=TINY)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no frames"):
        head.score([tmp_path / "empty"], ctx=RunContext(progress=False))


def test_one_config_overrides_and_refusals() -> None:
    head = PredictionHead(model=TINY, score={"motion": 0.0})
    assert isinstance(head.config, PredictionConfig) and head.config.model == TINY
    assert head.config.score == ScoreConfig(motion=0.0) and head.config.train == TrainConfig()
    assert PredictionHead(head.config, train=TrainConfig(seed=3)).config.train.seed == 3
    with pytest.raises(ConfigError, match="no_such_setting"):
        PredictionHead(no_such_setting=1)
    with pytest.raises(ConfigError, match=r"PredictionConfig\.score\.stride: must be >= 1"):
        PredictionHead(score={"stride": 0})
    with pytest.raises(ConfigError, match=r"PredictionConfig\.score\.motion_gap"):
        PredictionConfig(model=TINY, score=ScoreConfig(motion_gap=TINY.past + 1))
    with pytest.raises(ConfigError, match="expected a PredictionConfig, got PredictorConfig"):  # old positional call
        PredictionHead(TINY)  # type: ignore[arg-type]


def test_fit_context_resume_needs_out_and_callback_sees_the_trainer(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    srcs = [write_frames(make_video(seed=s, anomaly=None, n_frames=30).frames, tmp_path / f"t{s}") for s in (1, 2, 3)]
    head = PredictionHead(model=TINY, train=TrainConfig(max_steps=2, batch_size=2))
    with pytest.raises(InputError, match="oddeye fit video-prediction"):
        head.fit(srcs, ctx=RunContext(resume=True, progress=False))
    seen: list[int] = []
    head.fit(srcs, ctx=RunContext(progress=False, callback=lambda tr: seen.append(tr.step), callback_every_s=1e-9))
    assert seen == [1, 2] and head.train_info["steps"] == 2
    assert not list(tmp_path.glob("**/" + CHECKPOINT))  # no ctx.out: no checkpoints


def test_skip_bad_records_unreadable_videos_and_scores_the_rest(trained: tuple[PredictionHead, Path, dict],
                                                                tmp_path: Path) -> None:
    head, _, data = trained
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all" * 10)
    short = write_frames(make_video(seed=3, anomaly=None, n_frames=4).frames, tmp_path / "short")
    samples = [tmp_path / "empty", data["test_dir"], tmp_path / "broken.mp4", short]
    with pytest.raises(InputError, match="empty"):
        head.score(samples, ctx=RunContext(progress=False))
    res = head.score(samples, ctx=RunContext(progress=False, skip_bad=True))
    assert [s.sample_id for s in res.scores] == ["empty", "test", "broken.mp4", "short"]
    bad = res.errors()
    assert [s.sample_id for s in bad] == ["empty", "broken.mp4", "short"]
    assert all(np.isnan(s.score) and s.reason.startswith("error: ") and s.meta["path"] for s in bad)
    assert "past x stride" in bad[2].meta["error"]
    good = res.get("test")
    alone = head.score([data["test_dir"]], ctx=RunContext(progress=False)).get("test")
    np.testing.assert_array_equal(good.frame_scores, alone.frame_scores)
    lean = head.score([data["test_dir"]], ctx=RunContext(progress=False, keep_maps=False)).scores[0]
    assert "peak_error" not in lean.maps and "peak_error" in good.maps


def test_model_folder_saved_before_the_config_loads_and_scores_the_same(trained: tuple[PredictionHead, Path, dict],
                                                                        tmp_path: Path) -> None:
    """A format-2 manifest (model=..., score=..., train=... keys, no "config") loads with the same settings."""
    import shutil

    head, model_dir, data = trained
    old = Path(shutil.copytree(model_dir, tmp_path / "format2"))
    doc = json.loads((old / "oddeye_model.json").read_text())
    cfg = doc.pop("config")
    doc.update(format_version=2, model=cfg["model"], score=cfg["score"], train=cfg["train"])
    (old / "oddeye_model.json").write_text(json.dumps(doc))
    loaded = PredictionHead.load(old)
    assert loaded.config == head.config and loaded.calibration == head.calibration
    a = head.score([data["test_dir"]], ctx=RunContext(progress=False))
    b = loaded.score([data["test_dir"]], ctx=RunContext(progress=False))
    np.testing.assert_array_equal(a.scores[0].frame_scores, b.scores[0].frame_scores)
    assert a.threshold == b.threshold and len(a.events) == len(b.events)
    # a model folder written by a newer oddeye is refused, not misread
    doc["format_version"] = 99
    (old / "oddeye_model.json").write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="newer oddeye"):
        PredictionHead.load(old)


def test_in_memory_frames_score_like_the_same_frames_on_disk(trained: tuple[PredictionHead, Path, dict]) -> None:
    head, _, data = trained
    frames = data["test"].frames  # (T, H, W, 3) uint8, as a live reader hands them over
    from_disk = head.score([data["test_dir"]], ctx=RunContext(progress=False)).scores[0]
    res = head.score([frames, frames[:40]], ctx=RunContext(progress=False))
    assert [s.sample_id for s in res.scores] == ["video 0", "video 1"]
    np.testing.assert_allclose(res.scores[0].frame_scores, from_disk.frame_scores, rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match="uint8"):
        head.score([frames.astype(np.float32)], ctx=RunContext(progress=False))
