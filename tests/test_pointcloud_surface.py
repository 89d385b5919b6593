"""Surface deviation (registered clouds): a small dent is found, scores survive save/load, bad files are clear."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest

from oddeye.core.errors import ModelError
from oddeye.core.head import MANIFEST, RunContext
from oddeye.core.synth import make_point_cloud
from oddeye.pointcloud.field import SurfaceField
from oddeye.pointcloud.head import PointCloudHead
from test_pointcloud_head import legacy_folder

QUIET = RunContext(progress=False)


@contextmanager
def restored_config(head: PointCloudHead) -> Iterator[None]:
    """Let a test change head.config (as in an older model folder) and put it back afterwards."""
    saved = head.config
    try:
        yield
    finally:
        head.config = saved


@pytest.fixture(scope="module")
def fitted():
    train = [make_point_cloud(seed=s, n_points=4000, shape="sphere").points for s in range(3)]
    head = PointCloudHead(adapt=False, target_points=600, surface_weight=8.0, smooth_k=3).fit(train, ctx=QUIET)
    clean = [make_point_cloud(seed=40 + s, n_points=4000, shape="sphere") for s in range(3)]
    bad = [make_point_cloud(seed=50 + s, n_points=4000, shape="sphere", defect=d, defect_size=0.05)
           for s, d in enumerate(["dent", "bulge", "dent"])]
    return head, clean, bad


def test_surface_deviation_separates_small_defects(fitted):
    from oddeye.core.metrics import auroc, pixel_auroc

    head, clean, bad = fitted
    res = head.score([c.points for c in clean + bad], ctx=QUIET)
    assert auroc([0] * 3 + [1] * 3, res.sample_scores()) >= 0.99
    maps = [s.maps["points"].values for s in res.scores]
    assert all(len(m) == 4000 for m in maps)
    assert pixel_auroc([c.labels for c in clean + bad], maps) > 0.9


def test_surface_deviation_is_zero_ish_on_the_bank_and_high_off_it():
    p = make_point_cloud(seed=1, n_points=4000, shape="sphere").points
    bank = SurfaceField.fit([p], 0.02)
    on, _ = bank.deviation(p)
    off, _ = bank.deviation(p * 1.04)  # a surface 4% further out (inside the field's band)
    assert float(np.median(on)) < 0.3 < float(np.median(off))


def test_surface_save_load_and_missing_file(fitted, tmp_path):
    head, clean, _ = fitted
    head.save(tmp_path / "m")
    again = PointCloudHead.load(tmp_path / "m")
    assert again.surface is not None
    np.testing.assert_allclose(again.score_points(clean[0].points).points, head.score_points(clean[0].points).points,
                               rtol=1e-5, atol=1e-6)
    (tmp_path / "m" / "field.npz").unlink()
    with pytest.raises(ModelError, match="field.npz"):
        PointCloudHead.load(tmp_path / "m")


def test_coverage_weights_surface_only_one_training_scan_saw(tmp_path):
    p = make_point_cloud(seed=1, n_points=4000, shape="sphere").points
    upper, lower = p[p[:, 2] > -0.2], p[p[:, 2] < 0.2]  # overlap in a band around the equator
    field = SurfaceField.fit([upper, lower], 0.02)
    z = field.points[:, 2]
    assert (field.coverage[np.abs(z) < 0.1] == 2).mean() > 0.9 and (field.coverage[np.abs(z) > 0.5] == 1).all()
    q = p * 1.04  # off the surface everywhere
    full, _ = field.deviation(q)
    weighted, ids = field.deviation(q, single=0.25)
    once = field.coverage[ids[:, 0]] == 1
    np.testing.assert_allclose(weighted[once], 0.25 * full[once], rtol=1e-6)
    np.testing.assert_array_equal(weighted[~once & (ids[:, 0] >= 0)], full[~once & (ids[:, 0] >= 0)])
    field.save(tmp_path)
    assert np.array_equal(SurfaceField.load(tmp_path).coverage, field.coverage)
    with np.load(tmp_path / "field.npz") as zf:  # a field saved before coverage existed: no weighting
        np.savez(tmp_path / "field.npz", **{k: zf[k] for k in zf.files if k != "coverage"})
    old = SurfaceField.load(tmp_path)
    assert old.coverage is None and np.array_equal(old.deviation(q, single=0.25)[0], full)


def test_orient_turns_normals_outwards_for_one_view_scans_and_full_clouds():
    from oddeye.pointcloud.features import estimate_normals
    from oddeye.pointcloud.field import orient

    p = make_point_cloud(seed=2, n_points=4000, shape="sphere").points.astype(np.float64)
    centre = p.mean(0)
    full = orient(p, estimate_normals(p, 0.15, 30), centre)
    assert float(np.mean(((p - centre) * full).sum(1) > 0)) > 0.95
    front = p[p[:, 2] > 0.1]  # one range scan seen from +z: its normals turn towards the scanner
    one = orient(front, estimate_normals(front, 0.15, 30), centre)
    assert float(np.mean(one[:, 2] > 0)) > 0.95


def test_pool_mean_averages_within_cells_and_counts_points():
    from oddeye.pointcloud.field import pool_mean

    pts = np.array([[0.1, 0.1, 0.1], [0.2, 0.2, 0.2], [5.1, 5.1, 5.1]])
    mean, cnt = pool_mean(pts, np.array([1.0, 3.0, 10.0]), 1.0)
    np.testing.assert_allclose(mean, [2.0, 2.0, 10.0])
    assert cnt.tolist() == [2, 2, 1]


def test_holes_finds_missing_surface_in_a_one_view_scan_not_in_a_clean_one():
    from oddeye.pointcloud.defects import make_defect

    def scan(seed: int) -> np.ndarray:
        p = make_point_cloud(seed=seed, n_points=12000, shape="sphere").points.astype(np.float64)
        return p[p[:, 2] > 0.1]  # seen from +z

    field = SurfaceField.fit([scan(s) for s in range(3)], 0.02)
    clean = scan(7)
    holed = make_defect(clean, "hole", seed=1, size=0.08)
    _, clean_score = field.holes(clean, field.deviation(clean)[1])
    pts, hole_score = field.holes(holed.points, field.deviation(holed.points)[1])
    assert hole_score > clean_score + 5
    assert pts[holed.labels == 1].mean() > pts[holed.labels == 0].mean()
    ids = field.deviation(holed.points)[1]
    near, area2 = field.holes(holed.points, ids, reach=2)
    far, area6 = field.holes(holed.points, ids, reach=6)
    rim = holed.labels == 1
    assert area2 == area6 == hole_score  # the reach spreads the map only, not the object score
    assert (far >= near).all() and (far[rim] > 0).mean() > (near[rim] > 0).mean()



def test_a_stray_point_far_away_does_not_change_the_holes_or_blow_up_their_grid():
    """The hole grid spans the points inside the field's band: one stray point 1 km off (a scanner's outlier) used
    to make a grid of ~10^15 cells (MemoryError)."""
    from oddeye.pointcloud.defects import make_defect

    def scan(seed: int) -> np.ndarray:
        p = make_point_cloud(seed=seed, n_points=12000, shape="sphere").points.astype(np.float64)
        return p[p[:, 2] > 0.1]  # seen from +z

    field = SurfaceField.fit([scan(s) for s in range(3)], 0.02)
    holed = make_defect(scan(7), "hole", seed=1, size=0.08).points
    stray = np.vstack([holed, [[1000.0, 1000.0, 1000.0]]])
    pts, area = field.holes(holed, field.deviation(holed)[1])
    pts2, area2 = field.holes(stray, field.deviation(stray)[1])
    assert area > 5 and area2 == area
    np.testing.assert_array_equal(pts2[:-1], pts)
    assert pts2[-1] == 0.0

def test_feature_weight_scales_the_features_part(fitted):
    head, _, bad = fitted
    pts = bad[0].points
    with restored_config(head):
        head.config = head.config.replace(feature_weight=1.0)
        once = head.score_points(pts)
        head.config = head.config.replace(feature_weight=0.0)
        none = head.score_points(pts)
        assert none.score == once.score  # the object score comes from the surface terms alone
        assert not np.array_equal(none.points, once.points) and (none.points <= once.points + 1e-6).all()


@pytest.mark.parametrize("layout", ["manifest", "config.json"])
@pytest.mark.parametrize("option, then", [("feature_weight", 1.0), ("surface_agree", 0.0), ("hole_reach", 2),
                                          ("hole_shape", False), ("surface_region", 0.0), ("surface_single", 1.0)])
def test_models_saved_before_an_option_score_as_they_did(fitted, tmp_path, option, then, layout):
    """Saved settings without the option (written before it existed) load with that version's behaviour: in the
    manifest's config, or in the config.json of a folder written before the settings moved into the manifest."""
    import json

    from oddeye.pointcloud.defects import make_defect
    from oddeye.pointcloud.head import BEFORE_OPTION

    head, clean, _ = fitted
    pts = make_defect(clean[0].points[clean[0].points[:, 2] > 0.0], "hole", seed=2, size=0.08).points
    assert BEFORE_OPTION[option] == then and getattr(head.config, option) != then
    with restored_config(head):
        head.config = head.config.replace(hole_weight=0.1, **{option: then})
        before = head.score_points(pts)
        model = head.save(tmp_path / "m")
    if layout == "manifest":
        doc = json.loads((model / MANIFEST).read_text())
        del doc["config"][option]
        (model / MANIFEST).write_text(json.dumps(doc))
    else:
        legacy_folder(model, drop=option)
    again = PointCloudHead.load(model)
    assert getattr(again.config, option) == then
    got = again.score_points(pts)
    assert np.array_equal(got.points, before.points) and got.score == before.score


