"""Read point clouds from the formats scanners and data sets use (writers: pointcloud/plyfile.py).

PLY is read by a small parser of our own: open3d 0.20 returns garbage points with only a warning for a
binary PLY cut short (and the wrong count for a short ASCII one), and it cannot return per-point labels.
PCD goes through open3d (after a header check), the rest through numpy / tifffile.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from oddeye.core.errors import EmptyDataError, InputError, require_file

CLOUD_SUFFIXES = (".ply", ".pcd", ".xyz", ".csv", ".txt", ".pts", ".npy", ".npz", ".tif", ".tiff")
_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}
_LABEL_NAMES = ("label", "labels", "class", "gt", "anomaly", "is_anomaly")


@dataclass
class Cloud:
    """A point cloud: points (N, 3), optional labels (N,) int and normals (N, 3); organised clouds keep
    grid_shape (H, W) and grid_index (N,) = flat index of each point in that grid."""

    points: np.ndarray
    labels: np.ndarray | None = None
    normals: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    grid_shape: tuple[int, int] | None = None
    grid_index: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.points.shape[0])

    @property
    def name(self) -> str:
        """Short name of the cloud (file stem or meta['name'])."""
        return str(self.meta.get("name") or Path(str(self.meta.get("source", "cloud"))).stem)

    def subset(self, keep: np.ndarray) -> Cloud:
        """The cloud restricted to `keep` (bool mask (N,) or indices), organisation index kept."""
        return Cloud(self.points[keep], None if self.labels is None else self.labels[keep],
                     None if self.normals is None else self.normals[keep], dict(self.meta), self.grid_shape,
                     None if self.grid_index is None else self.grid_index[keep])


def finish_cloud(points: np.ndarray, source: str, labels: np.ndarray | None = None,
                 normals: np.ndarray | None = None, units: str = "unknown", grid_shape: tuple[int, int] | None = None,
                 grid_index: np.ndarray | None = None, **meta: Any) -> Cloud:
    """Validate (N, 3) points, drop NaN/inf rows (counted in meta) and build a Cloud; errors name `source`."""
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise InputError(f"{source}: points must have shape (N, 3), got {pts.shape}")
    if not np.issubdtype(pts.dtype, np.floating):
        pts = pts.astype(np.float64)
    if len(pts) == 0:
        raise EmptyDataError(f"{source}: the cloud is empty (0 points)", "check the file was exported completely")
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if len(labels) != len(pts):
            raise InputError(f"{source}: label count {len(labels)} differs from point count {len(pts)}",
                             "the label file must have one label per point, in the cloud's order")
        labels = np.rint(labels.astype(np.float64)).astype(np.int64)
    if normals is not None and np.asarray(normals).shape != pts.shape:
        raise InputError(f"{source}: normals shape {np.asarray(normals).shape} differs from points {pts.shape}")
    ok = np.isfinite(pts).all(axis=1)
    dropped = int(len(pts) - ok.sum())
    if dropped == len(pts):
        raise EmptyDataError(f"{source}: all {len(pts)} points are NaN/inf", "the scan holds no valid points")
    if dropped:
        pts = pts[ok]
        labels = None if labels is None else labels[ok]
        normals = None if normals is None else np.asarray(normals)[ok]
        grid_index = None if grid_index is None else grid_index[ok]
    if len(pts) < 2:
        raise EmptyDataError(f"{source}: the cloud has only one valid point", "a cloud needs at least 2 points")
    meta = {"source": source, "units": units, "dropped_nonfinite": dropped, "n_points": int(len(pts)), **meta}
    return Cloud(pts, labels, None if normals is None else np.asarray(normals, dtype=pts.dtype), meta,
                 grid_shape, grid_index)


def _split_columns(arr: np.ndarray, names: list[str] | None, source: str) -> tuple[np.ndarray, np.ndarray | None,
                                                                                np.ndarray | None]:
    """Split a (N, C) table into points, labels, normals, by column names if given, else by C (3/4/6/7)."""
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    c = arr.shape[1]
    if names:
        low = [n.strip().lower() for n in names]
        if all(k in low for k in ("x", "y", "z")):
            pts = arr[:, [low.index("x"), low.index("y"), low.index("z")]]
            lab = next((arr[:, low.index(n)] for n in _LABEL_NAMES if n in low), None)
            nrm = arr[:, [low.index(n) for n in ("nx", "ny", "nz")]] if all(n in low for n in ("nx", "ny", "nz")) else None
            return pts, lab, nrm
    if c == 3:
        return arr, None, None
    if c == 4:
        return arr[:, :3], arr[:, 3], None
    if c == 6:
        return arr[:, :3], None, arr[:, 3:6]
    if c == 7:
        return arr[:, :3], arr[:, 6], arr[:, 3:6]
    raise InputError(f"{source}: {c} columns per row; expected x y z [label] (3 or 4) or x y z nx ny nz [label] (6 or 7)",
                     "or give a header row naming the columns x, y, z, label")


def _read_table(path: Path) -> Cloud:
    """XYZ / CSV / TXT / PTS: rows of x y z [label], comma/space/semicolon separated, optional header row."""
    text = path.read_text(errors="replace")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith(("#", "//"))]
    if not lines:
        raise EmptyDataError(f"{path}: the cloud is empty (no data rows)")
    names = None
    first = re.split(r"[,;\s]+", lines[0].strip())
    try:
        [float(t) for t in first]
    except ValueError:
        names, lines = first, lines[1:]
        if not lines:
            raise EmptyDataError(f"{path}: the cloud is empty (header only)") from None
    body = re.sub(r"[,;]", " ", "\n".join(lines))
    tokens = body.split()
    ncol = len(re.split(r"[,;\s]+", lines[0].strip()))
    if len(tokens) != ncol * len(lines):
        raise InputError(f"{path}: rows have different numbers of columns (first row has {ncol})",
                         "every row must be x y z [label]")
    try:
        arr = np.array(tokens, dtype=np.float64).reshape(len(lines), ncol)
    except ValueError as e:
        raise InputError(f"{path}: a value is not a number ({e})") from None
    pts, lab, nrm = _split_columns(arr, names, str(path))
    return finish_cloud(pts, str(path), lab, nrm)


# ---------------------------------------------------------------- PLY


def _ply_header(path: Path, raw: bytes) -> tuple[str, list[dict[str, Any]], int, dict[str, str]]:
    """Parse a PLY header -> (format, elements [{name, count, props [(name, type, list_types)]}], body offset, info)."""
    if not raw.startswith(b"ply"):
        raise InputError(f"{path}: not a PLY file (no 'ply' magic)")
    end = raw.find(b"end_header")
    if end < 0:
        raise InputError(f"{path}: PLY header has no end_header", "the file is truncated or not a PLY file")
    nl = raw.find(b"\n", end)
    body = len(raw) if nl < 0 else nl + 1
    fmt, elements, info = "", [], {}
    for line in raw[:end].decode("ascii", errors="replace").splitlines():
        w = line.strip().split()
        if not w:
            continue
        if w[0] == "format":
            fmt = w[1]
        elif w[0] == "element":
            elements.append({"name": w[1], "count": int(w[2]), "props": []})
        elif w[0] == "property" and elements:
            if w[1] == "list":
                elements[-1]["props"].append((w[4], _PLY_TYPES.get(w[3], "f4"), _PLY_TYPES.get(w[2], "u1")))
            else:
                elements[-1]["props"].append((w[2], _PLY_TYPES.get(w[1], "f4"), None))
        elif w[0] in ("comment", "obj_info") and len(w) >= 3:
            info[w[1].lower()] = " ".join(w[2:])
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise InputError(f"{path}: unknown PLY format {fmt!r}")
    return fmt, elements, body, info


def _ply_vertex_table(path: Path, raw: bytes, fmt: str, elements: list[dict[str, Any]], body: int) -> tuple[np.ndarray, list[str]]:
    """Return the vertex element as a (N, P) float64 table of its scalar properties and their names."""
    vi = next((i for i, e in enumerate(elements) if e["name"] == "vertex"), None)
    if vi is None:
        raise InputError(f"{path}: PLY has no 'vertex' element")
    vert = elements[vi]
    names = [p[0] for p in vert["props"] if p[2] is None]
    n = vert["count"]
    if fmt == "ascii":
        lines = raw[body:].splitlines()
        skip = sum(e["count"] for e in elements[:vi])
        rows = [ln for ln in lines[skip: skip + n]]
        if len(rows) < n:
            raise InputError(f"{path}: PLY cut short: header says {n} vertices, the file has {len(rows)}",
                             "re-export or re-copy the file")
        if any(p[2] is not None for p in vert["props"]):
            tab = [[float(t) for t in r.split()[: len(names)]] for r in rows]
            return np.array(tab, dtype=np.float64), names
        tokens = b" ".join(rows).split()
        if len(tokens) != n * len(names):
            raise InputError(f"{path}: PLY vertex rows do not have {len(names)} values each")
        try:
            return np.array(tokens).astype(np.float64).reshape(n, len(names)), names
        except ValueError as e:
            raise InputError(f"{path}: a PLY vertex value is not a number ({e})") from None
    order = "<" if fmt == "binary_little_endian" else ">"
    offset = body
    for e in elements[: vi + 1]:
        if any(p[2] is not None for p in e["props"]):
            raise InputError(f"{path}: binary PLY with list properties before/in the vertex element is not supported")
        dt = np.dtype([(f"p{j}", order + p[1]) for j, p in enumerate(e["props"])])
        need = offset + e["count"] * dt.itemsize
        if need > len(raw):
            have = max(0, (len(raw) - offset) // max(dt.itemsize, 1))
            raise InputError(f"{path}: binary PLY cut short: element '{e['name']}' needs {e['count']} rows, "
                             f"the file holds {min(have, e['count'])} ({len(raw)} of {need} bytes)",
                             "re-export or re-copy the file")
        if e is vert:
            rec = np.frombuffer(raw, dtype=dt, count=n, offset=offset)
            return np.stack([rec[f"p{j}"].astype(np.float64) for j, p in enumerate(e["props"]) if p[2] is None],
                            axis=1) if n else np.zeros((0, len(names))), names
        offset = need
    raise AssertionError("unreachable")


def _read_ply(path: Path) -> Cloud:
    """PLY ascii/binary, any extra elements, CRLF; x y z, optional nx ny nz and a label property."""
    raw = path.read_bytes()
    fmt, elements, body, info = _ply_header(path, raw)
    tab, names = _ply_vertex_table(path, raw, fmt, elements, body)
    if not all(k in names for k in ("x", "y", "z")):
        raise InputError(f"{path}: PLY vertices have no x, y, z properties (found {names})")
    pts, lab, nrm = _split_columns(tab, names, str(path))
    units = info.get("units") or info.get("unit") or "unknown"
    return finish_cloud(pts, str(path), lab, nrm, units=units, format=f"ply-{fmt}")


def _read_pcd(path: Path) -> Cloud:
    """PCD via open3d, after checking the header's POINTS count against what open3d returned."""
    import open3d as o3d

    head = path.read_bytes()[:4096].decode("ascii", errors="replace")
    if "POINTS" not in head and "WIDTH" not in head:
        raise InputError(f"{path}: not a PCD file (no POINTS/WIDTH header)")
    m = re.search(r"^POINTS\s+(\d+)", head, flags=re.M)
    want = int(m.group(1)) if m else None
    if want == 0:
        raise EmptyDataError(f"{path}: the cloud is empty (POINTS 0)")
    with _quiet_open3d():
        pc = o3d.io.read_point_cloud(str(path), format="pcd", remove_nan_points=False, remove_infinite_points=False)
    pts = np.asarray(pc.points, dtype=np.float64)
    if want is not None and len(pts) != want:
        raise InputError(f"{path}: PCD header says {want} points, {len(pts)} could be read", "the file is cut short or corrupt")
    nrm = np.asarray(pc.normals, dtype=np.float64) if pc.has_normals() else None
    return finish_cloud(pts, str(path), None, nrm, format="pcd")


