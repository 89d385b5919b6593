"""`--auto` for the image heads on tiny generated image sets: the table and choice in the manifest, `oddeye model
info`, the budget, the choice being the validation set's best, and `eval image --auto` reading only training images."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from auto_support import assert_choice_is_best, assert_info_table
from oddeye.core import auto as A
from oddeye.core.head import read_manifest
from oddeye.core.imageio import write_image
from oddeye.core.synth import make_image_set
from oddeye.image import auto as image_auto
from oddeye.image.cli import eval_image, fit_image
from oddeye.image.search import SPACES

SIZE = 64  # model input (px): small and fast


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("auto") / "train"
    for i, s in enumerate(make_image_set(seed=4, n_normal=20, n_defect=0, size=(64, 64))):
        write_image(d / f"{i:03d}.png", s.image)
    return d


SMALL = A.SearchSpace("patchcore", [{}, {"border": 2, "exposure_gains": [1.5]}, {"border": 2, "retrieve": 4}])


@pytest.fixture(scope="module")
def fitted(train_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PatchCore model fitted with --auto over a small space (the declared one takes longer)."""
    out = tmp_path_factory.mktemp("auto") / "model"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(SPACES, "patchcore", SMALL)
        fit_image(train=train_dir, out=out, image_size=SIZE, auto=True, auto_minutes=10)
    return out


@pytest.mark.parametrize("head", ["patchcore", "gaussian", "zero-shot"])
def test_the_declared_spaces_apply_to_their_heads(head: str) -> None:
    from oddeye.image.evaluate import head_class

    space = SPACES[head]
    assert space.candidates[0] == {} and len(space.candidates) <= 12  # the defaults first; small
    space.check(head_class(head).config_class())


def test_the_best_backbone_is_tried_with_the_best_other_settings() -> None:
    from oddeye.image.search import with_best_backbone

    lite1, lite2 = {"name": "efficientnet-lite1"}, {"name": "efficientnet-lite2"}
    trials = [A.Trial({}, 0.75), A.Trial({"border": 2}, 0.85), A.Trial({"border": 2, "extractor": lite1}, 0.88),
              A.Trial({"border": 2, "extractor": lite2}, 0.87), A.Trial({"border": 2, "retrieve": 30}, 0.86),
              A.Trial({"border": 2, "position_weight": 8.0}, 0.84), A.Trial({"border": 2, "gains": [2.0]}, 0.87),
              A.Trial({"border": 2, "sigma": 1.0}, 0.99, status="failed: x")]
    assert with_best_backbone(trials) == [{"border": 2, "gains": [2.0], "extractor": lite1},
                                          {"border": 2, "retrieve": 30, "extractor": lite1}]
    trials[2].auroc = 0.80  # no backbone beats the default one (with the same other settings): nothing to combine
    trials[3].auroc = 0.84
    assert with_best_backbone(trials) == []
    assert with_best_backbone(trials[:2]) == []


def test_auto_writes_the_table_and_choice_into_the_manifest(fitted: Path) -> None:
    doc = read_manifest(fitted, head="patchcore")
    auto = doc["auto"]
    assert [t["settings"] for t in auto["trials"]] == SMALL.candidates
    assert all(t["status"] == "ok" and 0 <= t["auroc"] <= 1 and t["fit_s"] > 0 for t in auto["trials"])
    assert auto["n_val_normal"] == 4 and auto["n_val_anomalous"] == 4 * image_auto.PER_NORMAL
    assert auto["n_fit"] == 16 and auto["n_final"] == 20
    chosen = auto["trials"][auto["chosen"]]
    assert chosen["settings"] == auto["chosen_settings"]
    # the saved model: the chosen settings (and the given image size) fitted on all 20 normal images
    assert A.merge(doc["config"], auto["chosen_settings"]) == doc["config"]
    assert doc["config"]["extractor"]["image_size"] == SIZE and doc["n_train"] == 20 - 2  # 2 held out: threshold


def test_the_choice_is_the_best_on_the_validation_set(fitted: Path) -> None:
    auto = read_manifest(fitted)["auto"]
    assert_choice_is_best(auto)


