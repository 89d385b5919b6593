"""`oddeye fit video-prediction` and `oddeye score video` end to end on tiny generated data; CLI errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from oddeye.cli import main
from oddeye.core.head import write_manifest
from oddeye.core.synth import make_video, write_frames, write_video_file


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("vcli")
    write_frames(make_video(seed=1, anomaly=None, n_frames=40, size=(64, 80)).frames, d / "train" / "a")
    write_frames(make_video(seed=2, anomaly=None, n_frames=40, size=(64, 80)).frames, d / "train" / "b")
    write_video_file(make_video(seed=3, anomaly="fast", n_frames=60, anomaly_span=(30, 50), size=(64, 80)).frames,
                     d / "test.mp4", 25)
    return d


def test_fit_then_score_writes_result_timeline_and_store(data: Path, capsys: pytest.CaptureFixture) -> None:
    rc = main(["fit", "video-prediction", "--frames", str(data / "train"), "--out", str(data / "model"),
               "--minutes", "0.5", "--size", "32", "--max-steps", "3", "--batch-size", "2"])
    assert rc == 0
    man = json.loads((data / "model" / "oddeye_model.json").read_text())
    assert man["head"] == "video-prediction" and man["train_info"]["steps"] == 3
    assert "threshold" in capsys.readouterr().out
    rc = main(["fit", "video-prediction", "--frames", str(data / "train"), "--out", str(data / "model"),
               "--minutes", "0.5", "--size", "32", "--max-steps", "2", "--batch-size", "2", "--resume"])
    assert rc == 0
    man = json.loads((data / "model" / "oddeye_model.json").read_text())
    assert man["train_info"]["steps"] == 5  # continued from step 3
    res = data / "res"
    rc = main(["score", "video", str(data / "model"), str(data / "test.mp4"), "--out", str(res)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "threshold" in out and (res / "result.json").is_file() and (res / "store.db").is_file()
    assert (res / "timeline_test.mp4.png").stat().st_size > 1000
    doc = json.loads((res / "result.json").read_text())
    assert doc["head"] == "video-prediction" and len(doc["scores"]) == 1


def test_score_with_model_of_another_head(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_manifest(tmp_path / "m", "pointcloud")
    rc = main(["score", "video", str(tmp_path / "m"), str(data / "test.mp4"), "--out", str(tmp_path / "r")])
    assert rc == 2 and "`oddeye score pointcloud`" in capsys.readouterr().err


def _model(data: Path) -> Path:
    """The model of test_fit_then_score (fitted here when that test did not run first)."""
    if not (data / "model" / "oddeye_model.json").is_file():
        assert main(["fit", "video-prediction", "--frames", str(data / "train"), "--out", str(data / "model"),
                     "--minutes", "0.5", "--size", "32", "--max-steps", "2", "--batch-size", "2"]) == 0
    return data / "model"


def test_score_refuses_a_bad_input_before_loading_the_model(data: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    write_manifest(tmp_path / "m", "video-prediction")  # no weights: loading it would fail
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.mp4").write_bytes(b"garbage" * 20)
    assert main(["score", "video", str(tmp_path / "m"), str(tmp_path / "in"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "a.mp4" in err and "--skip-bad" in err and "generator" not in err
    assert main(["score", "video", str(tmp_path / "m"), str(tmp_path / "nothing.mp4")]) == 2
    assert "nothing.mp4" in capsys.readouterr().err


def test_score_skip_bad_records_the_bad_video_and_scores_the_rest(data: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    import shutil

    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(data / "test.mp4", inputs / "01_good.mp4")
    (inputs / "02_bad.mp4").write_bytes(b"garbage" * 20)
    model = _model(data)
    capsys.readouterr()
    assert main(["score", "video", str(model), str(inputs), "--out", str(tmp_path / "r")]) == 2
    assert "02_bad.mp4" in capsys.readouterr().err and not (tmp_path / "r").exists()
    assert main(["score", "video", str(model), str(inputs), "--out", str(tmp_path / "r"), "--skip-bad"]) == 0
    out = capsys.readouterr()
    assert "skipped" in out.err and "02_bad.mp4" in out.err
    doc = json.loads((tmp_path / "r" / "result.json").read_text())
    by_id = {s["sample_id"]: s for s in doc["scores"]}
    assert "error" in by_id["02_bad.mp4"]["meta"] and "error" not in by_id["01_good.mp4"]["meta"]
    assert (tmp_path / "r" / "timeline_01_good.mp4.png").is_file()


def test_fit_with_a_config_file_and_options_on_top(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps({"model": {"size": 16, "past": 2, "channels": [4, 8, 8], "heads": 2},
                               "train": {"max_steps": 2, "batch_size": 2}, "score": {"motion_gap": 2}}))
    assert main(["fit", "video-prediction", "--frames", str(data / "train"), "--out", str(tmp_path / "m"),
                 "--config", str(cfg), "--seed", "4", "--no-progress"]) == 0
    man = json.loads((tmp_path / "m" / "oddeye_model.json").read_text())
    assert man["config"]["model"]["size"] == 16 and man["config"]["train"]["seed"] == 4
    assert man["train_info"]["steps"] == 2
    # a model's manifest reuses its settings
    assert main(["fit", "video-prediction", "--frames", str(data / "train"), "--out", str(tmp_path / "m2"),
                 "--config", str(tmp_path / "m" / "oddeye_model.json"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "m2" / "oddeye_model.json").read_text())["config"] == man["config"]
    capsys.readouterr()
    cfg.write_text(json.dumps({"model": {"size": 20}}))
    assert main(["fit", "video-prediction", "--frames", str(data / "train"), "--out", str(tmp_path / "m3"),
                 "--config", str(cfg)]) == 2
    assert "PredictionConfig.model.size: must be a multiple of 8" in capsys.readouterr().err
    assert main(["fit", "video-prediction", "--frames", str(data / "train"), "--out", str(tmp_path / "m3"),
                 "--size", "20"]) == 2
    err = capsys.readouterr().err
    assert "PredictionConfig.model.size" in err and "--size" in err


def test_fit_bad_inputs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["fit", "video-prediction", "--out", str(tmp_path / "m")]) == 2
    assert "no training data" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["fit", "video-prediction", "--frames", str(tmp_path / "empty"), "--out", str(tmp_path / "m")]) == 2
    assert "empty" in capsys.readouterr().err
    assert main(["fit", "video-prediction", "--video", str(tmp_path / "none.mp4"), "--out", str(tmp_path / "m")]) == 2
    assert "none.mp4" in capsys.readouterr().err


def _fake_ped2(root: Path) -> Path:
    """A two-clip UCSD-Ped2-style layout (frames, ped2.mat, masks tar.gz) from synthetic video."""
    import io
    import tarfile

    import cv2
    import numpy as np
    import scipy.io as sio

    write_frames(make_video(seed=4, anomaly=None, n_frames=40, size=(64, 80)).frames,
                 root / "training" / "frames" / "01", ext=".jpg")
    gt = np.empty((1, 2), dtype=object)
    with tarfile.open(root / "ucsd_ped2_pixel_gt_bmp.tar.gz", "w:gz") as tf:
        for k in (1, 2):
            v = make_video(seed=10 + k, anomaly="fast", n_frames=50, anomaly_span=(20, 40), size=(64, 80))
            write_frames(v.frames, root / "testing" / "frames" / f"{k:02d}", ext=".jpg")
            gt[0, k - 1] = np.array([[21], [40]])
            for i, m in enumerate(v.masks):
                buf = cv2.imencode(".bmp", m.astype(np.uint8) * 255)[1].tobytes()
                info = tarfile.TarInfo(f"UCSDped2/Test/Test{k:03d}_gt/{i + 1:03d}.bmp")
                info.size = len(buf)
                tf.addfile(info, io.BytesIO(buf))
    sio.savemat(root / "ped2.mat", {"gt": gt})
    return root


def test_eval_video_prediction_contract(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = _fake_ped2(tmp_path / "ped2")
    _model(data)
    capsys.readouterr()
    rc = main(["eval", "video", "--dataset", "ucsd-ped2", "--root", str(root), "--head", "prediction",
               "--model", str(data / "model"), "--out", str(tmp_path / "ev"), "--json", str(tmp_path / "m.json")])
    assert rc == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    doc = json.loads(last)
    for key in ("frame_auroc_micro", "frame_auroc_macro", "pixel_auroc", "train_minutes", "frames_per_s",
                "dataset", "n_samples", "wall_s"):
        assert key in doc, key
    assert doc["dataset"] == "ucsd-ped2" and doc["n_samples"] == 100 and 0 <= doc["frame_auroc_micro"] <= 1
    assert doc["frame_auroc_micro"] > 0.6  # a fast runner is harder to predict even for an untrained copy-like model
    assert json.loads((tmp_path / "m.json").read_text()) == doc
    assert (tmp_path / "ev" / "store.db").is_file()
    assert main(["eval", "video", "--dataset", "ucsd-ped2", "--root", str(root), "--model", str(data / "model"),
                 "--perspective", "32"]) == 2  # a saved model keeps its own score settings
    assert "--perspective" in capsys.readouterr().err
    assert main(["eval", "video", "--dataset", "ucsd-ped2", "--root", str(root), "--model", str(data / "model"),
                 "--motion", "0.5"]) == 2
    assert "--motion" in capsys.readouterr().err


def test_eval_video_trains_with_the_score_options(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = _fake_ped2(tmp_path / "ped2")
    out = tmp_path / "ev"
    assert main(["eval", "video", "--dataset", "ucsd-ped2", "--root", str(root), "--minutes", "0.01",
                 "--perspective", "32", "--motion", "0.5", "--out", str(out)]) == 0
    score = json.loads((out / "model" / "oddeye_model.json").read_text())["config"]["score"]
    assert score["perspective"] == 32 and score["motion"] == 0.5 and score["perspective_copy"] is False
    assert 0 <= json.loads(capsys.readouterr().out.strip().splitlines()[-1])["frame_auroc_micro"] <= 1


def test_eval_unknown_dataset(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["eval", "video", "--dataset", "kitti", "--root", str(tmp_path)]) == 2
    assert "unknown video data set" in capsys.readouterr().err


def test_eval_video_rules_contract_writes_store(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from oddeye.store.api import open_store

    root = _fake_ped2(tmp_path / "ped2")
    rc = main(["eval", "video", "--dataset", "ucsd-ped2", "--root", str(root), "--head", "rules",
               "--out", str(tmp_path / "ev")])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert doc["dataset"] == "ucsd-ped2" and doc["head"] == "rules" and 0 <= doc["frame_auroc_micro"] <= 1
    store = open_store(tmp_path / "ev" / "store.db")
    runs = store.runs()
    assert len(runs) == 1 and runs[0]["head"] == "video-rules"


def test_fit_score_stride_is_stored_and_used(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = main(["fit", "video-prediction", "--frames", str(data / "train"), "--out", str(tmp_path / "m1"),
               "--minutes", "0.5", "--size", "32", "--max-steps", "2", "--batch-size", "2", "--score-stride", "1",
               "--motion", "0", "--perspective", "4"])
    assert rc == 0
    score = json.loads((tmp_path / "m1" / "oddeye_model.json").read_text())["config"]["score"]
    assert score["stride"] == 1 and score["motion"] == 0 and score["perspective"] == 4
    assert "predicted from t-" not in capsys.readouterr().out  # describe() names the stride only when > 1
    assert main(["fit", "video-prediction", "--frames", str(data / "train"), "--out", str(tmp_path / "m0"),
                 "--score-stride", "0"]) == 2
    assert "--score-stride" in capsys.readouterr().err
    assert main(["fit", "video-prediction", "--frames", str(data / "train"), "--out", str(tmp_path / "m0"),
                 "--motion", "-1"]) == 2
    assert "--motion" in capsys.readouterr().err
    assert main(["fit", "video-prediction", "--frames", str(data / "train"), "--out", str(tmp_path / "m0"),
                 "--perspective", "0.5"]) == 2
    assert "--perspective" in capsys.readouterr().err
