"""PatchCore head (Roth et al. 2022): coreset memory bank of normal patch features, kNN patch scores."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from oddeye.core.errors import InputError, ModelError, require_range
from oddeye.image.base import FeatureMapHead
from oddeye.image.conditioned import ConditionedBank, image_descriptors
from oddeye.retrieval.coreset import greedy_coreset
from oddeye.retrieval.index import PatchIndex


class PatchCoreHead(FeatureMapHead):
    """Memory bank = greedy coreset of normal patches in a PatchIndex; patch score = distance to the nearest.

    Image score = the largest patch score (after smoothing over `score_sigma` patches), re-weighted as PatchCore
    does with the `num_neighbors` bank neighbours of that patch's nearest bank entry; the map is upsampled and
    Gaussian-smoothed (sigma 4).
    `position_weight` w > 0 appends w * (row, column), in patches, to every feature: a patch is then compared with
    normal patches found near the same place (for parts that are aligned in the image; 0 = anywhere).
    `retrieve` k > 0 replaces the global coreset bank with an image-conditioned one (`ConditionedBank`): each image
    is compared with `retrieve_patches` coreset patches (0: every `retrieve_stride`-th row and column) of each of
    its k nearest normal images; image score = the largest smoothed interior patch score (no re-weighting). For
    normal images that differ as a whole (exposure, type).
    """

    name = "patchcore"

    def __init__(self, coreset: float = 0.1, max_bank: int | None = None, num_neighbors: int = 9,
                 index_kind: str = "auto", max_pool: int | None = 200_000, extractor: dict[str, Any] | None = None,
                 batch_size: int = 16, seed: int = 0, device: str = "cpu", sigma: float = 4.0, border: int = 0,
                 score_sigma: float = 1.0, position_weight: float = 0.0, exposure_gains: Sequence[float] = (),
                 retrieve: int = 0, retrieve_stride: int = 2, retrieve_patches: int = 64) -> None:
        super().__init__(extractor=extractor, batch_size=batch_size, seed=seed, device=device, sigma=sigma,
                         border=border, score_sigma=score_sigma, exposure_gains=exposure_gains)
        require_range(coreset, "coreset", 1e-6, 1.0)
        if position_weight < 0:
            raise InputError(f"position_weight must be >= 0, got {position_weight}")
        self.position_weight = float(position_weight)
        if max_bank is not None and max_bank < 1:
            raise InputError(f"max_bank must be >= 1, got {max_bank}")
        self.coreset = float(coreset)
        self.max_bank = max_bank
        self.num_neighbors = int(num_neighbors)
        self.index_kind = index_kind
        self.max_pool = max_pool
        self.bank: np.ndarray | None = None  # (M, D) float32
        self.index: PatchIndex | None = None
        if retrieve < 0 or retrieve_stride < 1 or retrieve_patches < 0:
            raise InputError("retrieve and retrieve_patches must be >= 0 and retrieve_stride >= 1, got "
                             f"{retrieve}, {retrieve_patches}, {retrieve_stride}")
        self.retrieve, self.retrieve_stride = int(retrieve), int(retrieve_stride)
        self.retrieve_patches = int(retrieve_patches)
        self.conditioned: ConditionedBank | None = None

    def with_position(self, feats: torch.Tensor) -> torch.Tensor:
        """Features (B, D, h, w) -> (B, D + 2, h, w) with position_weight * (row, column) appended (unchanged if 0)."""
        if self.position_weight <= 0:
            return feats
        b, _, h, w = feats.shape
        rows, cols = torch.meshgrid(torch.arange(h, dtype=feats.dtype), torch.arange(w, dtype=feats.dtype), indexing="ij")
        pos = torch.stack([rows, cols])[None].expand(b, 2, h, w) * self.position_weight
        return torch.cat([feats, pos.to(feats.device)], 1)

    def _fit_passes(self, passes: Iterator[torch.Tensor]) -> None:
        if self.retrieve:
            self.conditioned = ConditionedBank(self.retrieve, self.retrieve_stride, self.border, self.retrieve_patches,
                                               self.seed)
            for feats in passes:  # one exposure pass at a time: only the kept patches stay in memory
                # images are retrieved by their features alone; patches are compared with their positions
                self.conditioned.add(self.with_position(feats), image_descriptors(feats, self.border))
            return
        # each exposure pass gives its share of the random pool and is dropped: one pass in memory at a time
        share = self.max_pool and max(1, self.max_pool // (1 + len(self.exposure_gains)))
        rng = np.random.default_rng(self.seed)
        parts, n = [], 0
        for feats in passes:
            feats = self.with_position(feats)
            x = feats.permute(0, 2, 3, 1).reshape(-1, feats.shape[1]).contiguous().numpy()
            n += x.shape[0]
            if share and x.shape[0] > share:  # a seeded random pool keeps greedy selection affordable
                x = x[np.sort(rng.choice(x.shape[0], size=share, replace=False))]
            parts.append(x)
        self._build_bank(np.concatenate(parts) if len(parts) > 1 else parts[0], n)

    def _build_bank(self, x: np.ndarray, n: int) -> None:
        """Bank = greedy coreset of the pooled patches x (M, D), round(coreset * n) of them (n = patches before
        pooling), at most max_bank; then its PatchIndex."""
        count = max(1, int(round(self.coreset * n)))
        if self.max_bank:
            count = min(count, self.max_bank)
        ids = np.arange(len(x)) if count >= len(x) else greedy_coreset(x, count=count, seed=self.seed)
        self.bank = np.ascontiguousarray(x[np.sort(ids)])
        self.index = PatchIndex.build(self.bank, kind=self.index_kind, metric="l2", device="cpu")

    def _patch_scores(self, feats: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        if self.retrieve:
            if self.conditioned is None:
                raise ModelError("the PatchCore head is not fitted", "call fit() or load a fitted model folder")
            pmap = self.conditioned.distances(self.with_position(feats), image_descriptors(feats, self.border))
            image = self.smoothed(self.interior(pmap)).reshape(len(pmap), -1).max(axis=1)
            return pmap, image.astype(np.float64)
        if self.index is None or self.bank is None:
            raise ModelError("the PatchCore head is not fitted", "call fit() or load a fitted model folder")
        feats = self.with_position(feats)
        b, d, h, w = feats.shape
        q = feats.permute(0, 2, 3, 1).reshape(-1, d).contiguous().numpy()
        dist, ids = self.index.search(q, k=1)
        pmap = dist[:, 0].reshape(b, h * w)
        nn = ids[:, 0].reshape(b, h * w)
        cells = np.arange(h * w).reshape(1, h, w)
        allowed = np.full(h * w, -np.inf, np.float32)  # the top patch is taken from the interior only
        allowed[self.interior(cells).ravel()] = 0.0
        smooth = self.smoothed(pmap.reshape(b, h, w)).reshape(b, h * w)
        top = (smooth + allowed).argmax(axis=1)
        s_star = smooth[np.arange(b), top]
        # PatchCore re-weighting: w = 1 - softmax(|m_test - m_j|)_0 over the support set of the nearest bank patch
        k = min(self.num_neighbors, len(self.index))
        m_star = self.bank[nn[np.arange(b), top]]
        _, support = self.index.search(m_star, k=k)
        q_star = q.reshape(b, h * w, d)[np.arange(b), top]
        dd = np.linalg.norm(self.bank[support] - q_star[:, None, :], axis=2).astype(np.float64)  # (b, k)
        dd -= dd.max(axis=1, keepdims=True)
        soft = np.exp(dd) / np.exp(dd).sum(axis=1, keepdims=True)
        weights = 1.0 - soft[:, 0]
        return pmap.reshape(b, h, w), (weights * s_star).astype(np.float64)

    @property
    def bank_size(self) -> int:
        """Number of normal patch vectors kept (coreset bank, or all kept patches of the conditioned bank)."""
        return int(self._state()["bank_size"])

    @property
    def bank_kind(self) -> str:
        """'conditioned' (image-conditioned bank) or the PatchIndex kind of the global bank."""
        return "conditioned" if self.retrieve else str(self._state()["index_kind"])

    def _state(self) -> dict[str, Any]:
        state = {"coreset": self.coreset, "max_bank": self.max_bank, "max_pool": self.max_pool,
                 "num_neighbors": self.num_neighbors, "position_weight": self.position_weight,
                 "index_kind": self.index.kind if self.index else self.index_kind,
                 "bank_size": 0 if self.bank is None else int(self.bank.shape[0]),
                 "dim": 0 if self.bank is None else int(self.bank.shape[1]),
                 "retrieve": self.retrieve, "retrieve_stride": self.retrieve_stride,
                 "retrieve_patches": self.retrieve_patches}
        if self.conditioned is not None and self.conditioned.patches is not None:
            state.update(bank_size=self.conditioned.size, dim=int(self.conditioned.patches.shape[2]))
        return state

    def _save_arrays(self, directory: Path) -> None:
        if self.retrieve:
            if self.conditioned is None:
                raise ModelError("cannot save an unfitted PatchCore head", "call fit() first")
            self.conditioned.save(directory)
            return
        if self.index is None or self.bank is None:
            raise ModelError("cannot save an unfitted PatchCore head", "call fit() first")
        np.save(directory / "bank.npy", self.bank)
        self.index.save(directory / "index")

    def _load_arrays(self, directory: Path, doc: dict[str, Any]) -> None:
        self.coreset = float(doc.get("coreset", 0.1))
        self.max_bank = doc.get("max_bank")
        self.max_pool = doc.get("max_pool")
        self.num_neighbors = int(doc.get("num_neighbors", 9))
        self.position_weight = float(doc.get("position_weight", 0.0))
        self.index_kind = doc.get("index_kind", "auto")
        self.retrieve, self.retrieve_stride = int(doc.get("retrieve", 0)), int(doc.get("retrieve_stride", 2))
        self.retrieve_patches = int(doc.get("retrieve_patches", 0))  # models saved before it kept strided patches
        self.bank, self.index, self.conditioned = None, None, None
        if self.retrieve:
            self.conditioned = ConditionedBank.load(directory, self.retrieve, self.retrieve_stride, self.border,
                                                    self.retrieve_patches)
            return
        try:
            self.bank = np.load(directory / "bank.npy")
        except (OSError, ValueError) as e:
            raise ModelError(f"{directory / 'bank.npy'} is missing or corrupt ({e})", "refit the model") from None
        self.index = PatchIndex.load(directory / "index")
        if self.index.dim != self.bank.shape[1] or len(self.index) != self.bank.shape[0]:
            raise ModelError(f"{directory}: index and bank.npy disagree", "refit the model")
        if doc.get("dim") and int(doc["dim"]) != self.bank.shape[1]:
            raise ModelError(f"{directory}: manifest dim {doc['dim']} but bank dim {self.bank.shape[1]}", "refit")
