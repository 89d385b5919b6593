"""The bunny-defects protocol on a small stand-in folder (10 one-view scans of a sphere, identity bun.conf)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from oddeye.core.errors import DataLayoutError
from oddeye.pointcloud.bunny import FOLDS, SCANS, load_scans, make_bunny_defects


def _scan(i: int, n: int = 2500) -> np.ndarray:
    """One view of a sphere of radius 0.05 (metres, as the bunny's scans): the half facing direction i."""
    rng = np.random.default_rng(i)
    view = np.array([np.cos(i * 0.63), np.sin(i * 0.63), 0.3 * np.cos(i)])
    v = rng.normal(size=(4 * n, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return 0.05 * v[v @ (view / np.linalg.norm(view)) > 0.2][:n]


@pytest.fixture(scope="module")
def bunny_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("stanford_bunny")
    conf = ["camera 0 0 0 0 0 0 1"]
    for i, name in enumerate(SCANS):
        p = _scan(i)
        head = f"ply\nformat ascii 1.0\nelement vertex {len(p)}\nproperty float x\nproperty float y\nproperty float z\nend_header\n"
        (d / f"{name}.ply").write_text(head + "\n".join(" ".join(f"{c:.6f}" for c in row) for row in p) + "\n")
        conf.append(f"bmesh {name}.ply 0 0 0 0 0 0 1")
    (d / "bun.conf").write_text("\n".join(conf) + "\n")
    return d


def test_scans_load_in_the_common_frame(bunny_dir):
    scans = load_scans(bunny_dir)
    assert list(scans) == list(SCANS)
    np.testing.assert_allclose(scans["bun000"], _scan(0), atol=1e-6)  # identity transform


def test_a_fold_holds_out_its_scans_with_every_kind_and_size(bunny_dir):
    train, tests = make_bunny_defects(bunny_dir, fold=1, variants=1)
    assert set(train) == set(SCANS) - set(FOLDS[1])
    assert [t.kind for t in tests[:6]] == ["clean", "dent", "bulge", "hole", "crack", "blob"]
    assert {t.name.split("_v")[0] for t in tests} == set(FOLDS[1])
    assert all((t.size is None) == (t.kind == "clean") for t in tests)
    assert all(0.01 <= t.size <= 0.05 for t in tests if t.size is not None)
    assert all(t.labels.sum() > 0 for t in tests if t.kind != "clean")


def test_eval_bunny_reports_kinds_and_size_bins(bunny_dir):
    from oddeye.pointcloud.evaluate import SIZE_BINS, eval_bunny
    from oddeye.pointcloud.head import PointCloudHead

    def make() -> PointCloudHead:
        # the default target of 3,000 voxels a cloud exceeds these 2,500-point scans: the voxel must not shrink
        # below their point spacing (it did: every surface deviation 0, object AUROC 0.5)
        return PointCloudHead(adapt=False, position_weight=4.0, smooth_k=3, surface_weight=8.0, hole_weight=0.12)

    m, result = eval_bunny(bunny_dir, make, folds=1, variants=1, progress=False)
    assert m["n_clean"] == 2 and m["n_defective"] == 10 and len(result.scores) == 12
    sizes = [f"object_auroc_size_{lo:.2f}_{hi:.2f}" for lo, hi in SIZE_BINS]
    assert all(k in m for k in sizes)
    got = [m[k] for k in sizes if np.isfinite(m[k])]
    assert got and all(0.0 <= x <= 1.0 for x in got)
    # on an ideal, perfectly registered sphere every defect stands out of the surface field
    assert m["object_auroc"] >= 0.9 and m["point_auroc"] >= 0.9


def test_the_voxel_of_a_sparse_cloud_stays_above_its_point_spacing():
    from oddeye.pointcloud.features import auto_voxel_size
    from oddeye.pointcloud.preprocess import point_spacing, voxel_downsample

    p = _scan(0)
    vs = auto_voxel_size([p], target_points=3000)
    assert vs >= 2 * point_spacing(p) and len(voxel_downsample(p, vs).points) < len(p) / 2
    dense = _scan(1, n=40000)
    assert abs(len(voxel_downsample(dense, auto_voxel_size([dense], 3000)).points) - 3000) < 300  # target reached


def test_a_missing_scan_is_named(bunny_dir, tmp_path):
    (tmp_path / "bun000.ply").write_text((bunny_dir / "bun000.ply").read_text())
    with pytest.raises(DataLayoutError, match="bun045"):
        load_scans(tmp_path)
