"""The `bunny-defects` protocol: real Stanford bunny range scans, synthetic (our, seeded) defects with point labels.

Five folds: train on 8 of the 10 scans (registered into one frame with bun.conf); test on the other 2, each as `variants` seeded resamplings (90% of its points),
clean and with each defect kind (dent, bulge, hole, crack, blob; radius 1-5% of the scan's extent).
The defects are ours, made by oddeye.pointcloud.defects on real scans: say so wherever a figure is quoted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from oddeye.core.errors import DataLayoutError, require_dir
from oddeye.pointcloud.defects import KINDS, make_defect
from oddeye.pointcloud.io import load_cloud

SCANS = ("bun000", "bun045", "bun090", "bun180", "bun270", "bun315", "chin", "ear_back", "top2", "top3")
# 5 folds: each tests 2 scans, trains on the other 8; every scan is tested once
FOLDS = (("bun045", "top3"), ("bun315", "ear_back"), ("bun000", "bun180"), ("bun090", "top2"), ("bun270", "chin"))


@dataclass
class TestCloud:
    """One test cloud: name, points (N, 3), point labels (N,), defect kind ('clean' for normal ones), defect size
    (radius as a fraction of the scan's extent; None for clean ones)."""

    name: str
    points: np.ndarray
    labels: np.ndarray
    kind: str
    size: float | None = None

    @property
    def label(self) -> int:
        """1 if the cloud holds a defect."""
        return int(self.kind != "clean")


def read_conf(path: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Parse bun.conf: scan name -> (translation (3,), quaternion (4,) as i j k w)."""
    out = {}
    for line in Path(path).read_text().splitlines():
        w = line.split()
        if len(w) == 9 and w[0] == "bmesh":
            out[Path(w[1]).stem] = (np.array(w[2:5], dtype=float), np.array(w[5:9], dtype=float))
    return out


def to_common_frame(points: np.ndarray, t: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Apply bun.conf's rigid transform (rotate by quaternion q = (i, j, k, w), then translate by t) to (N, 3)."""
    x, y, z, w = q / np.linalg.norm(q)
    r = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                  [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                  [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    return points @ r + t  # bun.conf stores the conjugate rotation: p @ R (checked: 0.2-0.3 mm residuals)


def load_scans(root: str | Path, names: tuple[str, ...] = SCANS, register: bool = True) -> dict[str, np.ndarray]:
    """Read the named scans (N, 3) from `root`, in bun.conf's common frame when `register`."""
    d = require_dir(root, "stanford_bunny folder")
    missing = [n for n in names if not (d / f"{n}.ply").is_file()]
    if missing:
        raise DataLayoutError(f"{d}: missing scans {missing}", "point --root at the stanford_bunny folder (bun000.ply ...)")
    conf = read_conf(d / "bun.conf") if register and (d / "bun.conf").is_file() else {}
    out = {}
    for n in names:
        p = load_cloud(d / f"{n}.ply").points
        out[n] = to_common_frame(p, *conf[n]) if n in conf else p
    return out


def make_bunny_defects(root: str | Path, fold: int = 0, seed: int = 0, variants: int = 2,
                       kinds: tuple[str, ...] = KINDS, scans: dict[str, np.ndarray] | None = None,
                       validation: bool = False) -> tuple[dict[str, np.ndarray], list[TestCloud]]:
    """Training scans {name: (N, 3)} of `fold` and its seeded test set (clean + every defect kind per variant).

    validation=True: the fold's validation split instead (6 of its training scans; the other 2 as the test set),
    for choosing settings without the test scans (use another seed too).
    """
    test = FOLDS[fold % len(FOLDS)]
    train = tuple(n for n in SCANS if n not in test)
    if validation:  # tuning without the test scans: of this fold's 8 training scans, fit on 6, test on 2
        test = FOLDS[(fold + 1) % len(FOLDS)]
        train = tuple(n for n in train if n not in test)
    scans = scans if scans is not None else load_scans(root)
    rng = np.random.default_rng(seed * 1000 + fold)
    tests: list[TestCloud] = []
    for n in test:
        for v in range(variants):
            p = scans[n][rng.random(len(scans[n])) < 0.9]
            tests.append(TestCloud(f"{n}_v{v}_clean", p, np.zeros(len(p), dtype=np.int64), "clean"))
            for kind in kinds:
                dc = make_defect(p, kind, seed=int(rng.integers(2**31)))
                tests.append(TestCloud(f"{n}_v{v}_{kind}", dc.points, dc.labels, kind, float(dc.meta["size"])))
    return {n: scans[n] for n in train}, tests
