"""Local geometric features: open3d normals and FPFH at one or more radii (multiples of the voxel size)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from oddeye.core.errors import InputError
from oddeye.pointcloud.preprocess import Voxelized, point_spacing, voxel_downsample

FPFH_DIM = 33


@dataclass
class FeatureConfig:
    """How raw features are computed; radii are multiples of voxel_size (absolute, fixed at fit time)."""

    voxel_size: float
    normal_radius: float = 2.5
    radii: tuple[float, ...] = (5.0,)
    max_nn_normal: int = 20
    max_nn_fpfh: int = 40
    extra: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        """Feature dimension: 33 per FPFH radius."""
        return FPFH_DIM * len(self.radii)

    def to_dict(self) -> dict:
        """Plain dict for a manifest."""
        d = asdict(self)
        d["radii"] = list(self.radii)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> FeatureConfig:
        """Inverse of to_dict."""
        d = dict(d)
        d["radii"] = tuple(d.get("radii", (5.0,)))
        return cls(**d)


def auto_voxel_size(clouds_points: list[np.ndarray], target_points: int = 3000) -> float:
    """A voxel size giving about `target_points` voxels on the median training cloud (surface scans: ~ area), and
    at least twice its point spacing: a cloud of fewer points than that would otherwise get a voxel per point
    and neighbourhoods (normals, FPFH, the surface field) of nothing."""
    if not clouds_points:
        raise InputError("auto_voxel_size needs at least one cloud")
    p = clouds_points[int(np.argsort([len(c) for c in clouds_points])[len(clouds_points) // 2])]
    diag = float(np.linalg.norm(p.max(axis=0) - p.min(axis=0)))
    vs = diag / 60.0
    for _ in range(12):  # the voxel count of a surface scales ~ 1 / vs^2: a few corrections converge
        m = len(voxel_downsample(p, vs).points)
        if abs(m - target_points) < 0.08 * target_points:
            break
        vs *= float(np.sqrt(m / target_points))
    return float(max(vs, 2.0 * point_spacing(p)))


def _o3d_cloud(points: np.ndarray):  # noqa: ANN202 - open3d type
    import open3d as o3d

    return o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.ascontiguousarray(points, dtype=np.float64)))


def estimate_normals(points: np.ndarray, radius: float, max_nn: int = 20) -> np.ndarray:
    """Unit normals (N, 3) by open3d (local PCA), oriented towards +z of the cloud's centre view."""
    import open3d as o3d

    pc = _o3d_cloud(points)
    pc.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=radius, max_nn=max_nn))
    return np.asarray(pc.normals)


def fpfh(points: np.ndarray, normals: np.ndarray, radii: list[float], max_nn: int = 40) -> np.ndarray:
    """FPFH (open3d) at each absolute radius, concatenated -> (N, 33 * len(radii)) float32."""
    import open3d as o3d

    pc = _o3d_cloud(points)
    pc.normals = o3d.utility.Vector3dVector(np.ascontiguousarray(normals, dtype=np.float64))
    out = []
    for r in radii:
        f = o3d.pipelines.registration.compute_fpfh_feature(pc, o3d.geometry.KDTreeSearchParamHybrid(radius=r, max_nn=max_nn))
        out.append(np.asarray(f.data, dtype=np.float32).T)
    return np.concatenate(out, axis=1)


def raw_features(points: np.ndarray, cfg: FeatureConfig) -> tuple[Voxelized, np.ndarray]:
    """Voxelize points (N, 3) at cfg.voxel_size and compute FPFH per voxel -> (voxels, feats (M, cfg.dim) float32).

    Features are scaled by 1/100 (FPFH histograms sum to 100 per block) so they are O(1) for the adapter. The
    voxels' unit normals (unoriented) are kept in `voxels.normals`.
    """
    vox = voxel_downsample(points, cfg.voxel_size)
    vs = cfg.voxel_size
    nrm = estimate_normals(vox.points, cfg.normal_radius * vs, cfg.max_nn_normal)
    feats = fpfh(vox.points, nrm, [r * vs for r in cfg.radii], cfg.max_nn_fpfh) / 100.0
    vox.normals = nrm.astype(np.float32)
    return vox, feats.astype(np.float32)
