"""LSFA-style feature adaptation: a small MLP trained on normal clouds only, local + global InfoNCE.

Local objective: the same surface point seen in two augmented views of a cloud (jitter, small rotation,
resampling, so its voxel and its FPFH change) should map to the same adapted feature, other points of the
view to different ones (spatially close points are not used as negatives). Global objective: the pooled
descriptor of two views of the same cloud should agree, those of other clouds disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from oddeye.core.errors import ModelError
from oddeye.pointcloud.features import FeatureConfig, raw_features

if TYPE_CHECKING:
    from torch import nn

ADAPTER_FILE = "adapter.safetensors"


@dataclass
class ViewPair:
    """Raw features of two views of one cloud (Ma, D), (Mb, D) and matched rows ia, ib (P,) with xyz (P, 3)."""

    fa: np.ndarray
    fb: np.ndarray
    ia: np.ndarray
    ib: np.ndarray
    xyz: np.ndarray
    cloud: int


def _rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    """A random rotation (3, 3) about a random axis by at most max_deg degrees."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    a = np.deg2rad(rng.uniform(-max_deg, max_deg))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def augmented_view(points: np.ndarray, cfg: FeatureConfig, rng: np.random.Generator, keep: float = 0.85,
                   jitter: float = 0.05, max_deg: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """One view: resample, rotate, jitter, voxelize, FPFH -> (features (M, D), voxel centres in the ORIGINAL frame (M, 3))."""
    sel = rng.random(len(points)) < keep
    p = points[sel]
    r = _rotation(rng, max_deg)
    q = p @ r.T + rng.normal(scale=jitter * cfg.voxel_size, size=p.shape)
    vox, f = raw_features(q, cfg)
    m = len(vox.points)
    orig = np.stack([np.bincount(vox.inverse, p[:, d], m) for d in range(3)], axis=1)
    orig /= np.bincount(vox.inverse, minlength=m)[:, None]
    return f, orig


def make_view_pairs(clouds: list[np.ndarray], cfg: FeatureConfig, n_pairs: int = 4, seed: int = 0,
                    progress: bool = True) -> list[ViewPair]:
    """n_pairs pairs of augmented views per cloud, matched point to point (PatchIndex on xyz, within half a voxel)."""
    from tqdm.auto import tqdm

    from oddeye.retrieval.index import PatchIndex

    rng = np.random.default_rng(seed)
    pairs = []
    jobs = [(ci, j) for ci in range(len(clouds)) for j in range(n_pairs)]
    for ci, _ in tqdm(jobs, desc="adapter views", disable=not progress, leave=False):
        fa, xa = augmented_view(clouds[ci], cfg, rng)
        fb, xb = augmented_view(clouds[ci], cfg, rng)
        dist, ids = PatchIndex.build(xb.astype(np.float32), kind="flat", progress=False).search(xa.astype(np.float32), k=1)
        ok = dist[:, 0] < 0.5 * cfg.voxel_size
        ia = np.flatnonzero(ok)
        pairs.append(ViewPair(fa, fb, ia, ids[ok, 0], xa[ok], ci))
    return pairs


def build_mlp(dim_in: int, hidden: int = 128, dim_out: int = 64) -> nn.Sequential:
    """The adapter MLP dim_in -> hidden -> hidden -> dim_out (ReLU between); adapt() L2-normalises its outputs."""
    import torch.nn as nn

    return nn.Sequential(nn.Linear(dim_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, dim_out))


