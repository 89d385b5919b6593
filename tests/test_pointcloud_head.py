"""Point-cloud head on generated clouds: separation, save/load, defects generator, preprocessing, review files."""

from __future__ import annotations

import numpy as np
import pytest

from oddeye.core.errors import InputError, ModelError
from oddeye.core.synth import make_point_cloud
from oddeye.pointcloud.defects import KINDS, make_defect
from oddeye.pointcloud.head import PointCloudHead
from oddeye.pointcloud.io import load_cloud
from oddeye.pointcloud.preprocess import normalise, preprocess, voxel_downsample


@pytest.fixture(scope="module")
def fitted():
    train = [make_point_cloud(seed=s, n_points=3000, shape="box").points for s in range(4)]
    head = PointCloudHead(adapt=True, keep_raw=True, target_points=800, adapt_steps=40, progress=False).fit(train)
    clean = [make_point_cloud(seed=50 + s, n_points=3000, shape="box") for s in range(3)]
    bad = [make_point_cloud(seed=60 + s, n_points=3000, shape="box", defect=d, defect_size=0.1)
           for s, d in enumerate(["dent", "bulge", "dent"])]
    return head, clean, bad


def test_head_separates_defective_from_clean(fitted):
    from oddeye.core.metrics import auroc, pixel_auroc

    head, clean, bad = fitted
    res = head.score([c.points for c in clean + bad])
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

    write_manifest(tmp_path, "image")
    with pytest.raises(ModelError, match="image"):
        PointCloudHead.load(tmp_path)


def test_raw_head_and_position_features():
    train = [make_point_cloud(seed=s, n_points=2000, shape="sphere").points for s in range(3)]
    head = PointCloudHead(adapt=False, target_points=600, position_weight=1.0, progress=False).fit(train)
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


def test_score_writes_review_files(fitted, tmp_path):
    from oddeye.pointcloud.render import write_review

    head, _, bad = fitted
    cs = head.score_points(bad[0].points)
    files = write_review(tmp_path, "x", bad[0].points, cs.points, labels=bad[0].labels)
    assert load_cloud(files["ply"]).points.shape == (3000, 3)
    assert (tmp_path / "x.png").stat().st_size > 1000


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
        return PointCloudHead(adapt=False, target_points=500, progress=False)

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
