"""Gaussian head (Rippel et al. 2020; PaDiM-like per location): Ledoit-Wolf covariance, Mahalanobis distance."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from oddeye.core.errors import InputError, ModelError
from oddeye.image.base import FeatureMapHead


def ledoit_wolf(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batched Ledoit-Wolf estimate for x (L, N, D): (mean (L, D), shrunk covariance (L, D, D), shrinkage (L,))."""
    x = x.double()
    _, n, p = x.shape
    mu = x.mean(dim=1)
    xc = x - mu[:, None, :]
    emp = xc.transpose(1, 2) @ xc / n  # (L, D, D)
    x2 = xc * xc
    trace_mean = x2.sum(dim=(1, 2)) / (n * p)  # mu of sklearn: trace(emp) / p
    beta_ = (x2.transpose(1, 2) @ x2).sum(dim=(1, 2))
    delta_ = (emp * emp).sum(dim=(1, 2))
    beta = (beta_ / n - delta_) / (p * n)
    delta = (delta_ - 2 * trace_mean * emp.diagonal(dim1=1, dim2=2).sum(1) + p * trace_mean**2) / p
    beta = torch.minimum(beta, delta)
    shrink = torch.where(delta > 0, beta / delta.clamp_min(1e-300), torch.zeros_like(delta))
    eye = torch.eye(p, dtype=x.dtype)
    cov = (1 - shrink)[:, None, None] * emp + (shrink * trace_mean)[:, None, None] * eye
    return mu, cov, shrink


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

    def __init__(self, mode: str = "local", extractor: dict[str, Any] | None = None, batch_size: int = 16,
                 seed: int = 0, device: str = "cpu", sigma: float = 4.0, border: int = 0,
                 score_sigma: float = 1.0, exposure_gains: Sequence[float] = ()) -> None:
        super().__init__(extractor=extractor, batch_size=batch_size, seed=seed, device=device, sigma=sigma,
                         border=border, score_sigma=score_sigma, exposure_gains=exposure_gains)
        if mode not in ("local", "global"):
            raise InputError(f"mode={mode!r}: use 'local' (per location) or 'global'")
        self.mode = mode
        self.mean: torch.Tensor | None = None  # (L, D); L = h*w (local) or 1 (global)
        self.prec: torch.Tensor | None = None  # (L, D, D)
        self.grid: tuple[int, int] | None = None
        self.shrinkage = 0.0

    def _fit_features(self, feats: torch.Tensor) -> None:
        n, d, h, w = feats.shape
        if self.mode == "local":
            if n < 2:
                raise InputError("the Gaussian head (local) needs at least 2 training images", "add normal images")
            x = feats.permute(2, 3, 0, 1).reshape(h * w, n, d)  # (L, N, D)
        else:
            x = feats.permute(0, 2, 3, 1).reshape(1, -1, d)
            if x.shape[1] > 200_000:  # a seeded subsample estimates one Gaussian just as well
                g = torch.Generator().manual_seed(self.seed)
                x = x[:, torch.randperm(x.shape[1], generator=g)[:200_000]]
        means, precs, shr = [], [], []
        # a small ridge (relative to the mean feature variance) keeps constant locations invertible
        ridge = 1e-3 * float(x.double().var(dim=1).mean()) + 1e-8
        eye = torch.eye(d, dtype=torch.float64)
        for s in range(0, x.shape[0], 64):  # chunks of locations bound the (chunk, D, D) float64 memory
            mu, cov, sh = ledoit_wolf(x[s:s + 64])
            means.append(mu.float())
            chol = torch.linalg.cholesky(cov + ridge * eye)  # SPD; batched LU inverse trips an MKL bug here
            precs.append(torch.cholesky_inverse(chol).float())
            shr.append(sh)
        self.mean, self.prec = torch.cat(means), torch.cat(precs)
        self.shrinkage = float(torch.cat(shr).mean())
        self.grid = (h, w)

    def _patch_scores(self, feats: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        if self.mean is None or self.prec is None:
            raise ModelError("the Gaussian head is not fitted", "call fit() or load a fitted model folder")
        b, d, h, w = feats.shape
        if d != self.mean.shape[1]:
            raise InputError(f"features have dimension {d} but the Gaussian model has dimension {self.mean.shape[1]}",
                             "use the extractor (backbone, layers) the model was fitted with")
        if self.mode == "local" and (h, w) != self.grid:
            raise InputError(f"feature grid {h}x{w} differs from the fitted grid {self.grid}", "use the same image_size")
        x = feats.permute(0, 2, 3, 1).reshape(b, h * w, d)
        with torch.inference_mode():
            if self.mode == "local":
                dist = mahalanobis(x, self.mean, self.prec)
            else:
                dist = mahalanobis(x.reshape(b * h * w, 1, d), self.mean, self.prec).reshape(b, h * w)
        pmap = dist.reshape(b, h, w).numpy()
        return pmap, self.interior(self.smoothed(pmap)).reshape(b, -1).max(axis=1).astype(np.float64)

    def _state(self) -> dict[str, Any]:
        return {"mode": self.mode, "grid": list(self.grid) if self.grid else None, "shrinkage": self.shrinkage,
                "dim": 0 if self.mean is None else int(self.mean.shape[1])}

    def _save_arrays(self, directory: Path) -> None:
        if self.mean is None or self.prec is None:
            raise ModelError("cannot save an unfitted Gaussian head", "call fit() first")
        np.savez(directory / "gaussian.npz", mean=self.mean.numpy(), prec=self.prec.numpy())

    def _load_arrays(self, directory: Path, doc: dict[str, Any]) -> None:
        self.mode = doc.get("mode", "local")
        self.grid = tuple(doc["grid"]) if doc.get("grid") else None
        self.shrinkage = float(doc.get("shrinkage", 0.0))
        try:
            with np.load(directory / "gaussian.npz") as z:
                self.mean, self.prec = torch.from_numpy(z["mean"]), torch.from_numpy(z["prec"])
        except (OSError, ValueError, KeyError) as e:
            raise ModelError(f"{directory / 'gaussian.npz'} is missing or corrupt ({e})", "refit the model") from None