def test_elongation_of_a_disc_and_a_band():
    from oddeye.pointcloud.field import _elongation

    yy, xx = np.mgrid[-6:7, -6:7]
    disc = np.c_[xx[xx**2 + yy**2 <= 36], yy[xx**2 + yy**2 <= 36], np.zeros((xx**2 + yy**2 <= 36).sum())]
    band = np.c_[np.arange(40).repeat(3), np.tile([0, 1, 2], 40), np.zeros(120)]
    cells = np.r_[disc, band, [[0, 0, 5]]].astype(np.int64)
    lab = np.r_[np.ones(len(disc), int), np.full(len(band), 2), [3]]
    e = _elongation(cells, lab, 3)
    assert e[1] == pytest.approx(1.0, abs=0.01) and e[2] == pytest.approx(np.sqrt((40**2 - 1) / 8), rel=1e-6)
    assert e[0] == e[3] == 1.0  # no cells / under 3 cells


def test_hole_shape_keeps_a_round_hole_and_shrinks_a_band_gap():
    g = np.stack(np.meshgrid(np.arange(0, 1, 0.004), np.arange(0, 1, 0.004), indexing="ij"), -1).reshape(-1, 2)
    plane = np.c_[g, np.zeros(len(g))]
    field = SurfaceField.fit([plane], 0.005)
    disc = plane[np.linalg.norm(plane[:, :2] - 0.5, axis=1) > 0.06]
    band = plane[~((np.abs(plane[:, 0] - 0.5) < 0.02) & (np.abs(plane[:, 1] - 0.5) < 0.3))]
    areas = {}
    for name, q in (("disc", disc), ("band", band)):
        ids = field.lookup(q)
        areas[name] = (field.holes(q, ids)[1], field.holes(q, ids, by_shape=True)[1])
    assert areas["disc"][0] > 50 and areas["band"][0] > 50  # both are enclosed gaps
    assert areas["disc"][1] > 0.8 * areas["disc"][0] and areas["band"][1] < 0.25 * areas["band"][0]