def test_the_choice_follows_the_data_not_the_order(train_dir: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # a first candidate that compares every patch only with its own place in a 64 px image scores badly
    space = A.SearchSpace("patchcore", [{"position_weight": 1000.0}, {}])
    monkeypatch.setitem(SPACES, "patchcore", space)
    monkeypatch.setattr(image_auto, "validation_set", partial(image_auto.validation_set, per_normal=1))
    fit_image(train=train_dir, out=tmp_path / "m", image_size=SIZE, auto=True)
    auto = read_manifest(tmp_path / "m")["auto"]
    assert auto["trials"][0]["auroc"] < auto["trials"][1]["auroc"] - A.TIE and auto["chosen"] == 1


def test_model_info_prints_the_table(fitted: Path) -> None:
    out = assert_info_table(fitted, "patchcore", len(SMALL.candidates))
    assert "head: patchcore (score it with `oddeye score image`)" in out
    assert "chosen: " in out


def test_a_small_budget_says_what_was_skipped(train_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SPACES, "patchcore", SMALL)
    fit_image(train=train_dir, out=tmp_path / "m", image_size=SIZE, auto=True, auto_minutes=1e-4)
    printed = capsys.readouterr().out
    auto = read_manifest(tmp_path / "m")["auto"]
    n = len(SMALL.candidates)
    assert [t["status"].split(":")[0] for t in auto["trials"]] == ["ok"] + ["skipped"] * (n - 1)
    assert auto["chosen"] == 0 and f"{n - 1} not tried" in printed and printed.count("[skipped: budget") == n - 1


def test_many_normals_fit_the_candidates_on_a_capped_part_and_the_choice_on_all(
        train_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import oddeye.image.auto as image_auto

    monkeypatch.setitem(SPACES, "patchcore", SMALL)
    monkeypatch.setattr(image_auto, "MAX_FIT", 6)
    fit_image(train=train_dir, out=tmp_path / "m", image_size=SIZE, auto=True, auto_minutes=1e-4)
    auto = read_manifest(tmp_path / "m")["auto"]
    assert auto["n_fit"] == 6 and auto["n_val_normal"] == 4 and auto["n_final"] == 20


def test_eval_auto_searches_on_the_training_split_only(train_dir: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "mvtec" / "tile"
    for i, p in enumerate(sorted(train_dir.iterdir())[:12]):
        (root / "train" / "good").mkdir(parents=True, exist_ok=True)
        (root / "train" / "good" / p.name).write_bytes(p.read_bytes())
    for i, s in enumerate(make_image_set(seed=5, n_normal=4, n_defect=4, size=(64, 64))):
        kind = "good" if s.label == 0 else "crack"
        write_image(root / "test" / kind / f"{i:03d}.png", s.image)
        if s.label:
            write_image(root / "ground_truth" / kind / f"{i:03d}_mask.png", s.mask.astype(np.uint8) * 255)
    seen: list = []
    real = image_auto.auto_search

    def spy(cls, base, train, **kw):
        seen.extend(train)
        return real(cls, base, train, **kw)

    monkeypatch.setattr(image_auto, "auto_search", spy)
    monkeypatch.setitem(SPACES, "patchcore", A.SearchSpace("patchcore", [{}, {"border": 1}]))
    eval_image(dataset="mvtec", root=root, out=tmp_path / "res", image_size=SIZE, auto=True, no_pixel=True)
    assert len(seen) == 12 and all(it.split == "train" and it.label == 0 for it in seen)
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert doc["auto"] in ({}, {"border": 1}) and 0 <= doc["auto_val_auroc"] <= 1 and 0 <= doc["image_auroc"] <= 1


def test_fits_are_shared_only_where_the_settings_change_scoring_alone() -> None:
    from oddeye.image.config import GaussianConfig, PatchCoreConfig, ZeroShotConfig
    from oddeye.image.search import fit_key

    pc = PatchCoreConfig()
    assert fit_key("patchcore", pc) == fit_key("patchcore", pc.replace(border=2, score_sigma=2.0))
    assert fit_key("patchcore", pc) != fit_key("patchcore", pc.replace(exposure_gains=(1.5,)))
    conditioned = pc.replace(retrieve=4)  # its bank keeps interior patches: the border changes the fit
    assert fit_key("patchcore", conditioned) != fit_key("patchcore", conditioned.replace(border=2))
    assert fit_key("gaussian", GaussianConfig()) == fit_key("gaussian", GaussianConfig(border=2))
    assert fit_key("zero-shot", ZeroShotConfig()) is None
