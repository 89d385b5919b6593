"""`--auto` for the video heads (rules, prediction) on tiny generated clips: the validation set, the table and choice
in the manifest, `oddeye model info`, given options kept, the budget, and `eval video --auto` reading only training
clips (never a test label)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from auto_support import assert_choice_is_best, assert_info_table
from oddeye.core import auto as A
from oddeye.core import metrics
from oddeye.core.anomalies.video import NEAR, VIDEO_ANOMALIES
from oddeye.core.head import read_manifest
from oddeye.core.synth import make_video, write_frames
from oddeye.video import auto as video_auto
from oddeye.video.prediction import search as prediction_search
from oddeye.video.prediction.config import PredictionConfig
from oddeye.video.rules import search as rules_search
from oddeye.video.rules.config import RulesConfig
from oddeye.video.rules.head import RulesHead

SIZE = (72, 96)  # (H, W) of the generated clips: small and fast
RULES_SPACE = A.SearchSpace("video-rules", [{}, {"sigma": 2.0}, {"induction": {"margin_k": 3.0}}])
TINY = {"model": {"size": 32, "past": 3, "channels": [4, 8, 8], "heads": 2, "d_channels": 2},
        "train": {"max_steps": 2, "batch_size": 2}}
PREDICTION_SPACE = A.SearchSpace("video-prediction", [{}, {"score": {"perspective": 4.0}},
                                                      {"score": {"motion": 0.0, "smooth_sigma": 1.0}}])


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five normal clips of 40 frames of walkers (one validates under --auto)."""
    d = tmp_path_factory.mktemp("auto_video") / "train"
    for s in range(5):
        write_frames(make_video(seed=s, n_frames=40, size=SIZE, anomaly=None).frames, d / f"c{s}")
    return d


