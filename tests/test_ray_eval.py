"""`--ray` on `oddeye eval`: each evaluation's per-item work (videos, folds, pairs, image batches) mapped on a real
local Ray runtime (2 CPUs) gives the metrics and Result of the plain loop."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from contract_prediction import CASES as PREDICTION_CASES
from contract_support import assert_same_result
from oddeye.core import synth
from oddeye.core.imageio import write_image
from oddeye.core.types import Result
from oddeye.scale.batch import ray_mapper
from test_patrol_head import deeppcb_layout
from test_pointcloud_bunny import bunny_dir  # noqa: F401 - the fixture: 10 one-view scans of a sphere

TIMINGS = ("frames_per_s", "frames_per_cpu_s", "points_per_s", "fit_s", "fit_s_per_fold", "pairs_per_s",
           "pairs_per_cpu_s", "images_per_s", "score_s", "torch_threads", "wall_s")


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray runtime with 2 CPUs for the module."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False,
             runtime_env={"env_vars": {"RAY_DEDUP_LOGS": "0"}})
    yield ray
    ray.shutdown()


def _same_metrics(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Equal metrics, speeds aside (NaN equals NaN)."""
    keys = sorted(k for k in a if k not in TIMINGS)
    assert keys == sorted(k for k in b if k not in TIMINGS)
    for k in keys:
        assert json.dumps(a[k], default=str) == json.dumps(b[k], default=str), k


def test_eval_rules_on_ray_is_the_plain_eval(ray_local, tmp_path):
    from oddeye.video.datasets import VideoDataset, VideoItem
    from oddeye.video.rules.evaluate import evaluate_rules

    train = [VideoItem("n", synth.write_frames(synth.make_video(seed=5, n_frames=120, anomaly=None).frames,
                                               tmp_path / "n"))]
    test = []
    for a in ("fast", "big"):
        v = synth.make_video(seed=5, n_frames=80, anomaly=a, anomaly_span=(30, 60))
        test.append(VideoItem(a, synth.write_frames(v.frames, tmp_path / a), v.labels,
                              (lambda m: lambda i: m[i])(v.masks)))
    ds = VideoDataset("synth", tmp_path, train, test)
    plain = evaluate_rules(ds, out=tmp_path / "plain", show_progress=False)
    ray = evaluate_rules(ds, out=tmp_path / "ray", show_progress=False, mapper=ray_mapper(None, 2))
    _same_metrics(plain, ray)
    assert_same_result(Result.load(tmp_path / "plain"), Result.load(tmp_path / "ray"))


def test_eval_prediction_on_ray_scores_the_same_series(ray_local, tmp_path):
    from oddeye.video.datasets import VideoDataset, VideoItem
    from oddeye.video.prediction.evaluate import score_dataset

    case = PREDICTION_CASES[0]
    head = case.make().fit(case.train(tmp_path / "train"), ctx=case.ctx(tmp_path / "fit"))
    ds = VideoDataset("synth", tmp_path, [], [VideoItem(p.stem, p) for p in case.test(tmp_path / "test")])
    plain, _ = score_dataset(head, ds, progress=False)
    ray, speed = score_dataset(head, ds, progress=False, mapper=ray_mapper(None, 2))
    assert speed["frames_per_cpu_s"] is None  # this process did not do the work
    for s, t in zip(plain, ray, strict=True):
        assert s.name == t.name
        for name in ("score", "indices", "times", "maps"):
            np.testing.assert_array_equal(getattr(s, name), getattr(t, name), err_msg=f"{s.name} {name}")


def test_eval_bunny_on_ray_is_the_plain_eval(ray_local, bunny_dir, tmp_path):  # noqa: F811
    from oddeye.pointcloud.evaluate import eval_bunny
    from oddeye.pointcloud.head import PointCloudHead

    def make() -> PointCloudHead:
        return PointCloudHead(target_points=400, adapt=False)

    kw: dict[str, Any] = dict(folds=2, variants=1, progress=False)
    m1, r1 = eval_bunny(bunny_dir, make, out=tmp_path / "plain", **kw)
    m2, r2 = eval_bunny(bunny_dir, make, out=tmp_path / "ray", mapper=ray_mapper(None, 2), **kw)
    _same_metrics(m1, m2)
    assert_same_result(r1, r2)
    assert [s.artefacts.keys() for s in r1.scores] == [s.artefacts.keys() for s in r2.scores]


def test_eval_patrol_cli_on_ray_is_the_plain_eval(ray_local, tmp_path, capsys):
    from oddeye.cli import main

    root = deeppcb_layout(tmp_path / "deeppcb", 3)
    docs, results = [], []
    for how, extra in (("plain", []), ("ray", ["--ray", "--workers", "2"])):
        assert main(["eval", "patrol", "--root", str(root), "--warp", "--no-features", "--threads", "1",
                     "--out", str(tmp_path / how), *extra]) == 0
        docs.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
        results.append(Result.load(tmp_path / how))
    _same_metrics(*docs)
    assert docs[0]["n_samples"] == 3
    assert_same_result(*results)


def test_eval_image_on_ray_is_the_plain_eval(ray_local, tmp_path):
    from oddeye.image.cli import score_fitted_on_ray
    from oddeye.image.evaluate import evaluate

    def items(folder: Path, seed: int, n_normal: int, n_defect: int) -> list[Any]:
        out = []
        for i, s in enumerate(synth.make_image_set(seed=seed, n_normal=n_normal, n_defect=n_defect)):
            path = write_image(folder / f"{i:02d}.png", s.image)
            mask = write_image(folder / f"{i:02d}_mask.png", (s.mask * 255).astype(np.uint8)) if s.label else None
            out.append(SimpleNamespace(path=path, label=s.label, mask_path=mask, defect_type="dent" if s.label
                                       else "good", split="test"))
        return out

    ds = SimpleNamespace(train=items(tmp_path / "train", 1, 10, 0), test=items(tmp_path / "test", 2, 3, 3))
    kw: dict[str, Any] = dict(head="patchcore", coreset=0.2, border=1, extractor={"image_size": 64}, batch_size=2)
    m1, r1, _ = evaluate(ds, **kw)
    score = lambda model, samples, ctx: score_fitted_on_ray(model, samples, ctx, folder=tmp_path / "model",  # noqa
                                                            address=None, db=None, workers=2)
    m2, r2, _ = evaluate(ds, score=score, **kw)
    _same_metrics(m1, m2)
    assert_same_result(r1, r2)
    assert os.path.isfile(tmp_path / "model" / "oddeye_model.json")
