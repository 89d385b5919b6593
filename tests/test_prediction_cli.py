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
    assert rc == 2 and "pointcloud" in capsys.readouterr().err


def test_fit_bad_inputs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["fit", "video-prediction", "--out", str(tmp_path / "m")]) == 2
    assert "no training data" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["fit", "video-prediction", "--frames", str(tmp_path / "empty"), "--out", str(tmp_path / "m")]) == 2
    assert "empty" in capsys.readouterr().err
    assert main(["fit", "video-prediction", "--video", str(tmp_path / "none.mp4"), "--out", str(tmp_path / "m")]) == 2
    assert "none.mp4" in capsys.readouterr().err


def test_eval_unknown_dataset(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["eval", "video", "--dataset", "kitti", "--root", str(tmp_path)]) == 2
    assert "unknown video data set" in capsys.readouterr().err
