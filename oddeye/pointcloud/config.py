"""PointCloudConfig: every setting of a PointCloudHead that changes its scores, defaults written once."""

from __future__ import annotations

from dataclasses import dataclass

from oddeye.core.headconfig import HeadConfig, param

LEGACY_CONFIG_FILE = "config.json"  # where model folders written before the config moved into the manifest kept it
# what a model saved before each of these options existed did (its saved settings lack the key): load() fills them
# in, so an old model scores as it did when fitted and its threshold stays valid
BEFORE_OPTION = {"surface_region": 0.0, "surface_single": 1.0, "hole_reach": 2, "feature_weight": 1.0,
                 "surface_agree": 0.0, "hole_shape": False}

# bunny-defects settings (`oddeye eval pointcloud`, benchmarks): the scans are registered, so xyz joins the features
# and the surface field with its holes applies (docs/pointcloud.md)
BUNNY_SETTINGS = {"position_weight": 4.0, "smooth_k": 3, "bank_max": 100000, "surface_weight": 8.0, "hole_weight": 0.3}


@dataclass
class PointCloudConfig(HeadConfig):
    """Voxels, FPFH, adapter, memory bank, surface field and holes of a PointCloudHead (docs/pointcloud.md)."""

    # local geometry (voxel sizes and radii fixed at fit time)
    voxel_size: float | None = param(None, gt=0, doc="voxel edge in the clouds' units (None: from target_points)")
    target_points: int = param(3000, ge=1, doc="voxels on the median training cloud when voxel_size is None")
    normal_radius: float = param(2.5, gt=0, doc="radius of the normal estimate, in voxels")
    max_nn_normal: int = param(20, ge=1, doc="neighbours at most in the normal estimate")
    radii: tuple[float, ...] = param((4.0,), gt=0, doc="FPFH radii, in voxels (33 features each)")
    max_nn_fpfh: int = param(30, ge=1, doc="neighbours at most in each FPFH")
    outliers: bool = param(False, doc="drop statistical outliers before fitting and scoring")
    plane: bool = param(False, doc="remove the dominant plane (a table) before fitting and scoring")
    position_weight: float = param(0.0, ge=0, doc="weight of xyz in the features, per voxel of offset; only for "
                                                  "clouds registered into one frame (0: off)")
    # LSFA-style feature adapter
    adapt: bool = param(True, doc="train the feature adapter on the normal clouds")
    adapt_steps: int = param(400, ge=1, doc="adapter training steps")
    keep_raw: bool = param(False, doc="with adapt: score on FPFH and adapted features side by side")
    # memory bank and kNN
    bank_max: int = param(20000, ge=1, doc="bank vectors kept (greedy coreset beyond)")
    k: int = param(1, ge=1, doc="nearest bank vectors averaged per voxel")
    smooth_k: int = param(6, ge=0, doc="voxel scores averaged over this many spatial neighbours (0 or 1: none)")
    topk: int = param(5, ge=1, doc="without the surface field: the object score is the mean of the top-k voxels")
    # surface field (registered clouds)
    surface_weight: float = param(0.0, ge=0, doc="weight of the deviation from the training surface; only for clouds "
                                                 "registered into one frame (0: off)")
    surface_voxel: float = param(0.25, gt=0, doc="fine voxel of the surface field, in voxels")
    surface_pool: float = param(6.0, gt=0, doc="deviations pooled over cells of this many fine voxels")
    surface_region: float = param(20.0, ge=0, doc="less their mean over cells of this many fine voxels (0: off)")
    surface_map_scales: tuple[float, ...] = param((1.0, 1.5, 2.0), ge=1, doc="the point map averages the pooling at "
                                                                             "these multiples of surface_pool")
    surface_single: float = param(0.25, ge=0, le=1, doc="weight of surface only one training scan saw")
    surface_agree: float = param(0.3, ge=0, le=1, doc="compare only with bank surface whose normal has |cosine| above "
                                                      "this with the point's")
    feature_weight: float = param(0.125, ge=0, doc="with the surface field: weight of the features' kNN score in the "
                                                   "point map")
    # holes (missing surface in one-view scans)
    hole_weight: float = param(0.0, ge=0, doc="with the surface field: weight of the largest hole's area (0: off)")
    hole_reach: int = param(6, ge=0, doc="a point carries the area of the largest hole within this many cells")
    hole_shape: bool = param(True, doc="divide a hole's area by its elongation (a band is a scanner's gap)")
    seed: int = param(0, ge=0, doc="seed of the adapter, the coreset and the calibration")
