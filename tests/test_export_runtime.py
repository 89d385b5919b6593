"""The torch-free runtime in a virtualenv of its own: only the `runtime` extra's requirements from the package
registry (pip's cache reused), oddeye's source on PYTHONPATH. It scores demo images and a demo video and matches
`oddeye score image` / `oddeye score video` within 1e-3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from oddeye.core.head import RunContext
from oddeye.core.imageio import write_image
from oddeye.core.synth import make_image_set, make_video, write_frames
from oddeye.core.types import Result
from oddeye.export.api import export_model
from oddeye.image.cli import score_image
from oddeye.image.patchcore import PatchCoreHead

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TOL = 1e-3
OFFLINE = ("NewConnectionError", "Temporary failure in name resolution", "Network is unreachable",
           "No matching distribution found", "Could not find a version that satisfies", "ConnectTimeoutError")


def requirements() -> list[str]:
    """The `runtime` extra of pyproject.toml."""
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["runtime"]


@pytest.fixture(scope="module")
def venv_python(tmp_path_factory) -> Path:
    """A fresh virtualenv with the runtime extra's requirements only; skipped where the registry is unreachable."""
    d = tmp_path_factory.mktemp("runtime") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(d)], check=True, timeout=300)
    py = d / "bin" / "python"
    pip = subprocess.run([str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q", *requirements()],
                         capture_output=True, text=True, timeout=1200)
    if pip.returncode != 0:
        if any(s in pip.stderr for s in OFFLINE):
            pytest.skip(f"the package registry is unreachable from here: {pip.stderr.strip().splitlines()[-1]}")
        pytest.fail(f"pip install {' '.join(requirements())} failed:\n{pip.stderr[-3000:]}")
    return py


def run_runtime(py: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m oddeye.runtime ARGS` in the runtime virtualenv, oddeye's source on the path (not installed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([str(py), "-m", "oddeye.runtime", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_the_virtualenv_has_no_torch(venv_python):
    probe = subprocess.run([str(venv_python), "-c", "import torch"], capture_output=True, text=True, timeout=60)
    assert "No module named 'torch'" in probe.stderr


def test_runtime_venv_matches_score_image(venv_python, tmp_path):
    demo = make_image_set(seed=2, n_normal=4, n_defect=4)
    for i, s in enumerate(demo):
        write_image(tmp_path / "test" / f"{i:02d}.png", s.image)
    train = [s.image for s in make_image_set(seed=1, n_normal=24, n_defect=0)]
    PatchCoreHead(coreset=0.25, extractor={"image_size": 128, "bf16": False}).fit(
        train, ctx=RunContext(progress=False)).save(tmp_path / "model")
    export_model(tmp_path / "model", tmp_path / "export")
    written = score_image(tmp_path / "model", [tmp_path / "test"], out=tmp_path / "scored", db=None)
    result = Result.load(written.result_json)
    want = {Path(s.meta["path"]).name: s for s in result.scores}
    run = run_runtime(venv_python, str(tmp_path / "export" / "model.onnx"), str(tmp_path / "test"),
                      "--out", str(tmp_path / "runtime"))
    assert run.returncode == 0, run.stderr
    got = json.loads((tmp_path / "runtime" / "scores.json").read_text())["results"]
    assert len(got) == len(want) == 8
    for r in got:
        ref = want[Path(r["input"]).name]
        assert abs(r["score"] - ref.score) <= TOL * abs(ref.score)
        ref_map, amap = ref.maps["anomaly"].values, np.load(r["map"])
        assert np.abs(ref_map - amap).max() <= TOL * np.abs(ref_map).max()
        assert r["anomalous"] == (ref.score > result.threshold)


def test_runtime_venv_matches_score_video(venv_python, tmp_path):
    from contract_prediction import TINY
    from contract_prediction import _train as video_train

    from oddeye.video.prediction.head import PredictionHead

    head = PredictionHead(TINY, device="cpu").fit(video_train(tmp_path), ctx=RunContext(progress=False))
    head.save(tmp_path / "model")
    export_model(tmp_path / "model", tmp_path / "export")
    clip = write_frames(make_video(seed=8, anomaly="fast", n_frames=30, anomaly_span=(15, 28), size=(48, 64)).frames,
                        tmp_path / "clip")
    run = run_runtime(venv_python, str(tmp_path / "export"), str(clip), "--out", str(tmp_path / "runtime"))
    assert run.returncode == 0, run.stderr
    s = head.video_series(clip)
    want = (s.score - head.calibration.score_mean) / head.calibration.score_std
    got = np.load(json.loads((tmp_path / "runtime" / "scores.json").read_text())["results"][0]["z"])
    assert np.abs(want - got).max() <= TOL * np.abs(want).max()


def test_runtime_venv_refuses_a_wrong_export(venv_python, tmp_path):
    (tmp_path / "x").mkdir()
    run = run_runtime(venv_python, str(tmp_path / "x"), str(tmp_path))
    assert run.returncode == 2 and "holds no oddeye_export.json" in run.stderr