@pytest.mark.parametrize("cell", [0.2, 0.005])  # a box of 125 cells (dense ids), of 8M cells (ranks)
def test_pool_mean_is_the_mean_over_each_cell(cell):
    from oddeye.pointcloud.field import pool_mean

    rng = np.random.default_rng(0)
    p = rng.random((500, 3))
    p[:250] = p[:250] * 0.05  # cells of several points at the small cell size too
    v = rng.normal(size=500)
    got, cnt = pool_mean(p, v, cell)
    want = np.zeros(500)
    counts = []
    for shift in (0.0, 0.5):
        _, inv, c = np.unique(np.floor(p / cell + shift), axis=0, return_inverse=True, return_counts=True)
        inv = inv.reshape(-1)
        want += (np.bincount(inv, v) / c)[inv] / 2
        counts.append(c[inv])
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert np.array_equal(cnt, np.minimum(*counts)) and cnt.max() > 1


def test_dense_lookup_equals_the_binary_search(monkeypatch):
    import oddeye.pointcloud.field as field_mod

    p = make_point_cloud(seed=3, n_points=3000, shape="sphere").points
    q = np.concatenate([p * 1.03, p + 5.0])  # inside the band, and far outside the band's box
    dense = SurfaceField.fit([p], 0.02)
    a = dense.lookup(q)  # builds its table
    monkeypatch.setattr(field_mod, "DENSE_MAX", 0)
    search = SurfaceField.fit([p], 0.02)
    assert dense._dense() is not None and search._dense() is None
    b = search.lookup(q)
    assert np.array_equal(a, b) and (a[:3000, 0] >= 0).all() and (a[3000:] == -1).all()


