"""PatrolHead end to end on generated routes: pairing, events, no reference, failures kept, save/load, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from oddeye.core import synth
from oddeye.core.errors import EmptyDataError, InputError, ModelError
from oddeye.core.head import write_manifest
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
    return PatrolHead(threads=1).fit(d / "ref")


def test_pairing_picks_the_right_reference_frame(fitted, route_dirs) -> None:
    _, r = route_dirs
    descs = fitted.describer.global_descriptor(r.query)
    pairs = pair_frames(fitted.reference, descs)
    chosen = np.array([p.ref_index if p.ref_index is not None else -99 for p in pairs])
    assert np.mean(np.abs(chosen - np.arange(len(r.query))) <= 1) >= 0.9
    assert all(p.similarity > 0 for p in pairs)


def test_score_finds_the_inserted_object(fitted, route_dirs, tmp_path) -> None:
    d, r = route_dirs
    res = fitted.score(d / "qry", overlays=tmp_path / "ov")
    s = res.scores[0]
    assert len(s.frame_scores) == len(r.query)
    lab = r.labels.astype(bool)
    assert np.nanmean(s.frame_scores[lab]) > 3 * np.nanmean(s.frame_scores[~lab])
    assert res.events and any(lab[e.start_frame:e.end_frame + 1].any() for e in res.events)
    assert res.events[0].start is not None and res.events[0].box is not None
    assert list((tmp_path / "ov").glob("*_change.png"))
    review = per_pair(res)
    assert len(review.scores) == len(r.query) and review.scores[0].meta["kind"] == "patrol_pair"


def test_no_match_query_is_no_reference(fitted, tmp_path) -> None:
    other = np.random.default_rng(1).integers(0, 255, (4, 120, 160, 3), dtype=np.uint8)
    synth.write_frames(other, tmp_path / "noise")
    res = fitted.score(tmp_path / "noise")
    frames = res.scores[0].meta["frames"]
    assert [f["status"] for f in frames] == ["no_reference"] * 4
    assert "no reference" in frames[0]["reason"]
    assert not res.events  # not an anomaly everywhere


def test_other_aspect_ratio_is_refused_clearly(fitted, tmp_path) -> None:
    synth.write_frames(np.zeros((2, 120, 120, 3), np.uint8) + 100, tmp_path / "square")
    with pytest.raises(InputError, match="aspect"):
        fitted.score(tmp_path / "square")


def test_failing_frames_are_recorded_and_the_rest_kept(fitted, route_dirs, tmp_path) -> None:
    _, r = route_dirs
    frames = r.query[:6].copy()
    frames[2] = 0  # a black frame: too dark to align
    synth.write_frames(frames, tmp_path / "dark")
    res = fitted.score(tmp_path / "dark")
    recs = res.scores[0].meta["frames"]
    assert len(recs) == 6
    assert recs[2]["status"] in ("align_failed", "no_reference")
    assert "dark" in recs[2]["reason"] or "no reference" in recs[2]["reason"]
    assert sum(f["status"] == "ok" for f in recs) >= 4


def test_empty_reference(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises((EmptyDataError, InputError)):
        PatrolHead(threads=1).fit(tmp_path / "empty")


def test_save_load_round_trip(fitted, route_dirs, tmp_path) -> None:
    d, _ = route_dirs
    fitted.config.use_features = False
    try:
        a = fitted.score(d / "qry")
        fitted.save(tmp_path / "model")
        b = PatrolHead.load(tmp_path / "model").score(d / "qry")
    finally:
        fitted.config.use_features = True
    assert np.allclose(a.scores[0].frame_scores, b.scores[0].frame_scores, atol=1e-3, equal_nan=True)
    write_manifest(tmp_path / "other", "image-patchcore")
    with pytest.raises(ModelError, match="patrol"):
        PatrolHead.load(tmp_path / "other")


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


def test_cli_fit_score(route_dirs, tmp_path) -> None:
    from oddeye.cli import main

    _, r = route_dirs
    d = tmp_path
    synth.write_frames(r.reference[:8], d / "ref")
    synth.write_frames(r.query[:8], d / "qry")
    assert main(["fit", "patrol", "--reference", str(d / "ref"), "--out", str(tmp_path / "m"), "--threads", "1",
                 "--no-features"]) == 0
    assert json.loads((tmp_path / "m" / "oddeye_model.json").read_text())["head"] == "patrol"
    assert main(["score", "patrol", str(tmp_path / "m"), "--query", str(d / "qry"), "--out", str(tmp_path / "o"),
                 "--threads", "1"]) == 0
    assert (tmp_path / "o" / "result.json").is_file() and (tmp_path / "o" / "store.db").is_file()
    assert list(tmp_path.glob("o/timeline_*.png"))
    assert main(["score", "patrol", str(tmp_path / "nope"), "--query", str(d / "qry")]) == 2


def test_eval_cli_on_a_tiny_deeppcb_layout(tmp_path, capsys) -> None:
    from oddeye.cli import main
    from oddeye.core.imageio import write_image

    g = tmp_path / "PCBData" / "group00001"
    (g / "00001").mkdir(parents=True)
    (g / "00001_not").mkdir()
    lines = []
    for i in range(2):
        p = synth.make_pair(seed=i, size=(160, 160), n_changes=2)
        write_image(g / "00001" / f"0000100{i}_temp.jpg", p.reference)
        write_image(g / "00001" / f"0000100{i}_test.jpg", p.query)
        (g / "00001_not" / f"0000100{i}.txt").write_text(
            "".join(f"{int(b[0])} {int(b[1])} {int(b[2])} {int(b[3])} 1\n" for b in p.boxes))
        lines.append(f"group00001/00001/0000100{i}.jpg group00001/00001_not/0000100{i}.txt")
    (tmp_path / "PCBData" / "test.txt").write_text("\n".join(lines) + "\n")
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
    fitted.config.pairing.pose_radius = 1.0
    try:
        with pytest.raises(InputError, match="poses"):
            fitted.score(d / "qry")
    finally:
        fitted.config.pairing.pose_radius = None


def test_unreadable_run_among_several_is_recorded(fitted, route_dirs, tmp_path) -> None:
    d, r = route_dirs
    bad = tmp_path / "cut.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    synth.write_frames(r.query[:3], tmp_path / "few")
    res = fitted.score([bad, tmp_path / "few"])
    assert len(res.scores) == 2
    assert "not scored" in res.scores[0].reason and np.isnan(res.scores[0].score)
    assert len(res.scores[1].frame_scores) == 3
    with pytest.raises(InputError):
        fitted.score(bad)
