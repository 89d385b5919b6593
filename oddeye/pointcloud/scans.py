"""The scan-defects protocol for any scanned object: range scans in the Stanford layout (PLY files registered into
one frame by the `bmesh` lines of a `.conf`), folds of held-out scans, seeded synthetic defects on them.

`bunny-defects` (oddeye.pointcloud.bunny) is this protocol on the Stanford bunny with its fixed folds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from oddeye.core.errors import DataLayoutError, require_dir
from oddeye.pointcloud.defects import KINDS, make_defect
from oddeye.pointcloud.io import load_cloud

LAYOUT_HINT = ("the Stanford layout: a folder with PLY scans and one .conf whose lines "
               "`bmesh NAME.ply tx ty tz qi qj qk qw` register each scan into a common frame")


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


@dataclass(frozen=True)
class ScanSet:
    """The scans of one object: folder, its .conf (None: unregistered), scan name -> PLY path (in .conf order),
    per scan its rigid transform (translation (3,), quaternion (4,) as i j k w), and the folds (held-out names)."""

    root: Path
    conf: Path | None
    files: dict[str, Path]
    poses: dict[str, tuple[np.ndarray, np.ndarray]]
    folds: tuple[tuple[str, ...], ...]
    missing: tuple[str, ...] = ()  # listed in the .conf, not found

    @property
    def names(self) -> tuple[str, ...]:
        """Scan names in .conf order."""
        return tuple(self.files)


def read_conf(path: str | Path) -> dict[str, tuple[str, np.ndarray, np.ndarray]]:
    """Parse a Stanford .conf: scan name -> (PLY path as written, translation (3,), quaternion (4,) as i j k w)."""
    out = {}
    for line in Path(path).read_text().splitlines():
        w = line.split()
        if len(w) == 9 and w[0] == "bmesh":
            try:
                out[Path(w[1]).stem] = (w[1], np.array(w[2:5], dtype=float), np.array(w[5:9], dtype=float))
            except ValueError:
                raise DataLayoutError(f"{path}: cannot read the numbers of line {line!r}", LAYOUT_HINT) from None
    return out


def to_common_frame(points: np.ndarray, t: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Apply a .conf's rigid transform (rotate by quaternion q = (i, j, k, w), then translate by t) to (N, 3)."""
    x, y, z, w = q / np.linalg.norm(q)
    r = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                  [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                  [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    return points @ r + t  # the .conf stores the conjugate rotation: p @ R (checked on the bunny: 0.2-0.3 mm residuals)


def make_folds(names: tuple[str, ...], held_out: int = 2) -> tuple[tuple[str, ...], ...]:
    """Folds over `names`: ceil(n / held_out) folds, fold i holding out names i, i + folds, ... so that every scan is
    held out once and neighbours in the .conf (often neighbouring views) fall in different folds."""
    n_folds = math.ceil(len(names) / held_out)
    return tuple(tuple(names[i::n_folds]) for i in range(n_folds))


def find_scans(root: str | Path, held_out: int = 2) -> ScanSet:
    """The scans of the folder `root`: its one .conf names and registers them; folds are formed from the scans found
    (at least 3). A folder without a .conf, or with several, is a DataLayoutError saying what is expected."""
    d = require_dir(root, "--root (a folder of range scans)")
    confs = sorted(d.glob("*.conf"))
    if len(confs) != 1:
        found = f"found {', '.join(c.name for c in confs)}" if confs else "found none"
        raise DataLayoutError(f"{d}: expected exactly one .conf ({found})", f"scan-defects reads {LAYOUT_HINT}")
    listed = read_conf(confs[0])
    files = {n: d / rel for n, (rel, _, _) in listed.items() if (d / rel).is_file()}
    if len(files) < 3:
        raise DataLayoutError(f"{confs[0]}: {len(files)} of its {len(listed)} bmesh scan(s) found; need at least 3 "
                              "(held-out scans are tested, the others fitted)", f"scan-defects reads {LAYOUT_HINT}")
    names = tuple(files)
    return ScanSet(d, confs[0], files, {n: tuple(listed[n][1:]) for n in names}, make_folds(names, held_out),
                   tuple(n for n in listed if n not in files))


def load_scans(scan_set: ScanSet, register: bool = True) -> dict[str, np.ndarray]:
    """Every scan of the set, (N, 3) each, in the .conf's common frame when `register`."""
    out = {}
    for n, path in scan_set.files.items():
        p = load_cloud(path).points
        out[n] = to_common_frame(p, *scan_set.poses[n]) if register and n in scan_set.poses else p
    return out


def make_scan_defects(scan_set: ScanSet, fold: int = 0, seed: int = 0, variants: int = 2,
                      kinds: tuple[str, ...] = KINDS, scans: dict[str, np.ndarray] | None = None,
                      validation: bool = False) -> tuple[dict[str, np.ndarray], list[TestCloud]]:
    """Training scans {name: (N, 3)} of `fold` and its seeded test set (clean + every defect kind per variant, each
    variant a 90% resampling of a held-out scan).

    validation=True: the fold's validation split instead (the next fold's scans held out of this fold's training
    scans), for choosing settings without the test scans (use another seed too).
    """
    folds = scan_set.folds
    test = folds[fold % len(folds)]
    train = tuple(n for n in scan_set.names if n not in test)
    if validation:
        test = folds[(fold + 1) % len(folds)]
        train = tuple(n for n in train if n not in test)
        if not train:
            raise DataLayoutError(f"{scan_set.root}: too few scans for a validation split of fold {fold}",
                                  "add scans, or validate without --validation")
    scans = scans if scans is not None else load_scans(scan_set)
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
