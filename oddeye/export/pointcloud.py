"""Export of the point-cloud head's learned part: the feature adapter (an MLP from FPFH features to unit vectors).

FPFH stays outside the graph: it is a neighbourhood search over the cloud (open3d), not a fixed-size tensor function.
The manifest spells out how the features the graph takes are computed (voxel size, radii, scaling)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from oddeye.core.errors import ModelError

EXAMPLE_ROWS = 5


class AdapterGraph(nn.Module):
    """Raw FPFH features (M, D_in) float32 -> adapted, L2-normalised features (M, D_out) (Adapter.__call__)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net.eval()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(M, D_in) -> (M, D_out)."""
        return F.normalize(self.net(features), dim=1)


def adapter_graph(head: Any) -> tuple[nn.Module, dict[str, Any]]:
    """The export graph of a fitted point-cloud head's adapter and the manifest fields that describe it."""
    if head.adapter is None:
        raise ModelError("this point-cloud model has no learned adapter (fitted with --no-adapt): FPFH and the "
                         "memory bank are all it has, and FPFH stays outside a graph",
                         "refit with the adapter (`oddeye fit pointcloud`, adapt on) to export it")
    a, fp, c = head.adapter, head.fpfh, head.config
    fields = {
        "kind": "pointcloud",
        "inputs": [{"name": "features", "shape": ["points", a.dim_in], "dtype": "float32",
                    "preprocessing_hint": "FPFH per voxel, divided by 100 (see the manifest's preprocessing)"}],
        "preprocessing": {
            "outside_graph": "voxel down-sampling, normals and FPFH (open3d): "
                             "oddeye.pointcloud.features.raw_features(points, FeatureConfig(**fpfh))",
            "fpfh": fp.to_dict(),
            "scaling": "FPFH histograms divided by 100 (each block sums to 1), float32",
            "cloud": {"outliers": c.outliers, "plane": c.plane, "seed": c.seed}},
        "outputs": [{"name": "adapted", "shape": ["points", a.dim_out], "dtype": "float32",
                     "meaning": "adapted, L2-normalised features; the model scores "
                                + ("[FPFH, adapted] side by side" if c.keep_raw else "these")
                                + (f", with {c.position_weight:g} / voxel_size x xyz appended" if c.position_weight
                                   else "") + ", by kNN distance to its memory bank (not in the export)"}],
        "threshold": head.threshold,
        "notes": ["the memory bank, its kNN search, smoothing and the surface field stay with the model folder"],
    }
    return AdapterGraph(a.net), fields


def example_features(head: Any) -> torch.Tensor:
    """Random non-negative features (EXAMPLE_ROWS, D_in) float32 to trace and check the graph."""
    rng = np.random.default_rng(0)
    return torch.from_numpy(rng.random((EXAMPLE_ROWS, head.adapter.dim_in), dtype=np.float32))
