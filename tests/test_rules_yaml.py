"""Rules are data: YAML round trip, clear errors on edited files, CLI fit/show, evaluate_rules on a tiny data set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from oddeye.core.errors import InputError, ModelError
from oddeye.core.head import RunContext
from oddeye.core.synth import make_video, write_frames
from oddeye.video.rules import Rule, RuleSet, RulesHead
from oddeye.video.rules.rules import RuleFileError


def _ruleset() -> RuleSet:
    return RuleSet([Rule("R001", "speed", zone="lower left walkway", high=2.0, margin=0.5, text="walk slowly"),
                    Rule("R002", "aspect", low=0.8, high=4.0, margin=0.3),
                    Rule("R003", "zone", allowed=["lower left walkway"], weight=0.1),
                    Rule("R004", "count", high=6.999, margin=1.0),
                    Rule("R005", "kind", zone="lower left walkway", allowed=["compact", "tall"])],
                   meta={"backend": "offline"})


def test_yaml_round_trip(tmp_path: Path) -> None:
    rs = _ruleset()
    path = rs.save(tmp_path / "rules.yaml")
    text = path.read_text()
    assert "walk slowly" in text and text.startswith("#")
    again = RuleSet.load(path)
    assert [(r.id, r.attribute, r.zone, r.low, r.high, r.allowed, r.weight) for r in again.rules] == \
           [(r.id, r.attribute, r.zone, r.low, r.high, r.allowed, r.weight) for r in rs.rules]
    assert again.rules[1].describe() == "objects anywhere have a height/width ratio of 0.8 to 4 height/width"
    assert again.rules[3].describe() == "frames have at most 6 moving objects"
    assert again.rules[4].describe() == "objects in the lower left walkway are compact or tall"
    assert again.rules[4].score("wide") > 0 > again.rules[4].score("tall")
    assert again.rules[0].score(3.0) == pytest.approx(2.0) and again.rules[1].score(0.5) == pytest.approx(1.0)


def _edit(tmp_path: Path, change) -> Path:
    path = _ruleset().save(tmp_path / "rules.yaml")
    doc = yaml.safe_load(path.read_text())
    change(doc["rules"])
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.mark.parametrize("change,pattern", [
    (lambda r: r[1].update(hgih=r[1].pop("high")), r"(?s)rule 1 \(id 'R002'\): unknown field 'hgih'.*did you mean 'high'"),
    (lambda r: r[0].update(attribute="sped"), r"(?s)rule 0 \(id 'R001'\): field 'attribute' has unknown value 'sped'.*'speed'"),
    (lambda r: r[0].update(high="fast"), r"rule 0 \(id 'R001'\): field 'high' must be a number"),
    (lambda r: r[1].update(low=9.0), r"rule 1 \(id 'R002'\): field 'low' \(9.0\) is above 'high'"),
    (lambda r: r[2].pop("allowed"), r"rule 2 \(id 'R003'\): a 'zone' rule needs field 'allowed'"),
    (lambda r: r[3].update(margin=0), r"rule 3 \(id 'R004'\): field 'margin' must be > 0"),
    (lambda r: r[3].update(id="R001"), r"duplicate rule id"),
    (lambda r: r[4].update(allowed=["tal"]), r"rule 4 \(id 'R005'\): field 'allowed' has unknown kind"),
])
def test_typo_in_edited_file_names_file_rule_and_field(tmp_path: Path, change, pattern: str) -> None:
    path = _edit(tmp_path, change)
    with pytest.raises(RuleFileError, match=pattern) as e:
        RuleSet.load(path)
    assert str(path) in e.value.message


def test_broken_yaml_names_the_line(tmp_path: Path) -> None:
    p = tmp_path / "rules.yaml"
    p.write_text("version: 1\nrules:\n  - id: R001\n   attribute: speed\n")
    with pytest.raises(RuleFileError, match=r"not valid YAML \(at line \d+, column \d+: "):
        RuleSet.load(p)
    with pytest.raises(ModelError, match="not found"):
        RuleSet.load(tmp_path / "missing.yaml")


def test_edited_rule_changes_scoring_and_typo_fails_load(tmp_path: Path) -> None:
    normal = make_video(seed=5, n_frames=150, anomaly=None).frames
    head = RulesHead().fit([normal], ctx=RunContext(progress=False))
    head.save(tmp_path / "m")
    doc = yaml.safe_load((tmp_path / "m" / "rules.yaml").read_text())
    for r in doc["rules"]:
        if r["attribute"] == "speed":
            r["high"] = 0.05  # nobody may move: every walker breaks it
    (tmp_path / "m" / "rules.yaml").write_text(yaml.safe_dump(doc))
    strict = RulesHead.load(tmp_path / "m")
    sc, verdicts = strict.score_video(normal[:60])
    assert np.mean([v.flagged() for v in verdicts[10:]]) > 0.8
    doc["rules"][0]["zoen"] = "x"
    (tmp_path / "m" / "rules.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(RuleFileError, match="(?s)rule 0.*unknown field 'zoen'.*did you mean 'zone'"):
        RulesHead.load(tmp_path / "m")


def test_cli_fit_show_and_score(tmp_path: Path, capsys) -> None:
    from oddeye.cli import main

    frames = write_frames(make_video(seed=5, n_frames=120, anomaly=None).frames, tmp_path / "normal")
    test = write_frames(make_video(seed=5, anomaly="big").frames, tmp_path / "test_big")
    assert main(["fit", "video-rules", "--frames", str(frames), "--out", str(tmp_path / "m"), "--shots", "40"]) == 0
    assert main(["rules", "show", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    assert "R001" in out and "scene zones" in out and "walkway" in out
    assert main(["score", "video", str(tmp_path / "m"), str(test), "--out", str(tmp_path / "res")]) == 0
    assert (tmp_path / "res" / "result.json").is_file()
    assert main(["fit", "video-rules", "--frames", str(frames), "--out", str(tmp_path / "m2"), "--grid", "4by6"]) == 2
    assert main(["rules", "show", str(tmp_path)]) == 2
    assert "--grid must look like 4x6" in capsys.readouterr().err
    assert main(["fit", "video-rules", "--frames", str(frames), "--out", str(tmp_path / "m2"), "--grid", "13x6"]) == 2
    assert main(["fit", "video-rules", "--frames", str(frames), "--out", str(tmp_path / "m2"), "--backend", "transformers"]) == 2
    err = capsys.readouterr().err
    assert "RulesConfig.grid" in err and "RulesConfig.llm.model" in err and "--llm-model" in err
    assert not (tmp_path / "m2").exists()  # refused before any work


def test_fit_command_stores_the_settings_it_was_given(tmp_path: Path) -> None:
    from oddeye.core.head import MANIFEST
    from oddeye.video.rules import RulesConfig
    from oddeye.video.rules.cli import fit_video_rules

    frames = write_frames(make_video(seed=5, n_frames=80, anomaly=None).frames, tmp_path / "normal")
    model = fit_video_rules(out=tmp_path / "m", frames=[frames], grid="3x5", flow="dis", attributes="speed, height",
                            zone_weight=1.0, progress=False)
    config = RulesConfig.from_dict(json.loads((model / MANIFEST).read_text())["config"])
    assert config == RulesConfig(grid=(3, 5), perception={"flow": "dis"},
                                 induction={"attributes": ["speed", "height"], "zone_weight": 1.0})
    assert RulesHead.load(model).config == config
    with pytest.raises(InputError, match="--shots"):
        fit_video_rules(out=tmp_path / "m3", frames=[frames], shots=0)
    with pytest.raises(InputError, match="no training data"):
        fit_video_rules(out=tmp_path / "m3")


def test_errors_name_real_commands(tmp_path: Path) -> None:
    from oddeye.core.head import write_manifest

    write_manifest(tmp_path / "img", "patchcore")
    with pytest.raises(ModelError, match="`oddeye score image`"):
        RulesHead.load(tmp_path / "img")
    (tmp_path / "broken").mkdir()
    write_manifest(tmp_path / "broken", "video-rules", 2, config={})
    with pytest.raises(ModelError, match="`oddeye fit video-rules`"):
        RulesHead.load(tmp_path / "broken")


def test_evaluate_rules_on_a_tiny_dataset(tmp_path: Path) -> None:
    from oddeye.video.datasets import VideoDataset, VideoItem
    from oddeye.video.rules.evaluate import evaluate_rules

    train = [VideoItem("n", write_frames(make_video(seed=5, n_frames=150, anomaly=None).frames, tmp_path / "n"))]
    test = []
    for a in ("fast", "big"):
        v = make_video(seed=5, anomaly=a)
        test.append(VideoItem(a, write_frames(v.frames, tmp_path / a), v.labels, (lambda m: lambda i: m[i])(v.masks)))
    m = evaluate_rules(VideoDataset("synth", tmp_path, train, test), shots=None, out=tmp_path / "ev",
                       show_progress=False)
    assert m["frame_auroc_micro"] > 0.85 and m["frame_auroc_macro"] > 0.85
    assert m["reason_hit_rate"] > 0.8 and m["n_rules"] > 0 and m["frames_per_s"] > 0
    assert (tmp_path / "ev" / "model" / "rules.yaml").is_file() and (tmp_path / "ev" / "result.json").is_file()