class Adapter:
    """A trained adapter: maps raw features (M, D) to adapted, L2-normalised features (M, dim_out) float32."""

    def __init__(self, net, dim_in: int, hidden: int, dim_out: int, info: dict | None = None) -> None:  # noqa: ANN001
        self.net = net.eval()
        self.dim_in, self.hidden, self.dim_out = dim_in, hidden, dim_out
        self.info = info or {}

    def __call__(self, feats: np.ndarray) -> np.ndarray:
        """Adapted features (M, dim_out) float32 of raw features (M, dim_in)."""
        import torch

        with torch.no_grad():
            z = self.net(torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32)))
            z = torch.nn.functional.normalize(z, dim=1)
        return z.numpy()

    def save(self, directory: str | Path) -> Path:
        """Write the weights (safetensors) with their shape in the metadata; return the file."""
        from safetensors.torch import save_file

        path = Path(directory) / ADAPTER_FILE
        meta = {"dim_in": str(self.dim_in), "hidden": str(self.hidden), "dim_out": str(self.dim_out)}
        save_file({k: v.contiguous() for k, v in self.net.state_dict().items()}, str(path), metadata=meta)
        return path

    @classmethod
    def load(cls, directory: str | Path) -> Adapter:
        """Read an adapter written by save(); a missing or corrupt file is a ModelError."""
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = Path(directory) / ADAPTER_FILE
        if not path.is_file():
            raise ModelError(f"{path} is missing", "refit the model with `oddeye fit pointcloud --adapt`")
        try:
            with safe_open(str(path), "pt") as f:
                meta = f.metadata()
            net = build_mlp(int(meta["dim_in"]), int(meta["hidden"]), int(meta["dim_out"]))
            net.load_state_dict(load_file(str(path)))
        except Exception as e:  # noqa: BLE001 - any failure here means the file is not ours
            raise ModelError(f"{path} is not a valid adapter ({type(e).__name__}: {e})", "refit the model") from None
        return cls(net, int(meta["dim_in"]), int(meta["hidden"]), int(meta["dim_out"]))


def _info_nce(za, zb, tau: float, neg_mask=None):  # noqa: ANN001, ANN202 - torch tensors
    """Symmetric InfoNCE of matched rows za, zb (B, d) (normalised); neg_mask (B, B) True = not a negative."""
    import torch
    import torch.nn.functional as F

    logits = za @ zb.T / tau
    if neg_mask is not None:
        logits = logits.masked_fill(neg_mask, -1e4)
    target = torch.arange(len(za))
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def train_adapter(clouds: list[np.ndarray], cfg: FeatureConfig, *, steps: int = 400, batch: int = 256,
                  n_pairs: int = 4, hidden: int = 128, dim_out: int = 64, tau: float = 0.1, global_weight: float = 0.5,
                  lr: float = 2e-3, seed: int = 0, progress: bool = True) -> Adapter:
    """Train the adapter on normal clouds (list of (N, 3)) only; seeded; a minute or two on CPU."""
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    pairs = make_view_pairs(clouds, cfg, n_pairs=n_pairs, seed=seed, progress=progress)
    pairs = [p for p in pairs if len(p.ia) >= 16]
    if not pairs:
        raise ModelError("the adapter found no matched points between views", "use larger clouds or --no-adapt")
    net = build_mlp(cfg.dim, hidden, dim_out)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    tens = [(torch.from_numpy(p.fa), torch.from_numpy(p.fb)) for p in pairs]
    n_clouds = len({p.cloud for p in pairs})
    close = 3.0 * cfg.voxel_size
    hist = []
    for _ in tqdm(range(steps), desc="adapter", disable=not progress, leave=False):
        pi = int(rng.integers(len(pairs)))
        p = pairs[pi]
        sel = rng.choice(len(p.ia), size=min(batch, len(p.ia)), replace=False)
        fa, fb = tens[pi]
        za = F.normalize(net(fa[p.ia[sel]]), dim=1)
        zb = F.normalize(net(fb[p.ib[sel]]), dim=1)
        xyz = torch.from_numpy(p.xyz[sel])
        near = torch.cdist(xyz, xyz) < close
        near.fill_diagonal_(False)
        loss = _info_nce(za, zb, tau, near)
        if global_weight > 0 and n_clouds > 1:
            # one view pair per cloud: pooled descriptors of the same cloud agree, of other clouds disagree
            by_cloud: dict[int, int] = {}
            for j in rng.permutation(len(pairs)):
                by_cloud.setdefault(pairs[j].cloud, int(j))
            ga, gb = [], []
            for j in by_cloud.values():  # pooled over a random 256 voxels of each view (cheap, still global)
                ta, tb = tens[j]
                ga.append(F.normalize(net(ta[torch.randint(len(ta), (256,))]), dim=1).mean(0))
                gb.append(F.normalize(net(tb[torch.randint(len(tb), (256,))]), dim=1).mean(0))
            loss = loss + global_weight * _info_nce(F.normalize(torch.stack(ga), dim=1),
                                                    F.normalize(torch.stack(gb), dim=1), tau)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        hist.append(float(loss.detach()))
    info = {"steps": steps, "pairs": len(pairs), "loss_first": float(np.mean(hist[:20])),
            "loss_last": float(np.mean(hist[-20:])), "seed": seed, "tau": tau, "global_weight": global_weight}
    return Adapter(net, cfg.dim, hidden, dim_out, info)