class _quiet_open3d:
    """Context manager silencing open3d's console warnings (we check its results ourselves)."""

    def __enter__(self) -> None:
        import open3d as o3d

        self._level = o3d.utility.get_verbosity_level()
        o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)

    def __exit__(self, *exc: object) -> None:
        import open3d as o3d

        o3d.utility.set_verbosity_level(self._level)


def _read_numpy(path: Path) -> Cloud:
    """.npy (N,3|4|6|7) or organised (H,W,3); .npz with 'points'/'xyz' (+ 'labels'/'normals') or one array."""
    try:
        data = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise InputError(f"{path}: cannot read as a numeric NumPy array ({e})", "save plain float arrays") from None
    labels = normals = None
    if isinstance(data, np.lib.npyio.NpzFile):
        keys = list(data.keys())
        key = next((k for k in ("points", "xyz", "pts", "cloud") if k in keys), keys[0] if len(keys) == 1 else None)
        if key is None:
            raise InputError(f"{path}: .npz needs an array named 'points' (found {keys})")
        arr = data[key]
        labels = next((data[k] for k in _LABEL_NAMES if k in keys), None)
        normals = data["normals"] if "normals" in keys else None
    else:
        arr = data
    if arr.ndim == 3 and arr.shape[2] == 3:
        return _organised(arr, str(path), labels, "numpy")
    if arr.ndim != 2 or arr.shape[1] not in (3, 4, 6, 7):
        raise InputError(f"{path}: array shape {arr.shape} is not (N, 3|4|6|7) or organised (H, W, 3)")
    pts, lab, nrm = _split_columns(arr.astype(np.float64), None, str(path))
    return finish_cloud(pts, str(path), labels if labels is not None else lab, normals if normals is not None else nrm)


