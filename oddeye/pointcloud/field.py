"""Surface field for registered clouds: deviation from, and missing parts of, the union of the normal scans.

Fit: the training scans (one frame) are voxelised at `fine` into bank points with normals; every cell of a grid
(edge `cell`) within `band` cells of the bank gets the ids of its 3 nearest bank points, found once through
PatchIndex. Scoring a cloud is then a hash lookup per point (no search at score time): the deviation of a
point is its mean point-to-plane distance to those bank points, in units of `fine`; where the nearest bank point
lies far along the surface (tangential distance over `gate` fine voxels) no training scan saw that surface
and the deviation is 0. Each bank point knows how many training scans saw it (`coverage`): where only one did,
a scan that differs from it may be that scan's registration error as much as a defect, and its deviation can
be weighted down (`single`). Deviations are pooled (mean) over cells of `pool` fine voxels on two grids half a cell
apart, which stands in for smoothing over spatial neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from oddeye.core.errors import ModelError
from oddeye.pointcloud.features import estimate_normals
from oddeye.pointcloud.preprocess import bounds, voxel_downsample

if TYPE_CHECKING:
    from oddeye.retrieval.index import PatchIndex

_OFFS = 1 << 20  # grid keys: 21 bits per axis around the field's origin
DENSE_MAX = 1 << 25  # lookup through a dense table when the band's box has at most this many cells (128 MiB)


def _keys(ijk: np.ndarray) -> np.ndarray:
    """Integer cell coordinates (N, 3) -> int64 keys (N,)."""
    a = ijk.astype(np.int64) + _OFFS
    return (a[:, 0] << 42) | (a[:, 1] << 21) | a[:, 2]


def _unkeys(keys: np.ndarray) -> np.ndarray:
    """Inverse of _keys: int64 keys (N,) -> integer cell coordinates (N, 3)."""
    return np.stack([(keys >> 42) & 0x1FFFFF, (keys >> 21) & 0x1FFFFF, keys & 0x1FFFFF], 1) - _OFFS


def pool_mean(points: np.ndarray, values: np.ndarray, size: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean of values (N,) over grid cells of edge `size`, averaged over 2 grids half a cell apart -> (N,), and
    the number of points (N,) in each point's cell (the smaller of the two grids)."""
    out = np.zeros(len(points), dtype=np.float64)
    cnt = np.full(len(points), np.iinfo(np.int64).max, dtype=np.int64)
    for shift in (0.0, 0.5):
        _, inv, c = np.unique(_keys(np.floor(points / size + shift)), return_inverse=True, return_counts=True)
        inv = inv.reshape(-1)
        out += (np.bincount(inv, values, len(c)) / c)[inv]
        cnt = np.minimum(cnt, c[inv])
    return out / 2.0, cnt


