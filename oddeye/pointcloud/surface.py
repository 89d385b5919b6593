"""Surface deviation for registered clouds: point-to-plane distance to the union of the normal training scans.

With all clouds in one frame, a dent, bulge, crack or blob moves the surface away from where every normal scan
put it, even when the defect is smaller than an FPFH voxel. The bank is the union of the training points at a
fine voxel (default half the FPFH voxel) with normals; a test voxel's deviation is the mean |(p - q) . n_q| over
its 3 nearest bank points q (in fine voxels), smoothed over 4 spatial neighbours, and 0 where the training scans
never saw the surface (nearest bank point over 2 fine voxels away). kNN through PatchIndex only:
an IVF index (nprobe 8) on xyz, which on bunny scans returned the same neighbours as flat search, ~15x faster.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from oddeye.core.errors import ModelError
from oddeye.pointcloud.features import estimate_normals
from oddeye.pointcloud.preprocess import Voxelized, voxel_downsample


def xyz_index(points: np.ndarray):  # noqa: ANN201 - PatchIndex
    """PatchIndex over xyz (N, 3) float32: IVF (about 40-100 points a list, nprobe 8) or flat when small."""
    from oddeye.retrieval.index import PatchIndex

    n = len(points)
    if n < 2000:
        return PatchIndex.build(points, kind="flat", progress=False)
    return PatchIndex.build(points, kind="ivf", nlist=int(min(256, n // 40)), nprobe=8, progress=False)


@dataclass
class SurfaceBank:
    """Normal surface: fine voxel centres (B, 3), unit normals (B, 3), the fine voxel size and an xyz PatchIndex."""

    points: np.ndarray
    normals: np.ndarray
    voxel_size: float
    index: object = None

    @classmethod
    def fit(cls, clouds: list[np.ndarray], voxel_size: float) -> SurfaceBank:
        """Union of registered training clouds [(N_i, 3)] voxelised at voxel_size, normals at 2.5 voxels."""
        pts = voxel_downsample(np.concatenate(clouds), voxel_size).points
        nrm = estimate_normals(pts, 2.5 * voxel_size, 30)
        return cls(pts.astype(np.float32), nrm.astype(np.float32), float(voxel_size))._build()

    def _build(self) -> SurfaceBank:
        """(Re)build the xyz index of the bank."""
        self.index = xyz_index(self.points)
        return self

    def deviation(self, points: np.ndarray, k: int = 3, smooth_k: int = 4, gate: float = 2.0
                  ) -> tuple[Voxelized, np.ndarray]:
        """Fine-voxelise points (N, 3) -> (voxels, deviation per voxel (M,) in fine voxel units, smoothed).

        Where the nearest bank point is over `gate` fine voxels away (after smoothing), no training scan saw that
        surface and the deviation is undefined there: it is set to 0 (FPFH still scores those voxels).
        """
        fv = voxel_downsample(points, self.voxel_size)
        q = fv.points.astype(np.float32)
        dist, ids = self.index.search(q, k=k)
        d = np.abs(np.einsum("mkj,mkj->mk", q[:, None, :] - self.points[ids], self.normals[ids])).mean(1)
        d, near = d / self.voxel_size, dist[:, 0] / self.voxel_size
        sk = min(smooth_k, len(q))
        if sk > 1:
            _, nb = xyz_index(q).search(q, k=sk)
            d, near = d[nb].mean(1), near[nb].mean(1)
        return fv, np.where(near > gate, 0.0, d).astype(np.float32)

    def save(self, directory: str | Path) -> Path:
        """Write surface.npz (points, normals, voxel size) into directory."""
        p = Path(directory) / "surface.npz"
        np.savez(p, points=self.points, normals=self.normals, voxel_size=np.float64(self.voxel_size))
        return p

    @classmethod
    def load(cls, directory: str | Path) -> SurfaceBank:
        """Read surface.npz written by save(); a missing or corrupt file is a ModelError."""
        p = Path(directory) / "surface.npz"
        try:
            with np.load(p, allow_pickle=False) as z:
                return cls(z["points"], z["normals"], float(z["voxel_size"]))._build()
        except (OSError, KeyError, ValueError) as e:
            raise ModelError(f"{p} is missing or corrupt ({e})", "refit the model") from None