def _organised(grid: np.ndarray, source: str, mask: np.ndarray | None, fmt: str, units: str = "unknown") -> Cloud:
    """(H, W, 3) organised xyz -> Cloud of its valid points (all-zero = missing), keeping the grid index."""
    h, w = grid.shape[:2]
    flat = grid.reshape(-1, 3).astype(np.float64)
    valid = np.isfinite(flat).all(axis=1) & (np.abs(flat).sum(axis=1) > 0)
    idx = np.flatnonzero(valid)
    if len(idx) == 0:
        raise EmptyDataError(f"{source}: the organised cloud has no valid points (all zero or NaN)")
    labels = None
    if mask is not None:
        m = np.asarray(mask)
        if m.ndim == 3:
            m = m[..., 0]
        if m.shape != (h, w):
            raise InputError(f"{source}: mask shape {m.shape} differs from the xyz grid {(h, w)}")
        labels = (m.reshape(-1)[idx] > 0).astype(np.int64)
    missing = int(len(flat) - len(idx))
    return finish_cloud(flat[idx], source, labels, units=units, grid_shape=(h, w), grid_index=idx,
                        format=fmt, missing_grid_points=missing)


def _read_tiff(path: Path, mask_path: Path | None = None) -> Cloud:
    """MVTec 3D-AD organised xyz TIFF (H, W, 3) float; zero points are missing; optional gt mask PNG."""
    import tifffile

    try:
        grid = tifffile.imread(str(path))
    except Exception as e:  # noqa: BLE001 - tifffile raises many kinds for a bad file
        raise InputError(f"{path}: cannot read TIFF ({type(e).__name__}: {e})") from None
    if grid.ndim != 3 or grid.shape[2] != 3 or not np.issubdtype(grid.dtype, np.floating):
        raise InputError(f"{path}: not an organised xyz TIFF: expected (H, W, 3) float, got {grid.shape} {grid.dtype}",
                         "MVTec 3D-AD xyz/*.tiff files hold one x, y, z per pixel")
    mask = None
    if mask_path is not None:
        from oddeye.core.imageio import read_mask

        mask = read_mask(mask_path)
    return _organised(grid, str(path), mask, "tiff-organised", units="mm")


