"""`--auto` for the patrol head on tiny generated routes and boards: the table and choice in the manifest, `oddeye
model info`, the choice being the validation set's best (recomputed), given options fixed, the budget, the normal
and changed validation pairs, and `eval patrol --auto` reading only the trainval split's templates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from auto_support import assert_choice_is_best, assert_info_table
from oddeye.core import auto as A
from oddeye.core import metrics, synth
from oddeye.core.anomalies.patrol import make_patrol_change, make_patrol_normal, second_run
from oddeye.core.head import read_manifest
from oddeye.patrol import auto as patrol_auto
from oddeye.patrol import deeppcb
from oddeye.patrol import search as patrol_search
from oddeye.patrol.cli import eval_patrol, fit_patrol
from oddeye.patrol.config import PatrolConfig
from oddeye.patrol.head import PatrolHead
from oddeye.patrol.search import SPACE, fit_key, space_for

SMALL = A.SearchSpace("patrol", [{}, {"change": {"photo_window": 3, "feature_window": 1}},
                                 {"use_features": False}])


@pytest.fixture(scope="module")
def route(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("route")
    synth.write_frames(synth.make_route(seed=0, n_frames=12, size=(120, 160), n_objects=1).reference, d / "ref")
    return d / "ref"


@pytest.fixture(scope="module")
def fitted(route: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A patrol model fitted with --auto over the declared space."""
    out = tmp_path_factory.mktemp("auto") / "model"
    fit_patrol(reference=route, out=out, threads=1, progress=False, auto=True)
    return out


def test_the_declared_space_applies_and_shares_one_fit() -> None:
    assert SPACE.candidates[0] == {} and len(SPACE.candidates) <= 12
    base = PatrolConfig()
    SPACE.check(base)
    keys = {json.dumps(fit_key(A.apply(base, c))) for c in SPACE.candidates}
    assert len(keys) == 1  # every candidate acts when pairs are compared: one fit serves them all
    assert not any("event_threshold" in c for c in SPACE.candidates)  # set after the choice, not by AUROC


def test_without_features_the_feature_settings_are_dropped() -> None:
    space = space_for(PatrolConfig(use_features=False), {"use_features": False})
    for c in space.candidates:
        assert not {"use_features", "layers", "image_size"} & set(c)
        assert "feature_window" not in c.get("change", {})
    assert len(space.candidates) < len(SPACE.candidates) and {} in space.candidates


def test_normal_and_changed_queries_share_their_warp() -> None:
    ref = synth.make_route(seed=1, n_frames=1, size=(120, 160), n_objects=0).reference[0]
    copy = second_run(ref, 5)
    assert copy.shape == ref.shape and 0 < np.abs(copy.astype(int) - ref).mean() < 40
    normal, changed = make_patrol_normal(copy, 5), make_patrol_change(ref, copy, seed=5, warp=True)
    assert np.allclose(normal.homography, changed.homography) and not normal.mask.any() and changed.mask.any()
    differ = np.abs(normal.query.astype(int) - changed.query).max(axis=2) > 0
    assert differ.any() and not (differ & ~changed.mask).any()  # the two queries differ only by the change


def test_auto_writes_the_table_and_choice_into_the_manifest(fitted: Path) -> None:
    doc = read_manifest(fitted, head="patrol")
    auto = doc["auto"]
    assert [t["settings"] for t in auto["trials"]] == SPACE.candidates
    assert all(t["status"] == "ok" and 0 <= t["auroc"] <= 1 for t in auto["trials"])
    assert auto["n_val_normal"] == auto["n_val_anomalous"] == 6 and auto["n_val_frames"] == 6
    assert auto["trials"][auto["chosen"]]["settings"] == auto["chosen_settings"]
    # the saved model: the reference (all 12 frames) with the chosen settings and the calibrated threshold
    assert doc["reference_frames"] == 12
    chosen = A.merge(PatrolConfig().to_dict(), {**auto["chosen_settings"], "threads": 1})
    assert {**doc["config"], "event_threshold": chosen["event_threshold"]} == chosen
    assert doc["config"]["event_threshold"] >= PatrolConfig().event_threshold  # the fit can only raise it
    assert PatrolHead.load(fitted).config.to_dict() == doc["config"]


def test_the_choice_is_the_best_on_the_validation_set(fitted: Path, route: Path) -> None:
    auto = read_manifest(fitted)["auto"]
    assert_choice_is_best(auto)
    # the recorded AUROC of the chosen candidate, recomputed from the same validation pairs
    head = PatrolHead.load(fitted)
    idx = patrol_auto.sample(len(head.reference))
    pairs = patrol_auto.validation_pairs(head.reference.frames(idx), [str(i) for i in idx])
    result = patrol_auto.PairScorer(head.config).score(pairs)
    pixels = np.concatenate([s.maps["change"].values[p.judged] for s, p in zip(result.scores, pairs)])
    assert metrics.auroc(patrol_auto.pixel_labels(pairs), pixels) == pytest.approx(auto["trials"][auto["chosen"]]
                                                                                 ["auroc"], abs=1e-9)
    labels = np.array([p.label for p in pairs])
    fitted_thr = patrol_auto.event_threshold(labels, result.sample_scores())
    assert head.config.event_threshold == pytest.approx(max(fitted_thr, PatrolConfig().event_threshold))
    assert auto["event_threshold"].startswith(f"{head.config.event_threshold:.4g}: the larger of the config's")


