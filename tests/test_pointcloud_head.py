"""Point-cloud head on generated clouds: separation, save/load, defects generator, preprocessing, review files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from oddeye.core.errors import ConfigError, InputError, ModelError
from oddeye.core.head import MANIFEST, RunContext
from oddeye.core.synth import make_point_cloud
from oddeye.pointcloud.defects import KINDS, make_defect
from oddeye.pointcloud.head import MIN_POINTS, PointCloudConfig, PointCloudHead
from oddeye.pointcloud.io import load_cloud
from oddeye.pointcloud.plyfile import write_ply

QUIET = RunContext(progress=False)
from oddeye.pointcloud.preprocess import normalise, preprocess, voxel_downsample


@pytest.fixture(scope="module")
def fitted():
    train = [make_point_cloud(seed=s, n_points=3000, shape="box").points for s in range(4)]
    head = PointCloudHead(adapt=True, keep_raw=True, target_points=800, adapt_steps=40).fit(train, ctx=QUIET)
    clean = [make_point_cloud(seed=50 + s, n_points=3000, shape="box") for s in range(3)]
    bad = [make_point_cloud(seed=60 + s, n_points=3000, shape="box", defect=d, defect_size=0.1)
           for s, d in enumerate(["dent", "bulge", "dent"])]
    return head, clean, bad


def test_head_separates_defective_from_clean(fitted):
    from oddeye.core.metrics import auroc, pixel_auroc

    head, clean, bad = fitted
    res = head.score([c.points for c in clean + bad], ctx=QUIET)
    assert auroc([0] * 3 + [1] * 3, res.sample_scores()) >= 0.99
    maps = [s.maps["points"].values for s in res.scores]
    assert pixel_auroc([c.labels for c in clean + bad], maps) > 0.85
    assert all(len(m) == 3000 for m in maps)


def test_save_load_identical_scores(fitted, tmp_path):
    head, clean, bad = fitted
    head.save(tmp_path / "m")
    again = PointCloudHead.load(tmp_path / "m")
    a = head.score_points(bad[0].points)
    b = again.score_points(bad[0].points)
    assert a.score == pytest.approx(b.score, rel=1e-6)
    np.testing.assert_allclose(a.points, b.points, rtol=1e-5)
    assert (tmp_path / "m" / "adapter.safetensors").is_file() and again.index.dim == 33 + 64


def test_load_other_head_is_model_error(tmp_path):
    from oddeye.core.head import write_manifest

    write_manifest(tmp_path, "patchcore")
    with pytest.raises(ModelError, match="`oddeye score image`"):
        PointCloudHead.load(tmp_path)


def test_raw_head_and_position_features():
    train = [make_point_cloud(seed=s, n_points=2000, shape="sphere").points for s in range(3)]
    head = PointCloudHead(adapt=False, target_points=600, position_weight=1.0).fit(train, ctx=QUIET)
    assert head.index.dim == 33 + 3
    cs = head.score_points(make_point_cloud(seed=9, n_points=2000, shape="sphere").points)
    assert np.isfinite(cs.score) and cs.points.shape == (2000,)


@pytest.mark.parametrize("kind", KINDS)
def test_defects_labels(kind):
    pts = make_point_cloud(seed=1, n_points=6000, shape="plate").points
    a = make_defect(pts, kind, seed=3, size=0.05)
    b = make_defect(pts, kind, seed=3, size=0.05)
    np.testing.assert_array_equal(a.points, b.points)  # seeded
    assert a.labels.shape == (len(a.points),) and 0 < a.labels.sum() < len(a.points) // 4
    if kind == "hole":
        assert len(a.points) < len(pts)
        rim = a.points[a.labels == 1]  # labelled rim lies around the removed disc, not inside it
        d = np.linalg.norm(rim - np.array(a.meta["centre"]), axis=1)
        assert d.min() >= 0.9 * a.meta["radius"]
    elif kind == "blob":
        assert len(a.points) > len(pts) and a.labels[len(pts):].all()
    else:
        moved = np.linalg.norm(a.points - pts, axis=1) > 0
        assert moved.any() and not moved[a.labels == 0].any()
    with pytest.raises(InputError):
        make_defect(pts, "scratch")


def test_preprocess_records_and_voxels():
    pts = make_point_cloud(seed=2, n_points=3000, shape="plate").points.astype(np.float64)
    vox = voxel_downsample(pts, 0.05)
    assert vox.inverse.shape == (3000,) and vox.inverse.max() == len(vox.points) - 1
    np.testing.assert_allclose(vox.points[vox.inverse[0]], pts[vox.inverse == vox.inverse[0]].mean(0))
    ball = make_point_cloud(seed=3, n_points=1500, shape="sphere").points * 0.3 + np.array([0, 0, 1.0])
    scene = np.vstack([pts, ball, [[5.0, 5.0, 5.0]]])  # a part on a table, plus one stray point
    keep, rec = preprocess(scene, outliers=True, plane=True, normalize=True, seed=0)
    assert not keep[-1] and rec["outliers_removed"] >= 1 and rec["n_out"] == keep.sum()
    assert rec["plane_points_removed"] > 2500 and keep[3000:4500].mean() > 0.95  # table gone, part kept
    q, c, s = normalise(pts)
    assert np.abs(q).max() <= 0.5 + 1e-9


def test_score_writes_review_files_under_ctx_out(fitted, tmp_path):
    head, _, bad = fitted
    path = write_ply(tmp_path / "in" / "x.ply", bad[0].points, bad[0].labels)
    sc = head.score([path], ctx=RunContext(out=tmp_path / "out", progress=False)).scores[0]
    assert sc.artefacts == {"ply": str(tmp_path / "out" / "clouds" / "x.ply"),
                            "png": str(tmp_path / "out" / "clouds" / "x.png")}
    assert load_cloud(sc.artefacts["ply"]).points.shape == (3000, 3) and sc.label == 1
    assert (tmp_path / "out" / "clouds" / "x.png").stat().st_size > 1000
    assert not head.score([path], ctx=QUIET).scores[0].artefacts  # no ctx.out: no files


def test_one_config_holds_the_settings_and_overrides_are_checked():
    head = PointCloudHead(PointCloudConfig(adapt=False), target_points=700)
    assert head.config == PointCloudConfig(adapt=False, target_points=700)
    assert PointCloudHead().config == PointCloudConfig()
    with pytest.raises(ConfigError, match="PointCloudConfig.progress"):
        PointCloudHead(progress=False)  # per call: RunContext(progress=...)
    with pytest.raises(ConfigError, match="PointCloudConfig.radii"):
        PointCloudHead(radii=(4.0, 0.0))


def legacy_folder(model: Path, drop: str | None = None) -> Path:
    """Rewrite a saved model folder as oddeye wrote it before the settings moved into the manifest (format 2:
    config.json with params, features and threshold), without the setting `drop` when given."""
    doc = json.loads((model / MANIFEST).read_text())
    params = doc.pop("config")
    for name in ("normal_radius", "max_nn_normal", drop):  # format 2 params had no normal settings
        params.pop(name, None)
    conf = {"params": params, "features": doc.pop("features"), "threshold": doc.pop("threshold")}
    (model / MANIFEST).write_text(json.dumps({**doc, "format_version": 2}))
    (model / "config.json").write_text(json.dumps(conf))
    return model


def test_a_model_folder_without_config_in_its_manifest_loads_and_scores_the_same(fitted, tmp_path):
    head, clean, bad = fitted
    old = legacy_folder(head.save(tmp_path / "m"))
    assert "config" not in json.loads((old / MANIFEST).read_text())
    again = PointCloudHead.load(old)
    assert again.config == head.config and again.threshold == head.threshold and again.adapter is not None
    a, b = head.score([bad[0].points], ctx=QUIET), again.score([bad[0].points], ctx=QUIET)
    assert a.scores[0].score == b.scores[0].score
    assert np.array_equal(a.scores[0].maps["points"].values, b.scores[0].maps["points"].values)
    again.save(old)  # saved again: the new layout, the side file gone
    assert not (old / "config.json").exists() and PointCloudHead.load(old).config == head.config


def test_a_cloud_with_too_few_points_is_refused_naming_it_and_the_minimum(fitted, tmp_path):
    head, clean, _ = fitted
    tiny = tmp_path / "tiny.npy"
    np.save(tiny, clean[0].points[:3])
    with pytest.raises(InputError, match=rf"tiny.npy: 3 valid points; a cloud needs at least {MIN_POINTS}"):
        head.score([tiny], ctx=QUIET)
    holey = np.full((MIN_POINTS + 2, 3), np.nan)
    holey[:4] = clean[0].points[:4]
    with pytest.raises(InputError, match=rf"4 valid points \({MIN_POINTS - 2} NaN/inf points dropped\)"):
        head.score([holey], ctx=QUIET)
    res = head.score([tiny, clean[0].points], ctx=RunContext(progress=False, skip_bad=True))
    err, ok = res.scores
    assert res.errors() == [err] and err.sample_id == "tiny" and np.isnan(err.score)
    assert err.meta["path"] == str(tiny.resolve()) and f"at least {MIN_POINTS}" in err.meta["error"]
    assert np.isfinite(ok.score) and ok.maps["points"].values.shape == (3000,)


def test_cli_refuses_a_tiny_cloud_up_front_skips_it_with_skip_bad_and_reports_dropped_points(fitted, tmp_path,
                                                                                            capsys):
    from oddeye.cli import main
    from oddeye.core.types import Result

    head, clean, _ = fitted
    model = head.save(tmp_path / "m")
    np.save(tmp_path / "good.npy", clean[1].points)
    np.save(tmp_path / "tiny.npy", clean[1].points[:3])
    holey = clean[2].points.astype(np.float64)
    holey[:7] = np.nan
    np.save(tmp_path / "holey.npy", holey)
    args = ["score", "pointcloud", str(model), str(tmp_path / "good.npy"), str(tmp_path / "tiny.npy")]
    assert main([*args, "--out", str(tmp_path / "a"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "tiny.npy: 3 valid points" in err and f"at least {MIN_POINTS}" in err and not (tmp_path / "a").exists()
    assert main([*args, "--out", str(tmp_path / "b"), "--skip-bad", "--no-progress"]) == 0
    out = capsys.readouterr()
    assert f"skipped {tmp_path / 'tiny.npy'}" in out.err and "good: " in out.out
    res = Result.load(tmp_path / "b")
    assert [s.sample_id for s in res.scores] == ["good", "tiny"] and len(res.errors()) == 1
    assert main(["score", "pointcloud", str(model), str(tmp_path / "holey.npy"), "--out", str(tmp_path / "c")]) == 0
    assert f"{tmp_path / 'holey.npy'}: dropped 7 non-finite (NaN/inf) points" in capsys.readouterr().err


def _grid_of(points, h=40, w=40):
    """Organise a plate-like cloud (N, 3) into an (h, w, 3) xyz grid, zeros where no point fell."""
    g = np.zeros((h, w, 3), np.float32)
    ij = np.clip(((points[:, :2] - points[:, :2].min(0)) / np.ptp(points[:, :2], 0) * [h - 1, w - 1]).round().astype(int), 0, [h - 1, w - 1])
    g[ij[:, 0], ij[:, 1]] = points
    return g, ij


def test_eval_mvtec3d_layout_gives_aupro(tmp_path):
    import tifffile
    from PIL import Image

    from oddeye.pointcloud.evaluate import eval_layout

    cat = tmp_path / "plate"
    for d in ("train/good/xyz", "test/good/xyz", "test/dent/xyz", "test/dent/gt"):
        (cat / d).mkdir(parents=True)
    for s in range(3):
        tifffile.imwrite(cat / "train/good/xyz" / f"{s:03d}.tiff", _grid_of(make_point_cloud(seed=s, n_points=3000, shape="plate").points)[0])
    tifffile.imwrite(cat / "test/good/xyz/000.tiff", _grid_of(make_point_cloud(seed=7, n_points=3000, shape="plate").points)[0])
    c = make_point_cloud(seed=8, n_points=3000, shape="plate", defect="dent", defect_size=0.15)
    g, ij = _grid_of(c.points)
    mask = np.zeros((40, 40), np.uint8)
    mask[ij[c.labels == 1, 0], ij[c.labels == 1, 1]] = 255
    tifffile.imwrite(cat / "test/dent/xyz/000.tiff", g)
    Image.fromarray(mask).save(cat / "test/dent/gt/000.png")

    def make():
        return PointCloudHead(adapt=False, target_points=500)

    m, res = eval_layout("mvtec3d", tmp_path, make, out=None, progress=False)
    assert len(res.scores) == 2 and m["aupro"] is not None and 0 <= m["aupro"] <= 1
    assert m["object_auroc"] == 1.0 and m["points_per_s"] > 0


def test_cli_fit_score_and_bad_model(tmp_path, capsys):
    from oddeye.cli import main

    (tmp_path / "train").mkdir()
    for s in range(3):
        np.save(tmp_path / "train" / f"n{s}.npy", make_point_cloud(seed=s, n_points=2000, shape="box").points)
    np.save(tmp_path / "q.npy", make_point_cloud(seed=30, n_points=2000, shape="box", defect="dent", defect_size=0.1).points)
    assert main(["fit", "pointcloud", "--train", str(tmp_path / "train"), "--out", str(tmp_path / "m"), "--no-adapt",
                 "--target-points", "500"]) == 0
    assert main(["score", "pointcloud", str(tmp_path / "m"), str(tmp_path / "q.npy"), "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "result.json").is_file() and (tmp_path / "o" / "clouds" / "q.png").is_file()
    assert (tmp_path / "o" / "store.db").is_file()
    assert main(["score", "pointcloud", str(tmp_path / "train"), str(tmp_path / "q.npy")]) == 2
    assert "not an oddeye model directory" in capsys.readouterr().err


def test_voxels_of_a_cloud_with_a_stray_point_far_away_are_exact():
    """Voxel numbers in a box too large for int64 (a stray point 10^7 voxels off on every axis) would wrap; the
    grouping falls back to the rows themselves and keeps every voxel apart."""
    from oddeye.pointcloud.preprocess import bounds, group_cells

    pts = make_point_cloud(seed=2, n_points=3000, shape="sphere").points.astype(np.float64)
    near = voxel_downsample(pts, 0.05)
    far = voxel_downsample(np.vstack([pts, [[1e6, 1e6, 1e6]]]), 0.05)
    assert len(far.points) == len(near.points) + 1 and far.inverse[-1] not in far.inverse[:-1]
    np.testing.assert_allclose(np.sort(far.points[:-1], axis=0), np.sort(near.points, axis=0))
    ijk = np.array([[0, 0, 0], [2**40, 0, 5], [0, 2**40, 5], [2**40, 0, 5]])
    inv, counts = group_cells(ijk)
    assert inv[1] == inv[3] and len(set(inv.tolist())) == 3 and counts.sum() == 4
    lo, hi = bounds(ijk)
    assert lo.tolist() == [0, 0, 0] and hi.tolist() == [2**40, 2**40, 5]


def test_demo_scores_ply_files_whose_paths_the_store_allows_and_nothing_wider(tmp_path, monkeypatch):
    """The 3D page reads a demo cloud from its input file: that file must exist, stored absolute, readable by the
    store, and the store must not allow the working directory (a generated 'synth' source used to do that)."""
    from oddeye.pointcloud.demo import run_demo
    from oddeye.store.api import open_store

    monkeypatch.chdir(tmp_path)
    run_demo(Path("demo/pointcloud"), str(tmp_path / "store.db"))
    data = (tmp_path / "demo" / "pointcloud" / "data" / "test").resolve()
    with open_store(tmp_path / "store.db") as st:
        run = st.runs()[0]
        paths = [Path(s["path"]) for s in st.samples(run["id"])]
        assert sorted(p.name for p in paths) == [f"box_{i}_{d}.ply" for i, d in
                                                 enumerate(["clean", "dent", "clean", "bulge", "clean", "dent"])]
        assert all(p.is_absolute() and p.parent == data and st.safe_path(p, run["id"]) == p for p in paths)
        assert tmp_path.resolve() not in st.folders(run["id"]) and run["metrics"]["object_auroc"] == 1.0