@pytest.fixture(scope="module")
def rules_model(train_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A rules model fitted with --auto over a small space (the declared one takes longer)."""
    from oddeye.video.rules.cli import fit_video_rules

    out = tmp_path_factory.mktemp("auto_video") / "rules"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rules_search, "SPACE", RULES_SPACE)
        fit_video_rules(out=out, frames=[train_dir], auto=True, progress=False)
    return out


def test_the_declared_spaces_apply_and_start_with_the_defaults() -> None:
    for space, base in ((rules_search.SPACE, RulesConfig()), (prediction_search.SPACE, PredictionConfig())):
        assert space.candidates[0] == {} and len(space.candidates) <= 48
        space.check(base)
    # every prediction candidate is a score setting: one trained generator serves them all
    assert all(set(c) <= {"score"} for c in prediction_search.SPACE.candidates)


def test_the_validation_set_is_the_held_out_clips_and_anomalous_copies(train_dir: Path) -> None:
    sources = sorted(train_dir.iterdir())
    fit, val = video_auto.split_clips(sources, seed=0)
    assert len(val) == 1 and sorted(fit + val) == sources
    vs = video_auto.validation_set(val, seed=0)
    # one clip: a copy of every kind, then the near-limit ones, COPIES rounds; the untouched clip is not scored alone
    one_round = [*VIDEO_ANOMALIES, *(f"{k}~near" for k in NEAR)]
    assert vs.kinds == one_round * video_auto.COPIES and vs.n_normal == 1 and video_auto.COPIES >= 2
    assert vs.names[len(one_round) - len(NEAR):len(one_round)] == [f"{val[0].name}~{k}~near" for k in NEAR]
    assert len(set(vs.names)) == len(vs.names), "every copy has its own name"
    assert all(c.shape == (40, *SIZE) and c.dtype == np.uint8 for c in vs.clips)
    assert all(0 < lab.sum() <= len(lab) // 2 for lab in vs.labels)  # every copy keeps most of its normal frames
    assert vs.meta()["n_val_clips"] == 1 and vs.meta()["n_val_anomalous_clips"] == len(one_round) * video_auto.COPIES
    # the rounds differ: the same kind pasted again is another copy (other seed, the other object source)
    assert not np.array_equal(vs.clips[0], vs.clips[len(one_round)])
    again = video_auto.validation_set(val, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(vs.clips, again.clips))
    other = video_auto.validation_set(val, seed=1)
    assert not all(np.array_equal(a, b) for a, b in zip(vs.clips, other.clips))


def test_rules_auto_writes_the_table_and_the_choice(rules_model: Path, train_dir: Path) -> None:
    doc = read_manifest(rules_model, head="video-rules")
    auto = doc["auto"]
    assert [t["settings"] for t in auto["trials"]] == RULES_SPACE.candidates
    assert all(t["status"] == "ok" and 0 <= t["auroc"] <= 1 for t in auto["trials"])
    assert auto["trials"][1]["fit_s"] == auto["trials"][0]["fit_s"]  # sigma only scores: the fit is shared
    assert auto["n_fit_clips"] == 4 and auto["n_val_clips"] == 1 and auto["n_final_clips"] == 5
    assert_choice_is_best(auto)
    assert A.merge(doc["config"], auto["chosen_settings"]) == doc["config"]
    assert RulesHead.load(rules_model).fit_info["n_videos"] == 5  # the choice is fitted on every normal clip


def test_the_recorded_auroc_is_what_the_choice_scores_on_the_validation_set(rules_model: Path,
                                                                            train_dir: Path) -> None:
    auto = read_manifest(rules_model)["auto"]
    fit, val = video_auto.split_clips(sorted(train_dir.iterdir()), seed=0)
    vs = video_auto.validation_set(val, seed=0)
    head = RulesHead(A.apply(RulesConfig(), auto["chosen_settings"])).fit(fit)
    s = vs.frame_scores(head.score(vs.clips))
    assert metrics.auroc(vs.frame_labels, s) == pytest.approx(auto["trials"][auto["chosen"]]["auroc"], abs=1e-9)


def test_model_info_prints_the_table(rules_model: Path) -> None:
    assert_info_table(rules_model, "video-rules", len(RULES_SPACE.candidates))


def test_rules_options_given_stay_fixed_and_a_small_budget_skips(train_dir: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture) -> None:
    from oddeye.video.rules.cli import fit_video_rules

    monkeypatch.setattr(rules_search, "SPACE", RULES_SPACE)
    fit_video_rules(out=tmp_path / "m", frames=[train_dir], auto=True, auto_minutes=1e-4, sigma=3.0, progress=False)
    doc = read_manifest(tmp_path / "m")
    auto = doc["auto"]
    assert doc["config"]["sigma"] == 3.0 and all("sigma" not in t["settings"] for t in auto["trials"])
    assert [t["settings"] for t in auto["trials"]] == [{}, {"induction": {"margin_k": 3.0}}]
    assert [t["status"].split(":")[0] for t in auto["trials"]] == ["ok", "skipped"] and auto["chosen"] == 0
    assert "1 not tried" in capsys.readouterr().out


def test_switching_appearance_off_drops_its_candidates() -> None:
    space = rules_search.space_for({"appearance": {"enabled": False}})
    assert space.candidates[0] == {} and all("appearance" not in c for c in space.candidates)
    assert len(space.candidates) < len(rules_search.SPACE.candidates)


class _Labels:
    """Test labels that fail the test when read during the search."""

    def __init__(self, n: int, state: dict) -> None:
        self.n, self.state = n, state

    def __get__(self, item: object, owner: type) -> np.ndarray:
        assert not self.state["searching"], "the search read a test label"
        lab = np.zeros(self.n, np.int64)
        lab[self.n // 2:] = 1
        return lab

    def __set__(self, item: object, value: object) -> None:
        """The data set's own value is not kept: these labels stand in for it."""


def _dataset(train_dir: Path, tmp_path: Path, state: dict) -> object:
    """A data set of the training clips and two test clips with a fast walker in their second half."""
    from oddeye.video.datasets import VideoDataset, VideoItem

    class TestItem(VideoItem):
        labels = _Labels(40, state)  # type: ignore[assignment]

    train = [VideoItem(p.name, p) for p in sorted(train_dir.iterdir())]
    test = []
    for s in (7, 8):
        frames = make_video(seed=s, n_frames=40, size=SIZE, anomaly="fast", anomaly_span=(20, 40)).frames
        test.append(TestItem(f"t{s}", write_frames(frames, tmp_path / f"t{s}")))
    return VideoDataset("tiny", tmp_path, train, test)


@pytest.mark.parametrize("head", ["rules", "prediction"])
def test_eval_auto_searches_on_the_training_clips_only(head: str, train_dir: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture) -> None:
    import oddeye.video.datasets as datasets
    from oddeye.video.cli import eval_video

    state = {"searching": False}
    ds = _dataset(train_dir, tmp_path, state)
    monkeypatch.setattr(datasets, "load_video_dataset", lambda name, root: ds)
    seen: list = []
    name = f"search_{head}"
    real = getattr(video_auto, name)

    def spy(base, sources, **kw):
        seen.extend(sources)
        state["searching"] = True
        try:
            return real(base, sources, **kw)
        finally:
            state["searching"] = False

    monkeypatch.setattr(video_auto, name, spy)
    monkeypatch.setattr(rules_search, "SPACE", RULES_SPACE)
    monkeypatch.setattr(prediction_search, "SPACE", PREDICTION_SPACE)
    if head == "prediction":
        monkeypatch.setattr("oddeye.video.cli.prediction_config",
                            lambda **kw: PredictionConfig.from_dict(TINY))
    eval_video(root=tmp_path, head=head, out=tmp_path / "res", auto=True)
    assert seen == [v.source for v in ds.train]
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 <= doc["auto_val_auroc"] <= 1 and 0 <= doc["frame_auroc_micro"] <= 1
    assert read_manifest(tmp_path / "res" / "model")["auto"]["chosen_settings"] == doc["auto"]


def test_prediction_trains_once_and_keeps_the_given_perspective(train_dir: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from oddeye.video.cli import fit_video_prediction
    from oddeye.video.prediction.head import PredictionHead

    fits: list = []
    real_fit = PredictionHead.fit

    def counting_fit(self, samples, **kw):
        fits.append(list(samples))
        return real_fit(self, fits[-1], **kw)

    monkeypatch.setattr(PredictionHead, "fit", counting_fit)
    monkeypatch.setattr(prediction_search, "SPACE", PREDICTION_SPACE)
    (tmp_path / "tiny.json").write_text(json.dumps(TINY))
    fit_video_prediction(out=tmp_path / "m", frames=[train_dir], config=tmp_path / "tiny.json", perspective=2.0,
                         device="cpu", progress=False, auto=True)
    doc = read_manifest(tmp_path / "m", head="video-prediction")
    auto = doc["auto"]
    assert len(fits) == 1 and len(fits[0]) == 4  # trained once, on the fit part
    assert [t["settings"] for t in auto["trials"]] == [{}, {"score": {"motion": 0.0, "smooth_sigma": 1.0}}]  # fixed
    assert all(t["status"] == "ok" for t in auto["trials"]) and doc["config"]["score"]["perspective"] == 2.0
    assert_choice_is_best(auto)
    assert A.merge(doc["config"], auto["chosen_settings"]) == doc["config"]
    # the threshold comes from every clip the generator did not train on: its own held-out one and the validation one
    assert len(doc["train_info"]["val_videos"]) == 2 and doc["calibration"]["n_frames"] == 2 * 40