def test_the_choice_follows_the_data_not_the_order(route: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # a first candidate whose change map is all zeros (no photometric term) cannot tell anything apart
    monkeypatch.setattr(patrol_search, "SPACE", A.SearchSpace("patrol", [{"change": {"photo_weight": 0.0}}, {}]))
    fit_patrol(reference=route, out=tmp_path / "m", threads=1, progress=False, features=False, auto=True)
    auto = read_manifest(tmp_path / "m")["auto"]
    assert auto["trials"][0]["auroc"] == pytest.approx(0.5) and auto["trials"][1]["auroc"] > 0.8
    assert auto["chosen"] == 1


def test_model_info_prints_the_table(fitted: Path) -> None:
    out = assert_info_table(fitted, "patrol", len(SPACE.candidates))
    assert "head: patrol (score it with `oddeye score patrol`)" in out


def test_given_options_stay_fixed_and_a_small_budget_says_what_was_skipped(
        route: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(patrol_search, "SPACE", SMALL)
    fit_patrol(reference=route, out=tmp_path / "m", threads=1, progress=False, features=False, auto=True,
               auto_minutes=1e-4)
    printed = capsys.readouterr().out
    doc = read_manifest(tmp_path / "m")
    auto = doc["auto"]
    # --no-features: use_features and the feature window are in no candidate, and the model keeps them off
    assert [t["settings"] for t in auto["trials"]] == [{}, {"change": {"photo_window": 3}}]
    assert doc["config"]["use_features"] is False
    assert [t["status"].split(":")[0] for t in auto["trials"]] == ["ok", "skipped"]
    assert auto["chosen"] == 0 and "1 not tried" in printed and printed.count("[skipped: budget") == 1


def _board_layout(root: Path) -> Path:
    """A tiny DeepPCB layout: 4 trainval and 2 test pairs of generated boards with their boxes."""
    from oddeye.core.imageio import write_image

    g = root / "PCBData" / "group00001"
    (g / "00001").mkdir(parents=True)
    (g / "00001_not").mkdir()
    lists: dict[str, list[str]] = {"trainval": [], "test": []}
    for i in range(6):
        p = synth.make_pair(seed=i, size=(160, 160), n_changes=2)
        write_image(g / "00001" / f"0000100{i}_temp.jpg", p.reference)
        write_image(g / "00001" / f"0000100{i}_test.jpg", p.query)
        (g / "00001_not" / f"0000100{i}.txt").write_text(
            "".join(f"{int(b[0])} {int(b[1])} {int(b[2])} {int(b[3])} 1\n" for b in p.boxes))
        lists["trainval" if i < 4 else "test"].append(f"group00001/00001/0000100{i}.jpg "
                                                      f"group00001/00001_not/0000100{i}.txt")
    for split, lines in lists.items():
        (root / "PCBData" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_eval_auto_searches_on_the_trainval_templates_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture) -> None:
    import oddeye.core.imageio as imageio

    root = _board_layout(tmp_path / "deeppcb")
    seen: list[Path] = []
    real_search, real_read = patrol_auto.search_deeppcb, imageio.read_image

    def no_labels(path: Path) -> None:
        raise AssertionError(f"the search read an annotation: {path}")

    def spy(*args, **kw):
        with monkeypatch.context() as m:  # while searching: no annotation may be read, every image is noted
            m.setattr(deeppcb, "read_boxes", no_labels)
            m.setattr(imageio, "read_image", lambda p, *a, **k: seen.append(Path(p)) or real_read(p, *a, **k))
            return real_search(*args, **kw)

    monkeypatch.setattr(patrol_auto, "search_deeppcb", spy)
    monkeypatch.setattr(patrol_search, "SPACE", SMALL)
    eval_patrol(root=root, warp=True, features=False, threads=1, out=tmp_path / "o", auto=True)
    trainval_templates = {root / "PCBData" / "group00001" / "00001" / f"0000100{i}_temp.jpg" for i in range(4)}
    assert seen and set(seen) <= trainval_templates
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert doc["n_samples"] == 2 and doc["auto"] in ({}, {"change": {"photo_window": 3}})
    assert 0 <= doc["auto_val_auroc"] <= 1 and doc["auto_event_threshold"] > 0 and 0 <= doc["pixel_auroc"] <= 1
    stored = json.loads((tmp_path / "o" / "result.json").read_text())["meta"]["auto"]
    assert stored["split"] == "trainval (templates only)" and len(stored["trials"]) == 2