def orient(points: np.ndarray, normals: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Normals (N, 3) turned to the outside. A one-view range scan's normals crowd around the direction to its
    scanner (taken on the side of `centre`, the object's centre, where the scan lies): turned towards it. A cloud
    seen from all round (no such axis) gets its normals turned away from `centre`."""
    vals, vecs = np.linalg.eigh(normals.T @ normals)
    if vals[-1] < 0.5 * vals.sum():
        return normals * np.sign(((points - centre) * normals).sum(1) + 1e-12)[:, None]
    d = vecs[:, -1] if float((points.mean(0) - centre) @ vecs[:, -1]) >= 0 else -vecs[:, -1]
    return normals * np.sign(normals @ d + 1e-12)[:, None]


def oriented_union(clouds: list[np.ndarray], fine: float) -> tuple[np.ndarray, np.ndarray]:
    """Union of registered scans [(N_i, 3)] at voxel `fine` -> points (B, 3), unit normals (B, 3) pointing out of
    the object (each scan's normals turned towards its own scanner, then averaged per voxel)."""
    vox = [voxel_downsample(c, fine).points for c in clouds]
    centre = np.concatenate(vox).mean(0)
    nrm = []
    for v in vox:
        nrm.append(orient(v, estimate_normals(v, 3.0 * fine, 30), centre))
    allp, alln = np.concatenate(vox), np.concatenate(nrm)
    u = voxel_downsample(allp, fine)
    m = len(u.points)
    n = np.stack([np.bincount(u.inverse, alln[:, d], m) for d in range(3)], 1)
    return u.points, n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def coverage(points: np.ndarray, clouds: list[np.ndarray], size: float) -> np.ndarray:
    """How many of the clouds [(N_i, 3)] have a point in the voxel (edge `size`) of each of points (B, 3): (B,)."""
    keys = _keys(np.floor(np.asarray(points, dtype=np.float64) / size))
    out = np.zeros(len(keys), dtype=np.int16)
    for c in clouds:
        out += np.isin(keys, np.unique(_keys(np.floor(np.asarray(c, dtype=np.float64) / size))))
    return out


def xyz_index(points: np.ndarray) -> PatchIndex:
    """PatchIndex over xyz (N, 3) float32: IVF (about 40-100 points a list, nprobe 8) or flat when small."""
    from oddeye.retrieval.index import PatchIndex

    n = len(points)
    if n < 2000:
        return PatchIndex.build(points, kind="flat", progress=False)
    return PatchIndex.build(points, kind="ivf", nlist=int(min(1024, n // 40)), nprobe=8, progress=False)


def _mean_direction(normals: np.ndarray, agree: float = 0.3) -> np.ndarray | None:
    """Unit mean (3,) of unit normals (M, 3), or None when they do not agree (its norm <= `agree`)."""
    view = normals.mean(0)
    norm = float(np.linalg.norm(view))
    return view / norm if norm > agree else None


def _elongation(cells: np.ndarray, lab: np.ndarray, count: int) -> np.ndarray:
    """Per label 0..count of integer cells (M, 3) labelled lab (M,): sqrt of the ratio of the two largest
    principal variances of its cells, >= 1 (1 for a round patch, about length / width for a band; 1 below 3 cells)."""
    n = np.bincount(lab, minlength=count + 1).astype(float)
    c = cells.astype(float)
    mean = np.stack([np.bincount(lab, c[:, d], count + 1) for d in range(3)], 1) / np.maximum(n, 1)[:, None]
    d = c - mean[lab]
    cov = np.stack([np.stack([np.bincount(lab, d[:, i] * d[:, j], count + 1) for j in range(3)], 1)
                    for i in range(3)], 1) / np.maximum(n, 1)[:, None, None]
    ev = np.linalg.eigvalsh(cov)  # ascending
    out = np.sqrt(ev[:, 2] / np.maximum(ev[:, 1], 1e-9))
    return np.where(n >= 3, np.maximum(out, 1.0), 1.0)


def _cube(r: int) -> np.ndarray:
    """Integer offsets (K, 3) of the (2r+1)^3 cube around a grid cell."""
    a = np.arange(-r, r + 1)
    return np.stack(np.meshgrid(a, a, a, indexing="ij"), -1).reshape(-1, 3)


def _flat(c: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """Flat (C-order) ids of integer cells (..., 3) in a grid of `shape` (3,); also maps offsets linearly."""
    return (c[..., 0] * shape[1] + c[..., 1]) * shape[2] + c[..., 2]


def _dilate(grid: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """3x3x3 binary dilation of a flat C-order bool grid (n,) of `shape` (3,) whose True cells lie at least one cell
    inside it (three 1D passes: the cube is the sum of three segments)."""
    for step in (int(shape[1] * shape[2]), int(shape[2]), 1):
        out = grid.copy()
        out[step:] |= grid[:-step]
        out[:-step] |= grid[step:]
        grid = out
    return grid


def _neighbours(cells: np.ndarray, r: int, shape: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat ids of the in-grid cells within Chebyshev distance r of cells (M, 3), and the row of `cells` each came from."""
    nb = (cells[:, None, :] + _cube(r)[None]).reshape(-1, 3)
    src = np.repeat(np.arange(len(cells)), (2 * r + 1) ** 3)
    ok = ((nb >= 0) & (nb < shape)).all(1)
    return _flat(nb[ok], shape), src[ok]


def _components(cells: np.ndarray, nb: np.ndarray, src: np.ndarray) -> tuple[np.ndarray, int]:
    """Labels (M,) in 1..K of the connected components of sorted flat cell ids (M,), given their in-grid neighbours
    `nb` and the cell each came from `src` (from _neighbours): the same patches as ndimage.label, 26-connected."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    j = np.minimum(np.searchsorted(cells, nb), len(cells) - 1)
    edge = cells[j] == nb
    m = len(cells)
    graph = coo_matrix((np.ones(int(edge.sum()), np.int8), (src[edge], j[edge])), shape=(m, m)).tocsr()
    count, lab = connected_components(graph, directed=False)
    return lab + 1, int(count)


@dataclass
class SurfaceField:
    """Bank points (B, 3) + unit normals (B, 3) at voxel `fine`; band cells: sorted keys (C,), nearest ids (C, k);
    coverage (B,): how many training scans have a point in each bank point's voxel of 3 fine voxels (None for
    fields saved before it existed)."""

    points: np.ndarray
    normals: np.ndarray
    fine: float
    cell: float
    keys: np.ndarray
    nearest: np.ndarray
    coverage: np.ndarray | None = None
    _cache: dict = field(default_factory=dict, init=False, repr=False)  # derived arrays, built on first use

    @classmethod
    def fit(cls, clouds: list[np.ndarray], fine: float, cell: float | None = None, band: int = 4,
            k: int = 6) -> SurfaceField:
        """Union of registered clouds [(N_i, 3)] at voxel `fine`, normals at 3 fine voxels, band of `band` cells."""
        pts, nrm = oriented_union(clouds, fine)
        cell = float(cell or 1.5 * fine)
        base = np.unique(np.floor(pts / cell).astype(np.int64), axis=0)
        r = np.arange(-band, band + 1)
        offs = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
        offs = offs[(offs**2).sum(1) <= band * band]
        cells = np.unique(_keys((base[:, None, :] + offs[None]).reshape(-1, 3)))
        ijk = _unkeys(cells)
        centres = ((ijk + 0.5) * cell).astype(np.float32)
        _, ids = xyz_index(pts.astype(np.float32)).search(centres, k=k)
        return cls(pts.astype(np.float32), nrm.astype(np.float32), float(fine), cell, cells, ids.astype(np.int32),
                   coverage(pts, clouds, 3.0 * fine))

    def _dense(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(origin (3,), shape (3,), row of each cell of the band's box or -1) when that box has <= DENSE_MAX cells."""
        if "table" not in self._cache:
            ijk = _unkeys(self.keys)
            lo = ijk.min(0) if len(ijk) else np.zeros(3, np.int64)
            shape = (ijk.max(0) - lo + 1) if len(ijk) else np.ones(3, np.int64)
            table = None
            if int(np.prod(shape)) <= DENSE_MAX:
                rows = np.full(int(np.prod(shape)), -1, dtype=np.int32)
                rows[_flat(ijk - lo, shape)] = np.arange(len(ijk), dtype=np.int32)
                table = (lo, shape, rows)
            self._cache["table"] = table
        return self._cache["table"]

    def _packed(self) -> np.ndarray:
        """Bank points and normals side by side (B, 8) float32 (xyz, normal, 2 unused): one gather for both."""
        if "packed" not in self._cache:
            pad = np.zeros((len(self.points), 2), np.float32)
            self._cache["packed"] = np.concatenate([self.points, self.normals, pad], 1).astype(np.float32)
        return self._cache["packed"]

    def _bank_cells(self, size: float, shift: float) -> tuple[np.ndarray, np.ndarray]:
        """Cells (C, 3) of edge `size` holding bank points, on the lattice through (-shift * size,) * 3, sorted (C
        order), and the row of each bank point's cell (B,)."""
        if ("cells", size, shift) not in self._cache:
            keys, row = np.unique(_keys(np.floor(self.points.astype(np.float64) / size + shift)), return_inverse=True)
            self._cache["cells", size, shift] = (_unkeys(keys), row.reshape(-1))
        return self._cache["cells", size, shift]

    def lookup(self, points: np.ndarray) -> np.ndarray:
        """Rows (N, k) of bank ids near each point (N, 3); -1 rows where the point lies outside the band."""
        ijk = np.floor(np.asarray(points, dtype=np.float64) / self.cell).astype(np.int64)
        dense = self._dense()
        if dense is not None:  # a table over the band's box: one indexing instead of a binary search
            lo, shape, rows = dense
            c = ijk - lo
            inside = ((c >= 0) & (c < shape)).all(1)
            pos = np.full(len(c), -1, dtype=np.int64)
            pos[inside] = np.take(rows, _flat(c[inside], shape))
            hit = pos >= 0
        else:
            q = _keys(ijk)
            pos = np.minimum(np.searchsorted(self.keys, q), len(self.keys) - 1)
            hit = self.keys[pos] == q
        out = np.full((len(ijk), self.nearest.shape[1]), -1, dtype=np.int32)
        out[hit] = np.take(self.nearest, pos[hit], axis=0)
        return out

    def scan_direction(self, ids: np.ndarray, agree: float = 0.3) -> np.ndarray | None:
        """Unit direction (3,) towards a one-view scan's scanner from its points' bank ids (N, k): the mean outward
        normal of their nearest bank points, or None when those normals do not agree (norm <= `agree`: a cloud
        seen from all round, or no point inside the band)."""
        hit = ids[:, 0] >= 0
        return _mean_direction(np.take(self.normals, ids[hit, 0], axis=0), agree) if hit.any() else None

    def deviation(self, points: np.ndarray, gate: float = 2.0, facing_min: float = 0.0, signed: bool = False,
                  single: float = 1.0, normals: np.ndarray | None = None, agree: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Per point (N, 3): deviation (N,) in fine voxels (0 where unseen or outside the band; signed: + outside
        the normal surface) and its bank ids (N, k). The plane of the closest of the k bank points counts; where
        only one training scan saw the nearest bank point, the deviation is multiplied by `single`. With the
        points' unit normals (N, 3) (either sign) and `agree` > 0, only bank points whose normal makes |cosine| >
        `agree` with the point's count: a sheet at a steep angle to the scan's surface is other surface (an edge
        of what the training scans saw), not the surface this point should lie on."""
        q = np.asarray(points, dtype=np.float32)
        ids = self.lookup(q)
        ok = ids[:, 0] >= 0
        if not ok.any():
            return np.zeros(len(q), dtype=np.float32), ids
        # every row is computed (rows outside the band read the last bank point) and masked at the end: cheaper
        # than selecting the rows inside
        bank = np.take(self._packed(), ids, axis=0)  # (N, k, 8): xyz, normal
        n = bank[..., 3:6]
        view = _mean_direction(n[ok, 0])  # as scan_direction(ids), from the normals already gathered
        # a one-view scan: bank surface facing away from its scanner is another sheet (the far side of a thin
        # part), not what this scan saw
        facing = (n @ view) > facing_min if view is not None else np.ones(ids.shape, bool)
        diff = q[:, None, :] - bank[..., :3]
        normal = np.einsum("mkj,mkj->mk", diff, n)
        along2 = np.einsum("mkj,mkj->mk", diff, diff) - normal**2  # squared distance along the surface
        good = facing & (along2 <= (gate * self.fine) ** 2)
        if normals is not None and agree > 0:
            good &= np.abs(np.einsum("mkj,mj->mk", n, np.asarray(normals, np.float32))) > agree
        j = np.argmin(np.where(good, np.abs(normal), np.inf), axis=1)
        d = np.take_along_axis(normal, j[:, None], 1)[:, 0] / self.fine  # signed: + outside the normal surface
        dev = np.where(ok & good.any(1), d if signed else np.abs(d), 0.0).astype(np.float32)
        if single != 1.0 and self.coverage is not None:
            dev *= np.where(np.take(self.coverage, ids[:, 0]) >= 2, 1.0, single).astype(np.float32)
        return dev, ids

    def holes(self, points: np.ndarray, ids: np.ndarray, size: float = 1.5, enclosed: float = 0.8,
              facing: float = 0.3, reach: int = 6, by_shape: bool = False) -> tuple[np.ndarray, float]:
        """Holes in a one-view scan: points (N, 3) and their bank ids (N, k) from deviation() -> per-point score (N,)
        and object score: the area, in cells of `size` fine voxels, of the largest hole within `reach` cells of the
        point / anywhere, each the mean over two lattices of cells half a cell apart (on one lattice, where its
        cell edges fall moved the bunny's object AUROC by +-0.015).

        A cell is missing where bank surface faces this scan's scanner but no scan point lies in it or next to it;
        a connected patch of missing cells is a hole when at least `enclosed` of the surface cells around it are
        covered by the scan (a scan border is bordered by bank surface the scan did not see instead). Bank surface
        faces the scanner where its normal's cosine with the view direction exceeds `facing`. With `by_shape` a
        hole's area is divided by its elongation (_elongation): a round hole keeps its area, a band of missing cells
        (a gap between a scanner's stripes) counts about its width squared.
        Cells are addressed in a dense grid, but labelling and dilations work on the few cells that matter.
        """
        q = np.asarray(points, dtype=np.float64)
        view = self.scan_direction(ids)
        if view is None:  # not a one-view scan: no scanner direction to reason with
            return np.zeros(len(q), dtype=np.float32), 0.0
        faces = (self.normals @ view.astype(np.float32)) > facing  # bank surface this scan's scanner looks at
        # the grid spans the points inside the field's band only: a stray point far away would blow up its box, and
        # points beyond the band are too far from the bank to cover any of its cells
        band = ids[:, 0] >= 0
        runs = [self._holes_on(q, band, faces, size * self.fine, shift, enclosed, reach, by_shape) for shift in (0.0, 0.5)]
        return (runs[0][0] + runs[1][0]) / 2, (runs[0][1] + runs[1][1]) / 2

    def _holes_on(self, q: np.ndarray, band: np.ndarray, faces: np.ndarray, h: float, shift: float, enclosed: float,
                  reach: int, by_shape: bool) -> tuple[np.ndarray, float]:
        """holes() on the lattice of cells of edge h through (-shift * h,) * 3, given which points (N,) lie inside the
        field's band and which bank points (B,) face the scanner."""
        out = np.zeros(len(q), dtype=np.float32)
        qg = np.floor(q / h + shift).astype(np.int64)
        lo, hi = bounds(qg[band])
        lo = lo - 3
        shape = hi + 4 - lo
        n = int(np.prod(shape))
        cells, row = self._bank_cells(h, shift)
        cells = cells - lo
        inb = ((cells >= 0) & (cells < shape)).all(1)
        cell_faces = np.zeros(len(cells), bool)
        cell_faces[row[faces]] = True
        bflat = _flat(cells[inb], shape)  # sorted: the cached cells are
        bank = np.zeros(n, bool)
        bank[bflat] = True
        qcell = qg - lo
        ingrid = ((qcell >= 0) & (qcell < shape)).all(1)
        qflat = _flat(qcell[ingrid], shape)
        seen = np.zeros(n, bool)  # scan cells dilated by one: the band's lie >= 3 cells inside the grid
        seen[_flat(qcell[band], shape)] = True
        seen = _dilate(seen, shape)
        facing_cells = bflat[cell_faces[inb]]
        miss = facing_cells[~seen[facing_cells]]
        if miss.size == 0:
            return out, 0.0
        missing = np.zeros(n, bool)
        missing[miss] = True
        mcell = np.stack(np.unravel_index(miss, tuple(shape)), 1)
        nb, src = _neighbours(mcell, 1, shape)
        lab, count = _components(miss, nb, src)  # labels 1..count of the 26-connected patches of missing cells
        near = np.zeros(n, np.int32)  # the largest label next to each cell (a 3x3x3 grey dilation of the labels)
        np.maximum.at(near, nb, lab[src])
        cand = np.unique(nb)
        shell = cand[~missing[cand] & (bank[cand] | seen[cand])]
        tot = np.bincount(near[shell], minlength=count + 1)
        full = np.bincount(near[shell], weights=seen[shell].astype(float), minlength=count + 1)
        area = np.bincount(lab, minlength=count + 1).astype(float)
        area[(full < enclosed * tot) | (tot == 0)] = 0.0
        area[0] = 0.0
        if by_shape and area.any():
            area = area / _elongation(mcell, lab, count)
        if not area.any():
            return out, 0.0
        hole = area[lab] > 0
        nb, src = _neighbours(mcell[hole], reach, shape)
        grown = np.zeros(n, np.float32)  # largest hole area within `reach` cells (a grey dilation)
        np.maximum.at(grown, nb, area[lab[hole]][src])
        out[ingrid] = grown[qflat]
        return out, float(area.max())

    def save(self, directory: str | Path) -> Path:
        """Write field.npz into directory."""
        p = Path(directory) / "field.npz"
        extra = {} if self.coverage is None else {"coverage": self.coverage}
        np.savez(p, points=self.points, normals=self.normals, fine=np.float64(self.fine), cell=np.float64(self.cell),
                 keys=self.keys, nearest=self.nearest, **extra)
        return p

    @classmethod
    def load(cls, directory: str | Path) -> SurfaceField:
        """Read field.npz written by save(); a missing or corrupt file is a ModelError."""
        p = Path(directory) / "field.npz"
        try:
            with np.load(p, allow_pickle=False) as z:
                cov = z["coverage"] if "coverage" in z.files else None
                field = cls(z["points"], z["normals"], float(z["fine"]), float(z["cell"]), z["keys"], z["nearest"], cov)
        except (OSError, KeyError, ValueError) as e:
            raise ModelError(f"{p} is missing or corrupt ({e})", "refit the model") from None
        if field.coverage is not None and len(field.coverage) != len(field.points):
            raise ModelError(f"{p}: coverage and bank points disagree", "refit the model")
        return field