def test_normal_agreement_ignores_a_sheet_at_a_steep_angle():
    """A point near the edge of a plane the training saw, on a perpendicular wall: other surface, not a deviation."""
    g = np.stack(np.meshgrid(np.arange(0, 1, 0.01), np.arange(0, 1, 0.01), indexing="ij"), -1).reshape(-1, 2)
    floor = np.c_[g, np.zeros(len(g))]
    field = SurfaceField.fit([floor], 0.02)
    wall = np.c_[np.full(20, 0.995), np.full(20, 0.5), np.linspace(0.02, 0.06, 20)]  # rises from the floor's edge
    wall_n = np.tile([1.0, 0.0, 0.0], (20, 1))
    dent = np.c_[np.full(20, 0.5), np.linspace(0.4, 0.6, 20), np.full(20, -0.04)]
    dent_n = np.tile([0.0, 0.2, -0.98], (20, 1))  # normals of either sign count
    plain, _ = field.deviation(wall)
    gated, _ = field.deviation(wall, normals=wall_n, agree=0.3)
    assert plain.max() > 1.0 and gated.max() == 0.0
    np.testing.assert_array_equal(field.deviation(dent, normals=dent_n, agree=0.3)[0], field.deviation(dent)[0])
    assert field.deviation(dent)[0].min() > 1.5


def test_a_strict_normal_agreement_leaves_little_to_compare(fitted):
    head, _, bad = fitted
    pts = bad[0].points
    with restored_config(head):
        head.config = head.config.replace(surface_agree=0.0)
        off = head.score_points(pts).score
        head.config = head.config.replace(surface_agree=0.999)
        assert head.score_points(pts).score < off  # almost every bank plane fails the test then


@pytest.mark.parametrize("r", [1, 2])
def test_neighbour_scatter_equals_grey_dilation(r):
    """holes() dilates by scattering from the few labelled cells; it must equal scipy's dense grey dilation."""
    from scipy import ndimage

    from oddeye.pointcloud.field import _neighbours

    rng = np.random.default_rng(r)
    shape = np.array([6, 7, 8])
    lab = np.zeros(shape, np.int64)
    cells = rng.integers(0, shape, (12, 3))
    cells[0] = 0  # corners and faces: neighbours outside the grid are dropped, not wrapped
    cells[1] = shape - 1
    lab[tuple(cells.T)] = rng.integers(1, 9, len(cells))
    cells = np.argwhere(lab > 0)
    nb, src = _neighbours(cells, r, shape)
    got = np.zeros(lab.size, np.int64)
    np.maximum.at(got, nb, lab[tuple(cells.T)][src])
    want = ndimage.grey_dilation(lab, size=(2 * r + 1,) * 3)
    assert np.array_equal(got.reshape(shape), want)


