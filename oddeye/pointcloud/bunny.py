"""The `bunny-defects` protocol: real Stanford bunny range scans, synthetic (our, seeded) defects with point labels.

Five folds: train on 8 of the 10 scans (registered into one frame with bun.conf); test on the other 2, each as
`variants` seeded resamplings (90% of its points), clean and with each defect kind (dent, bulge, hole, crack, blob;
radius 1-5% of the scan's extent). It is the scan-defects protocol (oddeye.pointcloud.scans) with the bunny's fixed
folds. The defects are ours, made by oddeye.pointcloud.defects on real scans: say so wherever a figure is quoted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from oddeye.core.errors import DataLayoutError, require_dir
from oddeye.pointcloud.defects import KINDS
from oddeye.pointcloud.scans import ScanSet, TestCloud, make_scan_defects, read_conf
from oddeye.pointcloud.scans import load_scans as load_set

__all__ = ["FOLDS", "SCANS", "TestCloud", "bunny_scans", "load_scans", "make_bunny_defects"]

SCANS = ("bun000", "bun045", "bun090", "bun180", "bun270", "bun315", "chin", "ear_back", "top2", "top3")
# 5 folds: each tests 2 scans, trains on the other 8; every scan is tested once
FOLDS = (("bun045", "top3"), ("bun315", "ear_back"), ("bun000", "bun180"), ("bun090", "top2"), ("bun270", "chin"))


def bunny_scans(root: str | Path, names: tuple[str, ...] = SCANS) -> ScanSet:
    """The bunny's scans in `root` (bun000.ply ..., registered by bun.conf when present) with its fixed folds."""
    d = require_dir(root, "stanford_bunny folder")
    missing = [n for n in names if not (d / f"{n}.ply").is_file()]
    if missing:
        raise DataLayoutError(f"{d}: missing scans {missing}", "point --root at the stanford_bunny folder (bun000.ply ...)")
    conf = d / "bun.conf"
    listed = read_conf(conf) if conf.is_file() else {}
    poses = {n: tuple(listed[n][1:]) for n in names if n in listed}
    folds = FOLDS if set(names) == set(SCANS) else ()
    return ScanSet(d, conf if listed else None, {n: d / f"{n}.ply" for n in names}, poses, folds)


def load_scans(root: str | Path, names: tuple[str, ...] = SCANS, register: bool = True) -> dict[str, np.ndarray]:
    """Read the named bunny scans (N, 3) from `root`, in bun.conf's common frame when `register`."""
    return load_set(bunny_scans(root, names), register=register)


def make_bunny_defects(root: str | Path, fold: int = 0, seed: int = 0, variants: int = 2,
                       kinds: tuple[str, ...] = KINDS, scans: dict[str, np.ndarray] | None = None,
                       validation: bool = False) -> tuple[dict[str, np.ndarray], list[TestCloud]]:
    """Training scans {name: (N, 3)} of bunny `fold` and its seeded test set (clean + every defect kind per variant).

    validation=True: the fold's validation split instead (6 of its training scans; the other 2 as the test set),
    for choosing settings without the test scans (use another seed too).
    """
    return make_scan_defects(bunny_scans(root), fold, seed, variants, kinds, scans, validation)
