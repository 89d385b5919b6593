"""Rules head: perception on synthetic video, induced rules flag fast/big/wrong-place objects with the right reason."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from oddeye.core.errors import EmptyDataError, InputError, ModelError
from oddeye.core.metrics import auroc
from oddeye.core.synth import make_video
from oddeye.video.rules import RulesHead
from oddeye.video.rules.head import SceneMovedWarning
from oddeye.video.rules.perception import Perceiver, PerceptionParams

SEED = 7


@pytest.fixture(scope="module")
def head() -> RulesHead:
    """A head fitted on 300 normal frames of the synthetic scene."""
    normal = make_video(seed=SEED, n_frames=300, anomaly=None).frames
    return RulesHead(show_progress=False).fit([normal])


def _overlaps(box, mask: np.ndarray) -> bool:
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    return bool(mask[max(y1, 0):y2 + 1, max(x1, 0):x2 + 1].any())


def test_perception_finds_walkers_with_plausible_attributes() -> None:
    v = make_video(seed=SEED, n_frames=60, n_walkers=4, anomaly=None)
    p = Perceiver(PerceptionParams())
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
    res = head.score([v.frames])
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
    again = RulesHead.load(tmp_path / "m")
    assert len(again.rules) == len(head.rules)
    v = make_video(seed=SEED, anomaly="fast")
    a, _ = head.score_video(v.frames)
    b, _ = again.score_video(v.frames)
    np.testing.assert_allclose(a.frame_scores, b.frame_scores, atol=1e-5)


def test_all_black_footage(head: RulesHead) -> None:
    black = np.zeros((30, 120, 160), np.uint8)
    with pytest.raises(EmptyDataError, match="all black"):
        RulesHead(show_progress=False).fit([black])
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
        RulesHead(show_progress=False).fit([])
    with pytest.raises(InputError, match="shots"):
        RulesHead(show_progress=False).fit([np.zeros((5, 64, 64), np.uint8)], shots=0)
    with pytest.raises(InputError, match="fit on"):
        head.score_video(np.full((5, 60, 80), 128, np.uint8))
    with pytest.raises(ModelError):
        RulesHead(show_progress=False).score_video(np.zeros((5, 64, 64), np.uint8))
    with pytest.raises(InputError):
        head.score_video(np.zeros((5, 64), np.float32))
    with pytest.raises(EmptyDataError, match="no frames"):
        head.score_video(np.zeros((0, 120, 160), np.uint8))
    good = make_video(seed=SEED, n_frames=30, anomaly=None).frames
    with pytest.warns(UserWarning, match="skipped"):
        res = head.score([good, np.zeros((0, 120, 160), np.uint8), good])
    assert len(res.scores) == 2 and "video 1" in res.meta["errors"]  # the bad one is reported, the rest kept


def test_few_shot_fit() -> None:
    normal = make_video(seed=SEED, n_frames=300, anomaly=None).frames
    h = RulesHead(show_progress=False).fit([normal], shots=24)
    assert h.fit_info["n_frames"] == 24 and len(h.rules) >= 3
    v = make_video(seed=SEED, anomaly="fast")
    sc, _ = h.score_video(v.frames)
    assert auroc(v.labels, sc.frame_scores) > 0.85