def test_sparse_components_equal_ndimage_label():
    """holes() labels missing cells sparsely; the patches must be ndimage.label's (26-connected), in any order."""
    from scipy import ndimage

    from oddeye.pointcloud.field import _components, _neighbours

    rng = np.random.default_rng(3)
    shape = np.array([9, 8, 7])
    grid = rng.random(tuple(shape)) < 0.15
    want, k = ndimage.label(grid, structure=np.ones((3, 3, 3), bool))
    cells = np.flatnonzero(grid)
    nb, src = _neighbours(np.argwhere(grid), 1, shape)
    got, count = _components(cells, nb, src)
    assert count == k > 3
    pairs = set(zip(want.ravel()[cells].tolist(), got.tolist()))
    assert len(pairs) == k  # a one-to-one map between the two labellings



def test_separable_dilation_equals_binary_dilation():
    """holes() dilates the scan's cells by three 1D passes over the flat grid; it must equal scipy's 3x3x3 dilation."""
    from scipy import ndimage

    from oddeye.pointcloud.field import _dilate

    rng = np.random.default_rng(5)
    shape = np.array([7, 9, 11])
    grid = np.zeros(tuple(shape), bool)
    grid[1:-1, 1:-1, 1:-1] = rng.random(tuple(shape - 2)) < 0.05  # >= 1 cell inside, as holes() guarantees
    grid[1, 1, 1] = grid[-2, -2, -2] = True
    want = ndimage.binary_dilation(grid, structure=np.ones((3, 3, 3), bool))
    assert np.array_equal(_dilate(grid.ravel(), shape).reshape(tuple(shape)), want)
    assert want.sum() > grid.sum()

@pytest.mark.parametrize("bad", [{"hole_reach": -1}, {"feature_weight": -0.1}, {"hole_weight": float("nan")},
                                 {"surface_single": 1.5}, {"surface_weight": -8.0}, {"surface_agree": 1.2}])
def test_bad_head_parameters_are_named(bad):
    from oddeye.core.errors import InputError

    with pytest.raises(InputError, match=next(iter(bad))):
        PointCloudHead(adapt=False, **bad)


def test_clouds_in_other_units_or_frames_are_flagged(fitted):
    import warnings

    head, clean, _ = fitted
    p = clean[0].points
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a matching cloud raises no warning
        ok = head.score([p]).scores[0]
    assert ok.meta["in_band"] > 0.9 and 0.9 < ok.meta["size_vs_train"] < 1.1
    with pytest.warns(UserWarning) as caught:  # mm read as m: another size, and off the training surface
        big = head.score([p * 1000.0]).scores[0]
    said = " ".join(str(w.message) for w in caught)
    assert "size of the training clouds" in said and "registered" in said and big.meta["size_vs_train"] > 900
    with pytest.warns(UserWarning, match="registered"):
        moved = head.score([p + 10.0]).scores[0]
    assert moved.meta["in_band"] < 0.01


def test_the_bank_search_beside_the_surface_terms_changes_nothing(fitted, monkeypatch):
    head, _, bad = fitted
    monkeypatch.setenv("ODDEYE_THREADS", "1")
    one = head.score_points(bad[1].points)
    monkeypatch.setenv("ODDEYE_THREADS", "2")  # the FAISS search runs in a second thread
    two = head.score_points(bad[1].points)
    assert one.score == two.score and np.array_equal(one.points, two.points) and one.in_band == two.in_band
