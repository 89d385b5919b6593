"""`--auto` for the point-cloud head on tiny generated clouds: the table and choice in the manifest, `oddeye model
info`, given options kept, the budget, the choice being the validation set's best, fits shared only for score-time
settings, and `eval pointcloud --auto` searching each fold on its training scans alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from auto_support import assert_choice_is_best, assert_info_table
from test_pointcloud_scans import _view
from oddeye.core import auto as A
from oddeye.core.head import read_manifest
from oddeye.core.synth import make_point_cloud
from oddeye.pointcloud import auto as pc_auto
from oddeye.pointcloud.cli import eval_pointcloud, fit_pointcloud
from oddeye.pointcloud.config import PointCloudConfig
from oddeye.pointcloud.io import finish_cloud
from oddeye.pointcloud.plyfile import write_ply
from oddeye.pointcloud.search import SPACE, fit_key

# a small space: FPFH alone (two poolings, one fit), the surface field without and with holes (a second fit)
SMALL = A.SearchSpace("pointcloud", [{}, {"topk": 20}, {"surface_weight": 8.0},
                                     {"surface_weight": 8.0, "hole_weight": 0.3}])
FAST = {"adapt": False, "target_points": 300}  # given options: no adapter, few voxels


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four normal spheres (2,000 points each) as PLY files."""
    d = tmp_path_factory.mktemp("auto") / "train"
    for s in range(4):
        write_ply(d / f"normal_{s}.ply", make_point_cloud(seed=s, n_points=2000).points)
    return d


@pytest.fixture(scope="module")
def fitted(train_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("auto") / "model"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pc_auto, "SPACE", SMALL)
        fit_pointcloud(train=[train_dir], out=out, progress=False, auto=True, **FAST)
    return out


def test_the_declared_space_applies_and_puts_the_defaults_first() -> None:
    assert SPACE.candidates[0] == {} and len(SPACE.candidates) <= 10
    SPACE.check(PointCloudConfig())
    # the score-time candidates share fits: one fit without the surface field, one with it
    assert len({json.dumps(fit_key(A.apply(PointCloudConfig(), c)), sort_keys=True) for c in SPACE.candidates}) == 2


def test_fits_are_shared_only_where_the_settings_change_scoring_alone() -> None:
    c = PointCloudConfig(surface_weight=8.0)
    assert fit_key(c) == fit_key(c.replace(hole_weight=0.3, surface_weight=4.0, feature_weight=1.0, smooth_k=3))
    assert fit_key(c) != fit_key(c.replace(surface_weight=0.0))  # no surface field is fitted then
    assert fit_key(c) != fit_key(c.replace(position_weight=4.0)) and fit_key(c) != fit_key(c.replace(adapt=False))


def test_auto_writes_the_table_and_choice_into_the_manifest(fitted: Path) -> None:
    doc = read_manifest(fitted, head="pointcloud")
    auto = doc["auto"]
    assert [t["settings"] for t in auto["trials"]] == SMALL.candidates
    assert all(t["status"] == "ok" and 0 <= t["auroc"] <= 1 and t["fit_s"] > 0 for t in auto["trials"])
    # 1 of the 4 clouds validates, in turn in 2 disjoint parts: 3 resamplings, each clean and with the 5 defect kinds
    assert auto["n_fit"] == 3 and auto["n_val_normal"] == 2 * 3 and auto["n_val_anomalous"] == 2 * 3 * 5
    (a,), (b,) = auto["val_clouds"]
    assert a != b and {a, b} < {f"normal_{s}" for s in range(4)}
    assert [t["auroc"] for t in auto["trials"]] == pytest.approx(np.mean(auto["auroc_per_part"], axis=0).tolist())
    assert auto["n_final"] == 4 and doc["fit"]["n_clouds"] == 4  # the choice is fitted on all the clouds
    assert A.merge(doc["config"], auto["chosen_settings"]) == doc["config"]
    assert doc["config"]["adapt"] is False and doc["config"]["target_points"] == 300  # given: kept


def test_the_choice_is_the_best_on_the_validation_set(fitted: Path) -> None:
    auto = read_manifest(fitted)["auto"]
    assert_choice_is_best(auto)


