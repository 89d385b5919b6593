"""Zero-shot mutual scoring (MuSc-style, Li et al. 2024): test images score each other, no training needed.

Each patch of image i gets its nearest-neighbour distance to every OTHER image j of its group (one PatchIndex
per image); the patch score is a low percentile of those per-image minima. A normal patch finds a close match
in most images, a defect that is rare across the set finds none, so a low percentile keeps it high while
staying robust to the few other images that share a similar defect.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Self

import numpy as np
import torch
import torch.nn.functional as F

from oddeye.core.errors import InputError, ModelError, require_range
from oddeye.core.head import read_manifest, write_manifest
from oddeye.core.types import Result
from oddeye.image.base import DEFAULT_EXTRACTOR
from oddeye.image.common import as_items, build_result, extractor_from_config, progress, to_pixel_map
from oddeye.retrieval.index import PatchIndex

FORMAT_VERSION = 1


def mutual_scores(feats: torch.Tensor, n_refs: int = 0, percentile: float = 10.0) -> np.ndarray:
    """Patch scores (G, h, w) of the first G - n_refs images of feats (G, D, h, w) against all the others."""
    g, d, h, w = feats.shape
    n_test = g - n_refs
    x = feats.permute(0, 2, 3, 1).reshape(g, h * w, d).contiguous().numpy()
    q = x[:n_test].reshape(-1, d)
    mins = np.empty((n_test, g, h * w), dtype=np.float32)  # [i, j, patch of i] = min distance to image j
    for j in range(g):
        dist, _ = PatchIndex.build(x[j], kind="flat").search(q, k=1)
        mins[:, j, :] = dist[:, 0].reshape(n_test, h * w)
    for i in range(n_test):
        mins[i, i, :] = np.inf  # an image never matches itself
    others = np.sort(mins, axis=1)[:, : g - 1, :]  # drop the +inf self column
    return np.percentile(others, percentile, axis=1).reshape(n_test, h, w).astype(np.float32)


class ZeroShotHead:
    """Mutual scoring of a batch of unlabeled images in seeded groups; optional normal references from fit()."""

    name = "zero-shot"

    def __init__(self, group_size: int = 32, percentile: float = 10.0, pool: int = 2, max_refs: int = 8,
                 extractor: dict[str, Any] | None = None, batch_size: int = 16, seed: int = 0,
                 device: str = "cpu", sigma: float = 4.0, border: int = 0) -> None:
        if group_size < 2:
            raise InputError(f"group_size must be >= 2, got {group_size}")
        require_range(percentile, "percentile", 0.0, 100.0)
        if pool < 1:
            raise InputError(f"pool must be >= 1, got {pool}")
        self.extractor_cfg = {**DEFAULT_EXTRACTOR, **(extractor or {})}
        self.group_size, self.percentile, self.pool, self.max_refs = int(group_size), float(percentile), int(pool), int(max_refs)
        self.batch_size, self.seed, self.device, self.sigma = int(batch_size), int(seed), device, float(sigma)
        self.border = int(border)  # patches of the outer ring left out of image scores
        self.refs: torch.Tensor | None = None  # (R, D, h, w) features of known-normal images, optional
        self.threshold: float | None = None
        self._ext: Any = None

    @property
    def extractor(self) -> Any:
        """The patch feature extractor (built on first use)."""
        if self._ext is None:
            self._ext = extractor_from_config(self.extractor_cfg, device=self.device)
        return self._ext

    def _features(self, images: list[np.ndarray]) -> torch.Tensor:
        f = self.extractor.extract(images)
        return F.avg_pool2d(f, self.pool) if self.pool > 1 else f

    def fit(self, samples: Iterable[Any] = ()) -> Self:
        """Optional: keep up to `max_refs` known-normal images as extra comparison images (none are needed)."""
        items = as_items(list(samples))[: self.max_refs]
        self.refs = self._features([it.load() for it in items]) if items else None
        return self

    def score(self, samples: Iterable[Any], out: str | Path | None = None, keep_maps: bool = True) -> Result:
        """Score images against each other in seeded groups of `group_size`; threshold = median + 3 MAD of the batch."""
        items = as_items(samples)
        n_refs = 0 if self.refs is None else len(self.refs)
        if len(items) + n_refs < 2:
            raise InputError(f"zero-shot scoring needs at least 2 images, got {len(items)}",
                             "score a batch of images together (they are compared with each other)")
        order = np.random.default_rng(self.seed).permutation(len(items))
        n_groups = max(1, int(np.ceil(len(items) / self.group_size)))
        groups = [order[k::n_groups] for k in range(n_groups)]  # balanced sizes, none of a single image
        scores = np.zeros(len(items))
        maps: list[np.ndarray | None] = [None] * len(items)
        s = self.extractor.image_size
        for grp in progress(groups, len(groups), "zero-shot groups"):
            imgs = [items[i].load() for i in grp]
            feats = self._features(imgs)
            if n_refs:
                feats = torch.cat([feats, self.refs], dim=0)
            pm = mutual_scores(feats, n_refs=n_refs, percentile=self.percentile)
            for k, i in enumerate(grp):
                b = -(-self.border // self.pool)  # border is in patches of the unpooled grid
                b = b if min(pm.shape[1:]) > 2 * b else 0
                scores[i] = float(pm[k, b:pm.shape[1] - b, b:pm.shape[2] - b].max())
                maps[i] = to_pixel_map(pm[k], s, imgs[k].shape[:2], self.sigma) if (keep_maps or out) else None
        med = float(np.median(scores))
        mad = float(np.median(np.abs(scores - med))) * 1.4826
        threshold = med + 3 * mad if len(items) >= 8 else None
        res = build_result(self.name, items, None, scores, maps, threshold, None, out=out, what="mutual patch distance")
        res.meta = {"extractor": self.extractor_cfg, "group_size": self.group_size, "percentile": self.percentile,
                    "threshold_rule": "median + 3 MAD of this batch's scores"}
        if not keep_maps:
            for sc in res.scores:
                sc.maps.clear()
        return res

    def save(self, directory: str | Path) -> Path:
        """Write the manifest (and reference features, if any) to `directory`."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        if self.refs is not None:
            np.save(d / "refs.npy", self.refs.numpy())
        write_manifest(d, self.name, version=FORMAT_VERSION, extractor=self.extractor_cfg, group_size=self.group_size,
                       percentile=self.percentile, pool=self.pool, max_refs=self.max_refs, batch_size=self.batch_size,
                       seed=self.seed, sigma=self.sigma, border=self.border, n_refs=0 if self.refs is None else len(self.refs))
        return d

    @classmethod
    def load(cls, directory: str | Path, device: str = "cpu") -> Self:
        """Read a zero-shot model folder written by save()."""
        d = Path(directory)
        doc = read_manifest(d, head=cls.name, max_version=FORMAT_VERSION)
        head = cls(group_size=doc["group_size"], percentile=doc["percentile"], pool=doc.get("pool", 2),
                   max_refs=doc.get("max_refs", 8), extractor=doc["extractor"], batch_size=doc.get("batch_size", 16),
                   seed=doc.get("seed", 0), device=device, sigma=doc.get("sigma", 4.0), border=doc.get("border", 0))
        if doc.get("n_refs"):
            try:
                head.refs = torch.from_numpy(np.load(d / "refs.npy"))
            except (OSError, ValueError) as e:
                raise ModelError(f"{d / 'refs.npy'} is missing or corrupt ({e})", "refit the model") from None
        return head
