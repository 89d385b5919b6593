"""scan-defects on any scanned object: range scans in the Stanford layout (PLY + one .conf of bmesh lines) are
found, registered into the .conf's frame, split into folds from the scans found, and evaluated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from oddeye.core.errors import DataLayoutError
from oddeye.pointcloud.plyfile import write_ply
from oddeye.pointcloud.scans import find_scans, load_scans, make_scan_defects, to_common_frame

NAMES = ("front", "left", "back", "right", "top")


def _view(i: int, n: int = 5000) -> np.ndarray:
    """One scan of a ball of radius 0.05 (metres) in the common frame: the 60% of it that faces direction i."""
    rng = np.random.default_rng(i)
    view = np.array([np.cos(i * 1.3), np.sin(i * 1.3), 0.5 * np.cos(i)])
    v = rng.normal(size=(4 * n, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return 0.05 * v[v @ (view / np.linalg.norm(view)) > -0.2][:n]


def _pose(i: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(100 + i)
    q = rng.normal(size=4)
    return rng.normal(scale=0.05, size=3), q / np.linalg.norm(q)


def _rotation(q: np.ndarray) -> np.ndarray:
    return to_common_frame(np.eye(3), np.zeros(3), q)  # rows: where the unit vectors go


@pytest.fixture(scope="module")
def part_dir(tmp_path_factory) -> Path:
    """Five scans of a ball, each written in its own scanner frame, and part.conf registering them."""
    d = tmp_path_factory.mktemp("part")
    lines = ["camera 0 0 0 0 0 0 1"]
    for i, name in enumerate(NAMES):
        t, q = _pose(i)
        local = (_view(i) - t) @ _rotation(q).T  # the inverse of p @ R + t
        write_ply(d / "scans" / f"{name}.ply", local)
        lines.append(f"bmesh scans/{name}.ply {' '.join(map(str, t))} {' '.join(map(str, q))}")
    (d / "part.conf").write_text("\n".join(lines) + "\n")
    return d


def test_the_scans_are_found_registered_and_split_into_folds(part_dir):
    s = find_scans(part_dir)
    assert s.names == NAMES and s.conf == part_dir / "part.conf" and not s.missing
    assert s.folds == (("front", "right"), ("left", "top"), ("back",))
    assert sorted(n for f in s.folds for n in f) == sorted(NAMES), "every scan held out exactly once"
    scans = load_scans(s)
    for i, name in enumerate(NAMES):
        np.testing.assert_allclose(scans[name], _view(i), atol=1e-5)
    train, tests = make_scan_defects(s, fold=1, variants=1, scans=scans)
    assert set(train) == {"front", "back", "right"} and {t.name.split("_v")[0] for t in tests} == {"left", "top"}
    assert [t.kind for t in tests[:6]] == ["clean", "dent", "bulge", "hole", "crack", "blob"]
    assert all(t.labels.sum() > 0 for t in tests if t.kind != "clean")


def test_the_layout_is_checked_naming_what_is_expected(part_dir, tmp_path):
    with pytest.raises(DataLayoutError, match="exactly one .conf.*found none"):
        find_scans(tmp_path)
    (tmp_path / "a.conf").write_text("bmesh x.ply 0 0 0 0 0 0 1\n")
    (tmp_path / "b.conf").write_text("")
    with pytest.raises(DataLayoutError, match="a.conf, b.conf"):
        find_scans(tmp_path)
    (tmp_path / "b.conf").unlink()
    with pytest.raises(DataLayoutError, match="0 of its 1 bmesh scan.*at least 3"):
        find_scans(tmp_path)


def test_eval_scans_on_a_scanned_part(part_dir):
    from oddeye.pointcloud.evaluate import eval_scans
    from oddeye.pointcloud.head import PointCloudHead

    def make() -> PointCloudHead:
        return PointCloudHead(adapt=False, position_weight=4.0, smooth_k=3, surface_weight=8.0, hole_weight=0.12)

    m, result = eval_scans(find_scans(part_dir), make, folds=1, variants=1, progress=False)
    assert result.meta["dataset"] == "scan-defects" and result.meta["held_out"][0] == ["front", "right"]
    assert m["n_clean"] == 2 and m["n_defective"] == 10
    assert m["object_auroc"] >= 0.8 and m["point_auroc"] >= 0.8  # a registered ball: defects stand out of its surface


def test_eval_pointcloud_scan_defects_from_the_command_line(part_dir, tmp_path, capsys):
    import json

    from oddeye.cli import main

    code = main(["eval", "pointcloud", "--dataset", "scan-defects", "--root", str(part_dir), "--folds", "1",
                 "--variants", "1", "--no-adapt", "--out", str(tmp_path / "out"), "--db", str(tmp_path / "s.db")])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and line["dataset"] == "scan-defects" and 0.0 <= line["object_auroc"] <= 1.0
    assert main(["eval", "pointcloud", "--dataset", "scan-defects", "--root", str(tmp_path / "out")]) == 2
    assert "exactly one .conf" in capsys.readouterr().err