def load_cloud(path: str | Path, labels: str | Path | np.ndarray | None = None, units: str | None = None,
               mask: str | Path | None = None) -> Cloud:
    """Read a point cloud (PLY, PCD, XYZ/CSV/TXT/PTS, NPY/NPZ, organised TIFF) -> Cloud, NaN/inf dropped.

    `labels`: a per-point label file (x y z label rows or one label per row) or array, same order as the cloud.
    `mask`: for an organised TIFF, the ground-truth PNG giving per-point labels.
    """
    p = require_file(path, "point cloud")
    suf = p.suffix.lower()
    if suf == ".ply":
        cloud = _read_ply(p)
    elif suf == ".pcd":
        cloud = _read_pcd(p)
    elif suf in (".xyz", ".csv", ".txt", ".pts"):
        cloud = _read_table(p)
    elif suf in (".npy", ".npz"):
        cloud = _read_numpy(p)
    elif suf in (".tif", ".tiff"):
        cloud = _read_tiff(p, Path(mask) if mask else None)
    else:
        raise InputError(f"{p}: unknown point-cloud format {suf!r}", f"use one of {', '.join(CLOUD_SUFFIXES)}")
    if labels is not None:
        cloud.labels = _external_labels(labels, p, cloud)
    if units:
        cloud.meta["units"] = units
    return cloud


def _external_labels(labels: str | Path | np.ndarray, cloud_path: Path, cloud: Cloud) -> np.ndarray:
    """Per-point labels from an array or a file (x y z label rows, or one label a row); length must match."""
    if isinstance(labels, (str, Path)):
        lp = require_file(labels, "label file")
        arr = np.loadtxt(lp, ndmin=2, delimiter="," if lp.suffix.lower() == ".csv" else None)
        lab = arr[:, -1]
        src = str(lp)
    else:
        lab, src = np.asarray(labels).reshape(-1), "labels array"
    n_raw = cloud.meta["n_points"] + cloud.meta["dropped_nonfinite"]
    if len(lab) not in (len(cloud), n_raw):
        raise InputError(f"{src}: {len(lab)} labels for the {n_raw} points of {cloud_path}",
                         "the label file must have one row per point, in the cloud's order")
    if len(lab) != len(cloud):  # labels given for the raw file: drop the rows we dropped
        raise InputError(f"{src}: labels match the raw file but {cloud.meta['dropped_nonfinite']} NaN points were dropped "
                         f"from {cloud_path}", "remove the NaN rows from the label file too")
    return np.rint(lab).astype(np.int64)
