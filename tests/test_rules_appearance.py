"""Appearance rules of the rules head: an object that moves and measures like the walkers but looks like none of them."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from contract_support import assert_same_result

from oddeye.core.errors import ConfigError, ModelError
from oddeye.core.head import MANIFEST, RunContext
from oddeye.core.synth import make_video
from oddeye.video.rules import RulesHead
from oddeye.video.rules.config import AppearanceConfig, RulesConfig
from oddeye.video.rules.rules import Rule, RuleSet

QUIET = RunContext(progress=False)
SPAN = (20, 100)  # frames of the test clip in which the odd object walks


def _odd_walker(frames: np.ndarray, span: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Frames (T, H, W) with a walker-sized, walker-shaped figure in a black-and-white checker walking at 1 px/frame
    along the walkway during `span`: only its look differs from the walkers'. Returns (frames, masks (T, H, W))."""
    out = frames.astype(np.float32)
    h, w = frames.shape[1:]
    hw, ww = max(8, round(0.13 * h)), max(4, round(0.05 * h))  # make_video's walker size
    yy, xx = np.mgrid[:hw, :ww]
    body = ((yy - (hw - 1) / 2) / (hw / 2)) ** 2 + ((xx - (ww - 1) / 2) / (ww / 2)) ** 2 <= 1
    checker = np.where((yy // 2 + xx // 2) % 2 == 0, 235.0, 20.0)
    y0, masks = int(0.55 * h), np.zeros(frames.shape, bool)
    rng = np.random.default_rng(0)
    for k, i in enumerate(range(*span)):
        x0 = 20 + k
        out[i, y0:y0 + hw, x0:x0 + ww][body] = checker[body] + rng.normal(0, 2, int(body.sum()))
        masks[i, y0:y0 + hw, x0:x0 + ww] = body
    return np.clip(out, 0, 255).astype(np.uint8), masks


@pytest.fixture(scope="module")
def scene() -> dict:
    """One 340-frame walkway clip: fit on its first 220 frames; test on the rest (the same walkers later) with and
    without the odd walker; a head fitted with appearance and one without."""
    v = make_video(seed=7, n_frames=340, anomaly=None).frames
    odd, masks = _odd_walker(v[220:], SPAN)
    head = RulesHead(appearance={"enabled": True}).fit([v[:220]], ctx=QUIET)
    return {"train": v[:220], "normal": v[220:], "odd": odd, "masks": masks, "head": head,
            "result": head.score([odd, v[220:]], ctx=QUIET)}


def _overlaps(box, mask: np.ndarray) -> bool:
    x1, y1, x2, y2 = (int(round(c)) for c in box)
    return bool(mask[max(y1, 0):y2 + 1, max(x1, 0):x2 + 1].any())


def test_the_appearance_rule_flags_the_odd_looking_object_and_not_the_walkers(scene) -> None:
    head, result = scene["head"], scene["result"]
    rules = [r for r in head.rules.rules if r.attribute == "appearance"]
    assert rules and all("look like those in the normal footage" in r.text for r in rules)
    assert head.rules.meta["held_out_breach_rate"]["appearance"] <= 0.01  # normal footage keeps to it
    events = [e for e in result.events if e.sample_id == "video 0"]
    assert events and not [e for e in result.events if e.sample_id == "video 1"]  # the walkers alone: nothing
    ev = max(events, key=lambda e: e.end_frame - e.start_frame)
    assert SPAN[0] <= ev.start_frame and ev.end_frame < SPAN[1] and ev.end_frame - ev.start_frame >= 40
    assert "that looks like none in the normal footage" in ev.reason
    assert ev.meta["breaches"][0]["attribute"] == "appearance" and _overlaps(ev.box, scene["masks"][ev.meta["peak_frame"]])
    found = ev.meta["appearance"]
    assert found["nearest"] == ev.meta["breaches"][0]["nearest"] and 0 <= found["nearest"] < len(head.appearance.index)
    assert found["distance"] > head.rules.by_key()[("appearance", "anywhere")].high
    from oddeye.ui.page_video import jpeg_picture

    crop, nearest = jpeg_picture(found["crop_jpeg"]), jpeg_picture(found["nearest_jpeg"])
    assert crop.shape[2] == 3 and max(crop.shape[:2]) == 64 and crop.shape[0] > crop.shape[1]  # an upright figure
    assert (crop > 215).mean() > 0.05 and (nearest > 215).mean() < 0.01  # the checker beside a plain walker
    # the rule adds to what the head catches: without it the odd walker passes, as it moves and measures like the rest
    plain = RulesHead().fit([scene["train"]], ctx=QUIET).score([scene["odd"]], ctx=QUIET)
    assert not [e for e in plain.events if SPAN[0] <= e.start_frame < SPAN[1]]
    assert result.scores[0].frame_scores[SPAN[0] + 10:SPAN[1] - 10].min() > plain.scores[0].frame_scores.max()


def test_fit_save_load_score_is_identical_with_appearance(scene, tmp_path: Path) -> None:
    head = scene["head"]
    model = head.save(tmp_path / "model")
    assert len(list((model / "appearance" / "normal").glob("*.jpg"))) == len(head.appearance.index)
    loaded = RulesHead.load(model)
    assert loaded.config == head.config and loaded.config.appearance.enabled
    after = loaded.score([scene["odd"], scene["normal"]], ctx=QUIET)
    assert_same_result(scene["result"], after)
    assert [e.meta.get("appearance") for e in after.events] == [e.meta.get("appearance") for e in scene["result"].events]
    sent = pickle.loads(pickle.dumps(head))  # as a Ray worker receives it: the backbone is rebuilt there
    assert_same_result(scene["result"], sent.score([scene["odd"], scene["normal"]], ctx=QUIET))
    # a folder whose config has appearance on but lost its index is refused, naming what to do
    shutil.rmtree(model / "appearance")
    with pytest.raises(ModelError, match="appearance index is missing"):
        RulesHead.load(model)


def test_a_model_folder_from_before_appearance_loads_and_scores_as_before(scene, tmp_path: Path) -> None:
    head = RulesHead(sigma=4, induction={"subsets": 3, "folds": 2}).fit([scene["train"]], ctx=QUIET)
    clips = [scene["odd"][:60], scene["normal"][:60]]
    before = head.score(clips, ctx=QUIET)
    model = head.save(tmp_path / "old")
    doc = json.loads((model / MANIFEST).read_text())  # as written before appearance existed: no such setting
    del doc["config"]["appearance"]
    (model / MANIFEST).write_text(json.dumps(doc))
    assert not (model / "appearance").exists()
    loaded = RulesHead.load(model)
    assert loaded.appearance is None and loaded.config.appearance == AppearanceConfig()
    assert not loaded.config.appearance.enabled and loaded.config == head.config
    assert_same_result(before, loaded.score(clips, ctx=QUIET))


def test_every_nth_frame_measures_new_tracks_and_carries_the_others(scene, monkeypatch) -> None:
    from oddeye.video.rules.perception import ObjectObs

    app = pickle.loads(pickle.dumps(scene["head"].appearance))
    app.config = app.config.replace(every=4)
    batches: list[int] = []
    embed = app.embed
    monkeypatch.setattr(app, "embed", lambda x: batches.append(len(x)) or embed(x))

    def walker(track: int, x: float, frame: int) -> ObjectObs:
        return ObjectObs(frame=frame, track=track, box=(x, 60.0, x + 6, 76.0), area=80.0, height=16.0, width=6.0,
                         aspect=2.7, speed=1.0, track_speed=1.0, vx=1.0, vy=0.0, direction="right", zone="walkway")

    frames = scene["odd"]
    seen = {}
    for i in range(6):
        objs = [walker(1, 30 + i, i), walker(2, 90 - i, i)] + ([walker(3, 120, i)] if i >= 2 else [])
        objs.append(walker(4, 0.0, i))  # touches the left border: only part of it is in view
        app.measure(frames[i], objs, i)
        seen[i] = [(o.appearance, o.nearest) for o in objs]
    assert batches == [2, 1, 3]  # frame 0: both walkers; frame 2: the new track; frame 4: all three
    assert seen[1][:2] == seen[3][:2] == seen[0][:2] and seen[3][2] == seen[2][2]
    assert all(np.isnan(s[-1][0]) and s[-1][1] == -1 for s in seen.values())


def test_appearance_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"RulesConfig\.induction\.attributes: appearance"):
        RulesConfig(induction={"attributes": ("speed", "appearance")})
    with pytest.raises(ConfigError, match=r"RulesConfig\.appearance\.crop"):
        RulesHead(appearance={"enabled": True, "crop": 16})
    with pytest.raises(ConfigError, match=r"AppearanceConfig\.every"):
        AppearanceConfig(every=0)
    cfg = RulesConfig(appearance={"enabled": True, "margin": 2.0})
    assert RulesConfig.from_dict(cfg.to_dict()) == cfg


def test_an_appearance_rule_reads_and_edits_like_the_others(tmp_path: Path) -> None:
    rule = Rule(id="R009", attribute="appearance", high=12.5, margin=4.0)
    assert rule.describe() == ("objects anywhere look like those in the normal footage: distance to the nearest normal "
                               "object at most 12.5")
    assert rule.broken_text(20.0).startswith("that looks like none in the normal footage: distance 20")
    assert rule.score(20.0) == pytest.approx(1.875)
    path = RuleSet(rules=[rule]).save(tmp_path / "rules.yaml")
    assert RuleSet.load(path).rules[0] == rule


def test_the_video_page_shows_the_object_beside_its_nearest_normal_one(scene, tmp_path: Path, monkeypatch) -> None:
    from streamlit.testing.v1 import AppTest

    from oddeye.store.api import save_result

    db = tmp_path / "store.db"
    run_id = save_result(db, scene["result"], kind="score", model="in-test")
    monkeypatch.setenv("ODDEYE_UI_DB", str(db))
    monkeypatch.delenv("ODDEYE_UI_PASSWORD", raising=False)
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "oddeye" / "ui" / "app.py"), default_timeout=60)
    at.run()
    at.sidebar.radio(key="page").set_value("Video")
    at.sidebar.selectbox(key="run").set_value(run_id)
    at.run()
    assert not at.exception and not at.error
    captions = [img.caption for el in at.get("image") for img in el.proto.imgs]
    assert "this object" in captions and any(c.startswith("nearest normal object (#") for c in captions)
