"""Rules head: perception on synthetic video, induced rules flag fast/big/wrong-place objects with the right reason."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from oddeye.core.errors import ConfigError, EmptyDataError, InputError, ModelError
from oddeye.core.head import MANIFEST, RunContext
from oddeye.core.metrics import auroc
from oddeye.core.synth import make_video
from oddeye.video.rules import RulesConfig, RulesHead
from oddeye.video.rules.config import PerceptionConfig
from oddeye.video.rules.head import SceneMovedWarning
from oddeye.video.rules.modelio import LEGACY_KEYS
from oddeye.video.rules.perception import Perceiver

SEED = 7
QUIET = RunContext(progress=False)


@pytest.fixture(scope="module")
def head() -> RulesHead:
    """A head fitted on 300 normal frames of the synthetic scene."""
    normal = make_video(seed=SEED, n_frames=300, anomaly=None).frames
    return RulesHead().fit([normal], ctx=QUIET)


def _overlaps(box, mask: np.ndarray) -> bool:
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    return bool(mask[max(y1, 0):y2 + 1, max(x1, 0):x2 + 1].any())


def test_perception_finds_walkers_with_plausible_attributes() -> None:
    v = make_video(seed=SEED, n_frames=60, n_walkers=4, anomaly=None)
    p = Perceiver(PerceptionConfig())
    p.fit_background(v.frames[::3])
    obs = list(p.run(v.frames))
    counts = np.array([f.count for f in obs[5:]])
    assert 2 <= np.median(counts) <= 5  # four walkers, sometimes merged or at the border
    objs = [o for f in obs[5:] for o in f.objects]
    heights = np.array([o.height for o in objs])
    speeds = np.array([o.speed for o in objs])
    H = v.frames.shape[1]
    assert 0.08 * H < np.median(heights) < 0.25 * H  # walkers are 0.13 H tall
    assert 0.5 < np.median(speeds) < 2.0  # they move about 1 px/frame
    assert np.median([o.aspect for o in objs]) > 1.5  # upright figures
    sentence = objs[0].sentence(H)
    assert sentence.startswith("a ") and ("moves" in sentence or "stands" in sentence)
    assert obs[10].description(H).count(";") == obs[10].count - 1


@pytest.mark.parametrize("anomaly,attributes", [("fast", {"speed", "area", "width", "height"}),
                                                ("big", {"area", "height", "width"}),
                                                ("wrong_place", {"zone", "speed"})])
def test_rules_flag_synthetic_anomalies(head: RulesHead, anomaly: str, attributes: set[str]) -> None:
    v = make_video(seed=SEED, anomaly=anomaly)
    sc, verdicts = head.score_video(v.frames, name=anomaly)
    assert auroc(v.labels, sc.frame_scores) > 0.9
    broken = [(b, v.masks[k]) for k, ver in enumerate(verdicts) if v.labels[k]
              for b in ver.breaches if b.score > 0]
    assert broken, "no rule broken during the anomaly"
    named = {b.attribute for b, _ in broken}
    assert named & attributes
    hits = [_overlaps(b.box, m) for b, m in broken if b.attribute in attributes and b.box is not None]
    assert np.mean(hits) > 0.8
    if anomaly == "fast":
        assert "speed" in named


def test_events_carry_reasons_and_boxes(head: RulesHead) -> None:
    v = make_video(seed=SEED, anomaly="big")
    res = head.score([v.frames], ctx=QUIET)
    assert res.head == "video-rules" and len(res.scores) == 1
    s = res.scores[0]
    assert s.frame_scores.shape == (120,) and s.frame_indices[-1] == 119
    ev = max(res.events, key=lambda e: e.end_frame - e.start_frame)
    assert 50 <= ev.start_frame <= 70 and ev.end_frame >= 95
    assert "above the normal" in ev.reason and ev.box is not None
    assert _overlaps(ev.box, v.masks[ev.meta["peak_frame"]])
    assert ev.meta["breaches"] and ev.meta["rules"]


def test_save_load_roundtrip(head: RulesHead, tmp_path) -> None:
    head.save(tmp_path / "m")
    assert (tmp_path / "m" / "rules.yaml").read_text().startswith("# oddeye video-rules")
    doc = json.loads((tmp_path / "m" / MANIFEST).read_text())
    assert doc["config"] == head.config.to_dict() and doc["format_version"] == 2
    again = RulesHead.load(tmp_path / "m")
    assert again.config == head.config and len(again.rules) == len(head.rules)
    v = make_video(seed=SEED, anomaly="fast")
    a, _ = head.score_video(v.frames)
    b, _ = again.score_video(v.frames)
    np.testing.assert_array_equal(a.frame_scores, b.frame_scores)


def _to_format_1(model: Path, keep: tuple[str, ...] = LEGACY_KEYS) -> None:
    """Rewrite a model folder to the layout before the config moved into the manifest: every setting and the
    fit state in perception.json, no "config" in the manifest (`keep`: the top-level settings it had then)."""
    doc = json.loads((model / MANIFEST).read_text())
    config = doc.pop("config")
    doc["format_version"] = 1
    state = json.loads((model / "fit.json").read_text())
    (model / "fit.json").unlink()
    old = {"perception": config["perception"], "induction": config["induction"],
           **{k: config[k] for k in keep}, "scene_baseline": state["scene_baseline"], "fit": state["fit"]}
    (model / "perception.json").write_text(json.dumps(old, indent=1))
    (model / MANIFEST).write_text(json.dumps(doc))


def test_model_folder_of_format_1_loads_and_scores_the_same(tmp_path) -> None:
    normal = make_video(seed=SEED, n_frames=150, anomaly=None).frames
    head = RulesHead(sigma=6, persist=2, soft=0.5, grid=(3, 5),
                     induction={"zone_weight": 1.0}, perception={"diff_threshold": 18}).fit([normal], ctx=QUIET)
    _to_format_1(Path(head.save(tmp_path / "old")))
    assert not (tmp_path / "old" / "fit.json").exists()
    old = RulesHead.load(tmp_path / "old")
    assert old.config == head.config and old.scene_baseline == head.scene_baseline
    v = make_video(seed=SEED, anomaly="wrong_place")
    a, b = head.score([v.frames], ctx=QUIET), old.score([v.frames], ctx=QUIET)
    np.testing.assert_array_equal(a.scores[0].frame_scores, b.scores[0].frame_scores)
    assert [(e.start_frame, e.end_frame, e.reason, e.box) for e in a.events] == \
           [(e.start_frame, e.end_frame, e.reason, e.box) for e in b.events] and a.events
    old.save(tmp_path / "old")  # saved again: today's layout, the stale settings file gone
    assert not (tmp_path / "old" / "perception.json").exists()
    assert RulesHead.load(tmp_path / "old").config == head.config
    # the oldest folders had no soft / flag_at / warmup: they were scored with 0.75 / 0.5 / 4
    oldest = Path(shutil.copytree(tmp_path / "old", tmp_path / "oldest"))
    _to_format_1(oldest, keep=("sigma", "persist", "recheck"))
    assert RulesHead.load(oldest).config == head.config.replace(soft=0.75)


def test_all_black_footage(head: RulesHead) -> None:
    black = np.zeros((30, 120, 160), np.uint8)
    with pytest.raises(EmptyDataError, match="all black"):
        RulesHead().fit([black], ctx=QUIET)
    with pytest.warns(SceneMovedWarning, match="black"):
        sc, _ = head.score_video(black, name="black")
    assert np.all(sc.frame_scores == 0)


def test_camera_moved_warns(head: RulesHead) -> None:
    frames = make_video(seed=SEED, n_frames=40, anomaly=None).frames
    other_scene = np.ascontiguousarray(np.roll(frames, (9, 12), axis=(1, 2)))  # the camera turned a little
    with pytest.warns(SceneMovedWarning, match="camera may have moved"):
        sc, _ = head.score_video(other_scene, name="moved")
    assert "refit" in sc.meta["scene_warning"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", SceneMovedWarning)
        head.score_video(frames, name="same camera")  # the unmoved scene does not warn


def test_camera_moved_mid_video_warns(head: RulesHead) -> None:
    frames = make_video(seed=SEED, n_frames=300, anomaly=None).frames.copy()
    frames[250:] = np.roll(frames[250:], (9, 12), axis=(1, 2))
    with pytest.warns(SceneMovedWarning, match="from frame 250"):
        head.score_video(frames, name="turned at 250")


def test_bad_inputs(head: RulesHead) -> None:
    with pytest.raises(EmptyDataError):
        RulesHead().fit([], ctx=QUIET)
    with pytest.raises(InputError, match="shots"):
        RulesHead().fit([np.zeros((5, 64, 64), np.uint8)], ctx=RunContext(shots=0, progress=False))
    with pytest.raises(InputError, match="fit on"):
        head.score_video(np.full((5, 60, 80), 128, np.uint8))
    with pytest.raises(ModelError):
        RulesHead().score_video(np.zeros((5, 64, 64), np.uint8))
    with pytest.raises(InputError):
        head.score_video(np.zeros((5, 64), np.float32))
    with pytest.raises(EmptyDataError, match="no frames"):
        head.score_video(np.zeros((0, 120, 160), np.uint8))


def test_bad_video_refused_up_front_or_skipped(head: RulesHead, tmp_path, monkeypatch) -> None:
    good = make_video(seed=SEED, n_frames=30, anomaly=None).frames
    empty, small = np.zeros((0, 120, 160), np.uint8), np.full((5, 60, 80), 128, np.uint8)
    scored: list[str] = []
    real = head.score_video
    monkeypatch.setattr(head, "score_video", lambda v, name=None, **kw: scored.append(name) or real(v, name, **kw))
    for bad, match in ((empty, "no frames"), (small, "fit on"), (tmp_path / "missing.mp4", "missing.mp4")):
        with pytest.raises(InputError, match=match):
            head.score([good, bad], ctx=QUIET)
    assert scored == []  # refused before anything was scored: no work lost
    res = head.score([good, empty, tmp_path / "missing.mp4", good], ctx=RunContext(skip_bad=True, progress=False))
    assert [s.sample_id for s in res.scores] == ["video 0", "video 1", "missing.mp4", "video 3"]
    errors = res.errors()
    assert [s.sample_id for s in errors] == ["video 1", "missing.mp4"]
    assert "no frames" in errors[0].meta["error"] and np.isnan(errors[0].score)
    assert errors[1].meta["path"] == str((tmp_path / "missing.mp4").resolve())
    ok = [s for s in res.scores if s not in errors]
    assert len(ok) == 2 and all(len(s.frame_scores) == 30 for s in ok)


def test_config_is_one_dataclass_with_checked_overrides() -> None:
    h = RulesHead(sigma=4, induction={"zone_weight": 1.0})
    assert h.config == RulesConfig(sigma=4.0, induction=RulesConfig().induction.replace(zone_weight=1.0))
    assert RulesHead(h.config, persist=5).config.sigma == 4.0
    with pytest.raises(ConfigError, match=r"RulesConfig\.show_progress"):
        RulesHead(show_progress=False)
    with pytest.raises(ConfigError, match=r"RulesConfig\.induction\.attributes"):
        RulesHead(induction={"attributes": ["spped"]})
    with pytest.raises(ConfigError, match=r"RulesConfig\.llm\.model"):
        RulesHead(llm={"backend": "transformers"})
    with pytest.raises(ConfigError, match=r"RulesConfig\.grid"):
        RulesHead(grid=(13, 6))
    with pytest.raises(ConfigError, match=r"RulesConfig\.llm\.backend"):
        RulesHead(backend=object())  # a backend object the (offline) config would not rebuild on load


def test_few_shot_fit() -> None:
    normal = make_video(seed=SEED, n_frames=300, anomaly=None).frames
    h = RulesHead().fit([normal], ctx=RunContext(shots=24, progress=False))
    assert h.fit_info["n_frames"] == 24 and len(h.rules) >= 3
    v = make_video(seed=SEED, anomaly="fast")
    sc, _ = h.score_video(v.frames)
    assert auroc(v.labels, sc.frame_scores) > 0.85