def test_the_choice_follows_the_data_not_the_order(train_dir: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # kNN distances averaged over the whole cloud cannot see a defect; the default pooling (top 5) can
    monkeypatch.setattr(pc_auto, "SPACE", A.SearchSpace("pointcloud", [{"topk": 100000, "smooth_k": 100000}, {}]))
    fit_pointcloud(train=[train_dir], out=tmp_path / "m", progress=False, auto=True, **FAST)
    auto = read_manifest(tmp_path / "m")["auto"]
    assert auto["trials"][0]["auroc"] < auto["trials"][1]["auroc"] - A.TIE and auto["chosen"] == 1


def test_given_options_stay_fixed(train_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pc_auto, "SPACE", SMALL)
    fit_pointcloud(train=[train_dir], out=tmp_path / "m", progress=False, auto=True, hole_weight=0.05, **FAST)
    doc = read_manifest(tmp_path / "m")
    tried = [t["settings"] for t in doc["auto"]["trials"]]
    assert tried == [{}, {"topk": 20}, {"surface_weight": 8.0}]  # the last candidate became the third
    assert doc["config"]["hole_weight"] == 0.05


def test_model_info_prints_the_table(fitted: Path) -> None:
    assert_info_table(fitted, "pointcloud", len(SMALL.candidates))


def test_a_small_budget_says_what_was_skipped(train_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pc_auto, "SPACE", SMALL)
    fit_pointcloud(train=[train_dir], out=tmp_path / "m", progress=False, auto=True, auto_minutes=1e-4, **FAST)
    printed = capsys.readouterr().out
    auto = read_manifest(tmp_path / "m")["auto"]
    n = len(SMALL.candidates)
    assert [t["status"].split(":")[0] for t in auto["trials"]] == ["ok"] + ["skipped"] * (n - 1)
    assert auto["chosen"] == 0 and f"{n - 1} not tried" in printed and printed.count("[skipped: budget") == n - 1


def test_the_validation_defects_are_seeded_and_touch_sparse_clouds() -> None:
    clouds = [finish_cloud(make_point_cloud(seed=9, n_points=2000).points, "ball")]
    a, labels = pc_auto.validation_set(clouds, seed=0, variants=2)
    b, _ = pc_auto.validation_set(clouds, seed=0, variants=2)
    c, _ = pc_auto.validation_set(clouds, seed=1, variants=2)
    assert labels.tolist() == [0, 1, 1, 1, 1, 1] * 2 and [x.name for x in a][:2] == ["ball_v0_clean", "ball_v0_dent"]
    assert all(np.array_equal(x.points, y.points) for x, y in zip(a, b))
    assert not np.array_equal(a[1].points, c[1].points)


def test_eval_auto_searches_each_fold_on_its_training_scans_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture) -> None:
    names = ("a", "b", "c", "d")
    lines = []
    for i, n in enumerate(names):
        write_ply(tmp_path / "part" / f"{n}.ply", _view(i, 3000))
        lines.append(f"bmesh {n}.ply 0 0 0 0 0 0 1")
    (tmp_path / "part" / "part.conf").write_text("\n".join(lines) + "\n")
    seen: list[list[str]] = []
    real = pc_auto.auto_search

    def spy(base, samples, **kw):
        seen.append([c.name for c in samples])
        return real(base, samples, **kw)

    monkeypatch.setattr(pc_auto, "auto_search", spy)
    monkeypatch.setattr(pc_auto, "SPACE", A.SearchSpace("pointcloud", [{}, {"surface_weight": 8.0}]))
    line = eval_pointcloud(dataset="scan-defects", root=tmp_path / "part", out=tmp_path / "res", folds=1,
                           variants=1, adapt=False, auto=True)
    # fold 0 holds out a and c (folds of 4 scans: (a, c), (b, d)): the search saw b and d only
    assert seen == [["b", "d"]]
    assert line["auto"][0] in ({}, {"surface_weight": 8.0}) and 0 <= line["auto_val_auroc"][0] <= 1
    assert line["auto_s"] > 0 and 0 <= line["object_auroc"] <= 1
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["auto"] == line["auto"]
    result = json.loads((tmp_path / "res" / "result.json").read_text())
    assert result["meta"]["auto"][0]["fold"] == 0 and sorted(result["meta"]["auto"][0]["val_clouds"]) == [["b"], ["d"]]
