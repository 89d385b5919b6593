"""PatrolHead end to end on generated routes: pairing, events, no reference, failures kept, save/load (old model
folders too), config checks, review rows for the dashboard, CLI (inputs checked before the model loads, --skip-bad)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from contract_support import assert_same_result
from oddeye.core import synth
from oddeye.core.errors import ConfigError, EmptyDataError, InputError, ModelError
from oddeye.core.head import MANIFEST, RunContext, write_manifest
from oddeye.patrol.config import LEGACY_CONFIG_FILE, PatrolConfig
from oddeye.patrol.head import PatrolHead
from oddeye.patrol.pairing import PairingParams, pair_frames
from oddeye.patrol.reference import ReferenceRun, read_poses
from oddeye.patrol.review import per_pair


@pytest.fixture(scope="module")
def route_dirs(tmp_path_factory):
    d = tmp_path_factory.mktemp("route")
    r = synth.make_route(seed=0, n_frames=24, size=(120, 160), n_objects=1)
    synth.write_frames(r.reference, d / "ref")
    synth.write_frames(r.query, d / "qry")
    return d, r


@pytest.fixture(scope="module")
def fitted(route_dirs):
    d, _ = route_dirs
    return PatrolHead(threads=1).fit(d / "ref", ctx=RunContext(progress=False))


def test_pairing_picks_the_right_reference_frame(fitted, route_dirs) -> None:
    _, r = route_dirs
    descs = fitted.describer.global_descriptor(r.query)
    pairs = pair_frames(fitted.reference, descs)
    chosen = np.array([p.ref_index if p.ref_index is not None else -99 for p in pairs])
    assert np.mean(np.abs(chosen - np.arange(len(r.query))) <= 1) >= 0.9
    assert all(p.similarity > 0 for p in pairs)


def _quiet(out=None, **kw) -> RunContext:
    return RunContext(out=out, progress=False, **kw)


def test_score_finds_the_inserted_object(fitted, route_dirs, tmp_path) -> None:
    d, r = route_dirs
    res = fitted.score(d / "qry", ctx=_quiet(tmp_path))
    s = res.scores[0]
    assert len(s.frame_scores) == len(r.query)
    lab = r.labels.astype(bool)
    assert np.nanmean(s.frame_scores[lab]) > 3 * np.nanmean(s.frame_scores[~lab])
    assert res.events and any(lab[e.start_frame:e.end_frame + 1].any() for e in res.events)
    assert res.events[0].start is not None and res.events[0].box is not None
    assert list((tmp_path / "overlays").glob("*_change.png"))
    assert len(s.maps) == len(r.query)  # every scored frame keeps its map (fewer frames than max_maps)
    review = per_pair(res)
    assert len(review.scores) == len(r.query) and review.scores[0].meta["kind"] == "patrol_pair"


def test_review_rows_carry_what_the_dashboard_shows(fitted, route_dirs, tmp_path) -> None:
    from oddeye.store.api import open_store
    from oddeye.store.writer import write_result

    d, _ = route_dirs
    res = fitted.score(d / "qry", ctx=_quiet(tmp_path / "out"))
    assert res.meta["artefacts"]["reference"] == str((d / "ref").resolve()) == res.meta["reference"]
    review = per_pair(res)
    for sc in review.scores:
        assert {"index", "ref_index"} <= set(sc.meta) and "change" in sc.maps, sc.sample_id
    flagged = [sc for sc in review.scores if sc.score > res.threshold]
    assert flagged and all({"query", "reference", "change"} <= set(sc.artefacts) for sc in flagged)
    written = write_result(res, tmp_path / "out", kind="patrol", view=per_pair, timelines=False)
    with open_store(written.db) as store:
        run = store.run(written.run_id)
        assert run["meta"]["reference"] == str((d / "ref").resolve())
        # the reference frames lie outside the out folder; the run-level artefact makes them readable
        store.safe_path(next((d / "ref").iterdir()), written.run_id)
        sample = store.samples(written.run_id, order="id")[0]
        assert "change" in store.maps(sample["id"])


def test_kept_maps_are_the_highest_scoring_frames(fitted, route_dirs) -> None:
    d, _ = route_dirs
    head = PatrolHead(fitted.config.replace(max_maps=3))
    head.reference = fitted.reference
    s = head.score(d / "qry", ctx=_quiet()).scores[0]
    top = sorted(np.argsort(-np.nan_to_num(s.frame_scores, nan=-1))[:3])
    assert sorted(s.maps) == [f"frame_{int(s.frame_indices[i]):06d}" for i in top]
    assert not fitted.score(d / "qry", ctx=_quiet(keep_maps=False)).scores[0].maps


def test_no_match_query_is_no_reference(fitted, tmp_path) -> None:
    other = np.random.default_rng(1).integers(0, 255, (4, 120, 160, 3), dtype=np.uint8)
    synth.write_frames(other, tmp_path / "noise")
    res = fitted.score(tmp_path / "noise", ctx=_quiet())
    frames = res.scores[0].meta["frames"]
    assert [f["status"] for f in frames] == ["no_reference"] * 4
    assert "no reference" in frames[0]["reason"]
    assert not res.events  # not an anomaly everywhere


def test_other_aspect_ratio_is_refused_clearly(fitted, tmp_path) -> None:
    synth.write_frames(np.zeros((2, 120, 120, 3), np.uint8) + 100, tmp_path / "square")
    with pytest.raises(InputError, match="aspect"):
        fitted.score(tmp_path / "square", ctx=_quiet())


def test_failing_frames_are_recorded_and_the_rest_kept(fitted, route_dirs, tmp_path) -> None:
    _, r = route_dirs
    frames = r.query[:6].copy()
    frames[2] = 0  # a black frame: too dark to align
    synth.write_frames(frames, tmp_path / "dark")
    res = fitted.score(tmp_path / "dark", ctx=_quiet())
    recs = res.scores[0].meta["frames"]
    assert len(recs) == 6
    assert recs[2]["status"] in ("align_failed", "no_reference")
    assert "dark" in recs[2]["reason"] or "no reference" in recs[2]["reason"]
    assert sum(f["status"] == "ok" for f in recs) >= 4


def test_empty_reference(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises((EmptyDataError, InputError)):
        PatrolHead(threads=1).fit(tmp_path / "empty")


def test_foreign_model_folder_names_its_command(tmp_path) -> None:
    write_manifest(tmp_path / "other", "patchcore")
    with pytest.raises(ModelError, match="`oddeye score image`"):
        PatrolHead.load(tmp_path / "other")


def test_model_folder_of_the_old_format_loads_and_scores_the_same(fitted, route_dirs, tmp_path) -> None:
    d, _ = route_dirs
    new = fitted.save(tmp_path / "new")
    old = fitted.save(tmp_path / "old")
    # before the config moved into the manifest: no "config" key, the settings in patrol.json (extra keys ignored)
    doc = json.loads((old / MANIFEST).read_text())
    cfg = doc.pop("config")
    (old / MANIFEST).write_text(json.dumps(doc))
    (old / LEGACY_CONFIG_FILE).write_text(json.dumps({**cfg, "retired": 1, "change": {**cfg["change"], "gone": 2}}))
    a, b = PatrolHead.load(new), PatrolHead.load(old)
    assert a.config == b.config == fitted.config
    query = synth.write_frames(synth.make_route(seed=0, n_frames=24, size=(120, 160), n_objects=1).query[8:14],
                               tmp_path / "q")
    ra = a.score(query, ctx=_quiet())
    assert_same_result(ra, b.score(query, ctx=_quiet()))
    # a loaded model reads its reference frames from its own frames/ folder, where frame ref_index is the pair's
    assert ra.meta["reference"] == ra.meta["artefacts"]["reference"] == str((new / "frames").resolve())
    assert ra.meta["reference_route"] == str((d / "ref").resolve())
    (old / LEGACY_CONFIG_FILE).unlink()
    with pytest.raises(ModelError, match="patrol.json"):
        PatrolHead.load(old)


def test_config_is_checked_and_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"PatrolConfig\.stride"):
        PatrolHead(stride=0)
    with pytest.raises(ConfigError, match=r"PatrolConfig\.change\.threshold"):
        PatrolConfig.from_dict({"change": {"threshold": -1}})
    with pytest.raises(ConfigError, match=r"PatrolConfig\.pairing\.min_similarity"):
        PatrolConfig().replace(pairing={"min_similarity": 2.0})
    with pytest.raises(ConfigError, match="no_such"):
        PatrolHead(no_such=1)
    head = PatrolHead(max_side=320, pairing={"k": 8})
    assert head.config.max_side == 320 and head.config.pairing.k == 8 and head.config.pairing.separation == 3
    assert PatrolConfig.from_dict(head.config.to_dict()) == head.config


def test_poses_csv_and_window(fitted, tmp_path) -> None:
    n = len(fitted.reference)
    f = tmp_path / "poses.csv"
    f.write_text("frame,time,x,y\n" + "".join(f"{i},{i * 0.1},{i * 1.0},0\n" for i in range(n)))
    table = read_poses(f, n)
    assert table["x"][3] == 3.0
    ref = ReferenceRun(fitted.reference.source, fitted.reference.indices, table["time"],
                       np.stack([table["x"], table["y"]], 1), fitted.reference.index, fitted.reference.size,
                       fitted.reference.center)
    descs = fitted.describer.global_descriptor(ref.frames([5, 6]))
    pr = pair_frames(ref, descs, PairingParams(pose_radius=0.5), poses=np.array([[20.0, 0], [6.0, 0]]))
    assert pr[0].ref_index == 20 or pr[0].status == "no_reference"  # only frame 20 is within the radius
    assert pr[1].ref_index == 6
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="column"):
        read_poses(tmp_path / "bad.csv")
    (tmp_path / "short.csv").write_text("time\n0.1\n")
    with pytest.raises(InputError, match="rows"):
        read_poses(tmp_path / "short.csv", n)


def test_cli_fit_score(route_dirs, tmp_path, capsys) -> None:
    from oddeye.cli import main

    _, r = route_dirs
    d = tmp_path
    synth.write_frames(r.reference[:8], d / "ref")
    synth.write_frames(r.query[:8], d / "qry")
    assert main(["fit", "patrol", "--reference", str(d / "ref"), "--out", str(tmp_path / "m"), "--threads", "1",
                 "--no-features"]) == 0
    assert json.loads((tmp_path / "m" / "oddeye_model.json").read_text())["head"] == "patrol"
    assert json.loads((tmp_path / "m" / MANIFEST).read_text())["config"]["use_features"] is False
    assert main(["score", "patrol", str(tmp_path / "m"), "--query", str(d / "qry"), "--out", str(tmp_path / "o"),
                 "--threads", "1"]) == 0
    assert (tmp_path / "o" / "result.json").is_file() and (tmp_path / "o" / "store.db").is_file()
    assert list(tmp_path.glob("o/timeline_*.png"))
    assert main(["score", "patrol", str(tmp_path / "nope"), "--query", str(d / "qry")]) == 2
    bad = tmp_path / "cut.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    args = ["score", "patrol", str(tmp_path / "m"), "--query", str(bad), "--query", str(d / "qry"), "--threads", "1",
            "--no-progress", "--out", str(tmp_path / "s")]
    assert main(args) == 2 and not (tmp_path / "s" / "result.json").exists()
    assert main([*args, "--skip-bad"]) == 0
    assert "skipped" in capsys.readouterr().err
    doc = json.loads((tmp_path / "s" / "result.json").read_text())
    assert [s["sample_id"] for s in doc["scores"]] == ["cut", "qry"] and "error" in doc["scores"][0]["meta"]
    assert main(["score", "patrol", str(tmp_path / "m"), "--query", str(tmp_path / "nope.mp4")]) == 2
    assert "query run not found" in capsys.readouterr().err


def deeppcb_layout(root, n: int = 2):
    """A tiny DeepPCB layout under `root`: `n` generated template/test pairs with their boxes; returns root."""
    from oddeye.core.imageio import write_image

    g = root / "PCBData" / "group00001"
    (g / "00001").mkdir(parents=True)
    (g / "00001_not").mkdir()
    lines = []
    for i in range(n):
        p = synth.make_pair(seed=i, size=(160, 160), n_changes=2)
        write_image(g / "00001" / f"0000100{i}_temp.jpg", p.reference)
        write_image(g / "00001" / f"0000100{i}_test.jpg", p.query)
        (g / "00001_not" / f"0000100{i}.txt").write_text(
            "".join(f"{int(b[0])} {int(b[1])} {int(b[2])} {int(b[3])} 1\n" for b in p.boxes))
        lines.append(f"group00001/00001/0000100{i}.jpg group00001/00001_not/0000100{i}.txt")
    (root / "PCBData" / "test.txt").write_text("\n".join(lines) + "\n")
    return root


def test_eval_cli_on_a_tiny_deeppcb_layout(tmp_path, capsys) -> None:
    from oddeye.cli import main

    deeppcb_layout(tmp_path)
    rc = main(["eval", "patrol", "--root", str(tmp_path), "--warp", "--no-features", "--threads", "1",
               "--out", str(tmp_path / "o")])
    assert rc == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert "--warp" in "\n".join(out)
    doc = json.loads(out[-1])
    assert doc["dataset"] == "deeppcb" and doc["n_samples"] == 2 and doc["warp"] is True
    for key in ("pixel_auroc", "box_recall", "box_recall_centre", "pixel_f1", "pixel_iou", "pairs_per_s"):
        assert key in doc
    assert doc["pixel_auroc"] > 0.7
    assert main(["eval", "patrol", "--root", str(tmp_path / "nope")]) == 2


def test_pose_radius_without_poses_is_refused(fitted, route_dirs) -> None:
    d, _ = route_dirs
    head = PatrolHead(fitted.config.replace(pairing=fitted.config.pairing.replace(pose_radius=1.0)))
    head.reference = fitted.reference
    with pytest.raises(InputError, match="poses") as e:
        head.score(d / "qry", ctx=_quiet())
    assert "oddeye score patrol --poses" in e.value.hint


def test_unreadable_run_is_refused_up_front_or_recorded_with_skip_bad(fitted, route_dirs, tmp_path) -> None:
    _, r = route_dirs
    bad = tmp_path / "cut.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    few = synth.write_frames(r.query[:3], tmp_path / "few")
    with pytest.raises(InputError):  # refused before any run is scored: nothing is lost
        fitted.score([few, bad], ctx=_quiet(tmp_path / "a"))
    assert not (tmp_path / "a" / "overlays").exists()
    res = fitted.score([bad, few], ctx=_quiet(skip_bad=True))
    assert [s.sample_id for s in res.errors()] == ["cut"]
    assert res.errors()[0].meta["path"] == str(bad.resolve()) and np.isnan(res.scores[0].score)
    assert len(res.scores[1].frame_scores) == 3
    review = per_pair(res)
    assert review.errors() and len(review.scores) == 4


def test_score_patrol_checks_inputs_before_loading_the_model(route_dirs, tmp_path, monkeypatch) -> None:
    from oddeye.patrol.cli import score_patrol

    d, _ = route_dirs

    def no_load(*a, **k):
        raise AssertionError("the model was loaded before the inputs were checked")

    monkeypatch.setattr(PatrolHead, "load", classmethod(no_load))
    model = tmp_path / "model"
    write_manifest(model, "patrol")
    with pytest.raises(InputError, match="query run not found: .*nope.mp4"):
        score_patrol(model, query=[str(tmp_path / "nope.mp4")], out=tmp_path / "o")
    from oddeye.cli import main

    assert main(["score", "patrol", str(model)]) == 2  # no --query at all: refused by the command line itself
    with pytest.raises(InputError, match="poses CSV not found"):
        score_patrol(model, query=[str(d / "qry")], poses=tmp_path / "nope.csv", out=tmp_path / "o")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        score_patrol(model, query=[str(d / "qry")], out=tmp_path / "file")
    with pytest.raises(ConfigError, match=r"PatrolConfig\.event_threshold"):
        score_patrol(model, query=[str(d / "qry")], out=tmp_path / "o", threshold=-1.0)
    write_manifest(tmp_path / "image-model", "patchcore")
    with pytest.raises(ModelError, match="`oddeye score image`"):
        score_patrol(tmp_path / "image-model", query=[str(d / "qry")], out=tmp_path / "o")


def test_demo_frames_all_keep_their_change_maps() -> None:
    from oddeye.patrol.demo import N_FRAMES

    assert N_FRAMES <= PatrolConfig().max_maps
