"""Gaussian head (Rippel et al. 2020; PaDiM-like per location): Ledoit-Wolf covariance, Mahalanobis distance."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from oddeye.core.errors import InputError, ModelError
from oddeye.image.base import FeatureMapHead
from oddeye.image.common import REFIT
from oddeye.image.config import GaussianConfig

GLOBAL_SAMPLE = 200_000  # patches that estimate the one Gaussian of global mode


class MomentSums:
    """Running sums of L sets of D-dim samples, enough for each set's mean and Ledoit-Wolf covariance; samples come
    in batches (exposure passes) and are not kept. Sums are taken about the first batch's mean (numerical safety)."""

    def __init__(self) -> None:
        self.n = 0
        self.shift: torch.Tensor | None = None  # (L, D) float64
        self.s1: torch.Tensor | None = None  # (L, D): sum of y = x - shift
        self.s2: torch.Tensor | None = None  # (L, D, D): sum of y y^T
        self.t: torch.Tensor | None = None  # (L, D): sum of |y|^2 y
        self.q: torch.Tensor | None = None  # (L,): sum of |y|^4

    def add(self, x: torch.Tensor, chunk: int = 64) -> MomentSums:
        """Add samples x (L, N, D); locations go in chunks of `chunk` to bound the float64 copies."""
        big_l, n, d = x.shape
        if self.shift is None:
            self.shift = x.double().mean(dim=1)
            self.s1, self.t = torch.zeros(big_l, d, dtype=torch.float64), torch.zeros(big_l, d, dtype=torch.float64)
            self.s2 = torch.zeros(big_l, d, d, dtype=torch.float64)
            self.q = torch.zeros(big_l, dtype=torch.float64)
        elif (big_l, d) != tuple(self.shift.shape):
            raise InputError(f"samples of shape {tuple(x.shape)} do not match the earlier {tuple(self.shift.shape)}")
        for s in range(0, big_l, chunk):
            y = x[s:s + chunk].double() - self.shift[s:s + chunk, None, :]
            sq = y.pow(2).sum(-1)  # (l, N)
            self.s1[s:s + chunk] += y.sum(1)
            self.s2[s:s + chunk] += y.transpose(1, 2) @ y
            self.t[s:s + chunk] += (sq[:, :, None] * y).sum(1)
            self.q[s:s + chunk] += sq.pow(2).sum(1)
        self.n += n
        return self

    def ledoit_wolf(self, sl: slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mean (l, D), shrunk covariance (l, D, D), shrinkage (l,)) of the locations in `sl`, as sklearn's
        ledoit_wolf on all samples added."""
        if self.shift is None or self.n == 0:
            raise InputError("no samples were added")
        n, my = self.n, self.s1[sl] / self.n  # mean of y
        s2, p = self.s2[sl], self.s2.shape[-1]
        emp = s2 / n - my[:, :, None] * my[:, None, :]
        trace = emp.diagonal(dim1=1, dim2=2).sum(1)
        trace_mean = trace / p
        # sum_k |y_k - my|^4 from the running sums
        m2 = my.pow(2).sum(1)
        ymy = (self.s1[sl] * my).sum(1)  # sum_k y_k . my
        beta_ = (self.q[sl] + 4 * (my[:, None, :] @ s2 @ my[:, :, None])[:, 0, 0] + n * m2**2
                 - 4 * (self.t[sl] * my).sum(1) + 2 * m2 * s2.diagonal(dim1=1, dim2=2).sum(1) - 4 * m2 * ymy)
        delta_ = (emp * emp).sum(dim=(1, 2))
        beta = (beta_ / n - delta_) / (p * n)
        delta = (delta_ - 2 * trace_mean * trace + p * trace_mean**2) / p
        beta = torch.minimum(beta, delta)
        shrink = torch.where(delta > 0, beta / delta.clamp_min(1e-300), torch.zeros_like(delta))
        eye = torch.eye(p, dtype=torch.float64)
        cov = (1 - shrink)[:, None, None] * emp + (shrink * trace_mean)[:, None, None] * eye
        return my + self.shift[sl], cov, shrink

    def variance(self) -> torch.Tensor:
        """Unbiased per-dimension variance (L, D) of all samples added."""
        if self.s2 is None or self.s1 is None or self.n < 2:
            raise InputError("the variance needs at least 2 samples")
        my = self.s1 / self.n
        return (self.s2.diagonal(dim1=1, dim2=2) / self.n - my.pow(2)) * self.n / (self.n - 1)


def ledoit_wolf(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batched Ledoit-Wolf estimate for x (L, N, D): (mean (L, D), shrunk covariance (L, D, D), shrinkage (L,))."""
    return MomentSums().add(x).ledoit_wolf()


def mahalanobis(x: torch.Tensor, mu: torch.Tensor, prec: torch.Tensor) -> torch.Tensor:
    """Distances (B, L) of x (B, L, D) to Gaussians mean (L, D), precision (L, D, D)."""
    d = (x.float() - mu[None].float()).transpose(0, 1)  # (L, B, D)
    m = (torch.bmm(d, prec.float()) * d).sum(-1).transpose(0, 1)
    return m.clamp_min(0).sqrt()


