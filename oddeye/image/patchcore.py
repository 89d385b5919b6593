"""PatchCore head (Roth et al. 2022): coreset memory bank of normal patch features, kNN patch scores."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from oddeye.core.errors import ModelError
from oddeye.image.base import FeatureMapHead
from oddeye.image.common import REFIT
from oddeye.image.config import PatchCoreConfig
from oddeye.image.conditioned import ConditionedBank, image_descriptors
from oddeye.retrieval.coreset import greedy_coreset
from oddeye.retrieval.index import PatchIndex


class PatchCoreHead(FeatureMapHead):
    """Memory bank = greedy coreset of normal patches in a PatchIndex; patch score = distance to the nearest.

    Image score = the largest patch score (after smoothing over `score_sigma` patches), re-weighted as PatchCore
    does with the `num_neighbors` bank neighbours of that patch's nearest bank entry; the map is upsampled and
    Gaussian-smoothed over `sigma` px.
    `position_weight` w > 0 appends w * (row, column), in patches, to every feature: a patch is then compared with
    normal patches found near the same place (for parts that are aligned in the image; 0 = anywhere).
    `retrieve` k > 0 replaces the global coreset bank with an image-conditioned one (`ConditionedBank`): each image
    is compared with `retrieve_patches` coreset patches (0: every `retrieve_stride`-th row and column) of each of
    its k nearest normal images; image score = the largest smoothed interior patch score (no re-weighting). For
    normal images that differ as a whole (exposure, type).
    """

    name = "patchcore"
    config_class = PatchCoreConfig
    config: PatchCoreConfig

    def __init__(self, config: PatchCoreConfig | None = None, *, device: str = "cpu", **overrides: Any) -> None:
        super().__init__(config, device=device, **overrides)
        self.bank: np.ndarray | None = None  # (M, D) float32
        self.index: PatchIndex | None = None
        self.conditioned: ConditionedBank | None = None

    def with_position(self, feats: torch.Tensor) -> torch.Tensor:
        """Features (B, D, h, w) -> (B, D + 2, h, w) with position_weight * (row, column) appended (unchanged if 0)."""
        weight = self.config.position_weight
        if weight <= 0:
            return feats
        b, _, h, w = feats.shape
        rows, cols = torch.meshgrid(torch.arange(h, dtype=feats.dtype), torch.arange(w, dtype=feats.dtype), indexing="ij")
        pos = torch.stack([rows, cols])[None].expand(b, 2, h, w) * weight
        return torch.cat([feats, pos.to(feats.device)], 1)

    def _fit_passes(self, passes: Iterator[torch.Tensor]) -> None:
        c = self.config
        if c.retrieve:
            self.conditioned = ConditionedBank(c.retrieve, c.retrieve_stride, c.border, c.retrieve_patches, c.seed)
            for feats in passes:  # one exposure pass at a time: only the kept patches stay in memory
                # images are retrieved by their features alone; patches are compared with their positions
                self.conditioned.add(self.with_position(feats), image_descriptors(feats, c.border))
            return
        # each exposure pass gives its share of the random pool and is dropped: one pass in memory at a time
        share = c.max_pool and max(1, c.max_pool // self.n_passes())
        rng = np.random.default_rng(c.seed)
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
        c = self.config
        count = max(1, int(round(c.coreset * n)))
        if c.max_bank:
            count = min(count, c.max_bank)
        ids = np.arange(len(x)) if count >= len(x) else greedy_coreset(x, count=count, seed=c.seed)
        self.bank = np.ascontiguousarray(x[np.sort(ids)])
        self.index = PatchIndex.build(self.bank, kind=c.index_kind, metric="l2", device="cpu")

    def _patch_scores(self, feats: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        if self.config.retrieve:
            if self.conditioned is None:
                raise ModelError("the PatchCore head is not fitted", "call fit() or load a fitted model folder")
            pmap = self.conditioned.distances(self.with_position(feats), image_descriptors(feats, self.config.border))
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
        k = min(self.config.num_neighbors, len(self.index))
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
        return "conditioned" if self.config.retrieve else str(self._state()["bank_index"])

    def _state(self) -> dict[str, Any]:
        state = {"bank_index": self.index.kind if self.index else self.config.index_kind,
                 "bank_size": 0 if self.bank is None else int(self.bank.shape[0]),
                 "dim": 0 if self.bank is None else int(self.bank.shape[1])}
        if self.conditioned is not None and self.conditioned.patches is not None:
            state.update(bank_size=self.conditioned.size, dim=int(self.conditioned.patches.shape[2]))
        return state

    def _save_arrays(self, directory: Path) -> None:
        if self.config.retrieve:
            if self.conditioned is None:
                raise ModelError("cannot save an unfitted PatchCore head", "call fit() first")
            self.conditioned.save(directory)
            return
        if self.index is None or self.bank is None:
            raise ModelError("cannot save an unfitted PatchCore head", "call fit() first")
        np.save(directory / "bank.npy", self.bank)
        self.index.save(directory / "index")

    def _load_arrays(self, directory: Path, doc: dict[str, Any]) -> None:
        c = self.config
        if c.retrieve:
            self.conditioned = ConditionedBank.load(directory, c.retrieve, c.retrieve_stride, c.border,
                                                    c.retrieve_patches)
            return
        try:
            self.bank = np.load(directory / "bank.npy")
        except (OSError, ValueError) as e:
            raise ModelError(f"{directory / 'bank.npy'} is missing or corrupt ({e})", REFIT) from None
        self.index = PatchIndex.load(directory / "index")
        if self.index.dim != self.bank.shape[1] or len(self.index) != self.bank.shape[0]:
            raise ModelError(f"{directory}: index and bank.npy disagree", REFIT)
        if doc.get("dim") and int(doc["dim"]) != self.bank.shape[1]:
            raise ModelError(f"{directory}: manifest dim {doc['dim']} but bank dim {self.bank.shape[1]}", REFIT)
