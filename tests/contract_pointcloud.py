"""Contract cases of the pointcloud head (see tests/test_contract.py)."""

from __future__ import annotations

from pathlib import Path

from contract_support import ContractCase
from oddeye.core.synth import make_point_cloud
from oddeye.pointcloud.head import PointCloudHead
from oddeye.pointcloud.plyfile import write_ply


def _small() -> PointCloudHead:
    """Every part that is saved: adapter (beside FPFH), xyz features, surface field with holes; a few seconds."""
    return PointCloudHead(target_points=300, adapt_steps=20, keep_raw=True, position_weight=1.0, surface_weight=8.0,
                          hole_weight=0.1, smooth_k=3)


def _train(folder: Path) -> list[Path]:
    """Three normal spheres as PLY files."""
    return [write_ply(folder / "train" / f"normal_{s}.ply", make_point_cloud(seed=s, n_points=2000).points)
            for s in range(3)]


def _test(folder: Path) -> list[Path]:
    """A clean, a dented and a bulged sphere as PLY files with point labels."""
    out = []
    for i, defect in enumerate([None, "dent", "bulge"]):
        c = make_point_cloud(seed=20 + i, n_points=2000, defect=defect, defect_size=0.06)
        out.append(write_ply(folder / "test" / f"{i}_{defect or 'clean'}.ply", c.points, c.labels))
    return out


CASES: list[ContractCase] = [ContractCase(head="pointcloud", make=_small, train=_train, test=_test,
                                          bad=("surface_agree", 1.5))]