class GaussianHead(FeatureMapHead):
    """One multivariate Gaussian per feature-map location ("local", PaDiM-like) or one for all ("global").

    Local: patch score = Mahalanobis distance to its location's Gaussian; image score = max of the smoothed map.
    Global (Rippel et al.): one Gaussian of all normal patch features; patch score = Mahalanobis to it.
    """

    name = "gaussian"
    what = "Mahalanobis distance"

    config_class = GaussianConfig
    config: GaussianConfig

    def __init__(self, config: GaussianConfig | None = None, *, device: str = "cpu", **overrides: Any) -> None:
        super().__init__(config, device=device, **overrides)
        self.mean: torch.Tensor | None = None  # (L, D); L = h*w (local) or 1 (global)
        self.prec: torch.Tensor | None = None  # (L, D, D)
        self.grid: tuple[int, int] | None = None
        self.shrinkage = 0.0

    def _fit_passes(self, passes: Iterator[torch.Tensor]) -> None:
        """Local: running sums per location, one exposure pass in memory at a time. Global: each pass gives its
        share of a seeded 200,000-patch sample."""
        stats, pooled, grid = MomentSums(), [], (0, 0)
        local = self.config.mode == "local"
        share = max(1, GLOBAL_SAMPLE // self.n_passes())
        g = torch.Generator().manual_seed(self.config.seed)
        for feats in passes:
            n, d, h, w = feats.shape
            grid = (h, w)
            if local:
                stats.add(feats.permute(2, 3, 0, 1).reshape(h * w, n, d))  # (L, N, D)
                continue
            x = feats.permute(0, 2, 3, 1).reshape(-1, d)
            pooled.append(x[torch.randperm(len(x), generator=g)[:share]] if len(x) > share else x)
        if not local:
            stats.add(torch.cat(pooled)[None])
        elif stats.n < 2:
            raise InputError("the Gaussian head (local) needs at least 2 training images", "add normal images")
        self._fit_stats(stats, grid)

    def _fit_stats(self, stats: MomentSums, grid: tuple[int, int]) -> None:
        """Means and precisions (Ledoit-Wolf, plus a small ridge) of every location from its running sums."""
        assert stats.s2 is not None
        d = stats.s2.shape[-1]
        # a small ridge (relative to the mean feature variance) keeps constant locations invertible
        ridge = 1e-3 * float(stats.variance().mean()) + 1e-8
        eye = torch.eye(d, dtype=torch.float64)
        means, precs, shr = [], [], []
        for s in range(0, stats.s2.shape[0], 64):  # chunks of locations bound the (chunk, D, D) float64 memory
            mu, cov, sh = stats.ledoit_wolf(slice(s, s + 64))
            means.append(mu.float())
            chol = torch.linalg.cholesky(cov + ridge * eye)  # SPD; batched LU inverse trips an MKL bug here
            precs.append(torch.cholesky_inverse(chol).float())
            shr.append(sh)
        self.mean, self.prec = torch.cat(means), torch.cat(precs)
        self.shrinkage = float(torch.cat(shr).mean())
        self.grid = grid

    def _patch_scores(self, feats: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        if self.mean is None or self.prec is None:
            raise ModelError("the Gaussian head is not fitted", "call fit() or load a fitted model folder")
        b, d, h, w = feats.shape
        if d != self.mean.shape[1]:
            raise InputError(f"features have dimension {d} but the Gaussian model has dimension {self.mean.shape[1]}",
                             "use the extractor (backbone, layers) the model was fitted with")
        local = self.config.mode == "local"
        if local and (h, w) != self.grid:
            raise InputError(f"feature grid {h}x{w} differs from the fitted grid {self.grid}", "use the same image_size")
        x = feats.permute(0, 2, 3, 1).reshape(b, h * w, d)
        with torch.inference_mode():
            if local:
                dist = mahalanobis(x, self.mean, self.prec)
            else:
                dist = mahalanobis(x.reshape(b * h * w, 1, d), self.mean, self.prec).reshape(b, h * w)
        pmap = dist.reshape(b, h, w).numpy()
        return pmap, self.interior(self.smoothed(pmap)).reshape(b, -1).max(axis=1).astype(np.float64)

    def _state(self) -> dict[str, Any]:
        return {"grid": list(self.grid) if self.grid else None, "shrinkage": self.shrinkage,
                "dim": 0 if self.mean is None else int(self.mean.shape[1])}

    def _save_arrays(self, directory: Path) -> None:
        if self.mean is None or self.prec is None:
            raise ModelError("cannot save an unfitted Gaussian head", "call fit() first")
        np.savez(directory / "gaussian.npz", mean=self.mean.numpy(), prec=self.prec.numpy())

    def _load_arrays(self, directory: Path, doc: dict[str, Any]) -> None:
        self.grid = tuple(doc["grid"]) if doc.get("grid") else None
        self.shrinkage = float(doc.get("shrinkage", 0.0))
        try:
            with np.load(directory / "gaussian.npz") as z:
                self.mean, self.prec = torch.from_numpy(z["mean"]), torch.from_numpy(z["prec"])
        except (OSError, ValueError, KeyError) as e:
            raise ModelError(f"{directory / 'gaussian.npz'} is missing or corrupt ({e})", REFIT) from None
