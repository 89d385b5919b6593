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

from oddeye.core.errors import InputError, ModelError
from oddeye.core.head import RunContext, context
from oddeye.core.types import Result
from oddeye.image.base import ImageHead
from oddeye.image.common import REFIT, ImageItem, as_items, build_result, progress, to_pixel_map
from oddeye.image.config import ZeroShotConfig
from oddeye.retrieval.index import PatchIndex


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


class ZeroShotHead(ImageHead):
    """Mutual scoring of a batch of unlabeled images in seeded groups; optional normal references from fit()."""

    name = "zero-shot"
    config_class = ZeroShotConfig
    config: ZeroShotConfig

    def __init__(self, config: ZeroShotConfig | None = None, *, device: str = "cpu", **overrides: Any) -> None:
        super().__init__(config, device=device, **overrides)
        self.refs: torch.Tensor | None = None  # (R, D, h, w) features of known-normal images, optional
        self.threshold: float | None = None  # none learned: each batch's Result gets its own

    def _features(self, images: list[np.ndarray]) -> torch.Tensor:
        f = self.extractor.extract(images)
        return F.avg_pool2d(f, self.config.pool) if self.config.pool > 1 else f

    def fit(self, samples: Iterable[Any] = (), *, ctx: RunContext | None = None) -> Self:
        """Optional: keep up to `max_refs` (and `ctx.shots`) known-normal images as extra comparison images."""
        ctx = context(ctx)
        items = as_items(list(samples))[: self.config.max_refs][: ctx.shots]
        self.refs = self._features([it.load() for it in items]) if items else None
        return self

    def score(self, samples: Iterable[Any], *, ctx: RunContext | None = None) -> Result:
        """Score images against each other in seeded groups of `group_size`; threshold = median + 3 MAD of the
        batch. Maps are kept unless ctx.keep_maps is False, overlays go under ctx.out; with ctx.skip_bad an
        unreadable image is recorded as an error (and left out of the comparisons)."""
        ctx = context(ctx)
        c = self.config
        keep_maps = ctx.keep_maps is not False
        items = as_items(samples)
        n_refs = 0 if self.refs is None else len(self.refs)
        if len(items) + n_refs < 2:
            raise InputError(f"zero-shot scoring needs at least 2 images, got {len(items)}",
                             "score a batch of images together (they are compared with each other)")
        order = np.random.default_rng(c.seed).permutation(len(items))
        n_groups = max(1, int(np.ceil(len(items) / c.group_size)))
        groups = [order[k::n_groups] for k in range(n_groups)]  # balanced sizes, none of a single image
        scores = np.zeros(len(items))
        maps: list[np.ndarray | None] = [None] * len(items)
        bad: dict[int, str] = {}
        s = self.extractor.image_size
        b = -(-c.border // c.pool)  # border is in patches of the unpooled grid
        for grp in progress(groups, len(groups), "zero-shot groups", ctx.progress):
            grp, imgs = self._load_group(items, grp, bad if ctx.skip_bad else None, n_refs)
            if not len(grp):
                continue
            feats = self._features(imgs)
            if n_refs:
                feats = torch.cat([feats, self.refs], dim=0)
            pm = mutual_scores(feats, n_refs=n_refs, percentile=c.percentile)
            bb = b if min(pm.shape[1:]) > 2 * b else 0
            for k, i in enumerate(grp):
                scores[i] = float(pm[k, bb:pm.shape[1] - bb, bb:pm.shape[2] - bb].max())
                maps[i] = to_pixel_map(pm[k], s, imgs[k].shape[:2], c.sigma) if (keep_maps or ctx.out) else None
        good = [i for i in range(len(items)) if i not in bad]
        med = float(np.median(scores[good])) if good else float("nan")
        mad = float(np.median(np.abs(scores[good] - med))) * 1.4826 if good else float("nan")
        threshold = med + 3 * mad if len(good) >= 8 else None
        res = build_result(self.name, [items[i] for i in good], None, scores[good], [maps[i] for i in good],
                           threshold, None, out=ctx.out, what="mutual patch distance")
        res.meta = {"extractor": c.extractor.to_dict(), "group_size": c.group_size, "percentile": c.percentile,
                    "threshold_rule": "median + 3 MAD of this batch's scores"}
        if not keep_maps:
            for sc in res.scores:
                sc.maps.clear()
        for i, message in bad.items():
            res.add_error(items[i].id, message, items[i].path)
        return res

    @staticmethod
    def _load_group(items: list[ImageItem], grp: np.ndarray, bad: dict[int, str] | None,
                    n_refs: int) -> tuple[list[int], list[np.ndarray]]:
        """(indices, images) of the group's readable images; with `bad` (skip_bad) an unreadable one is noted there
        and left out, as is a group left with nothing to compare with."""
        if bad is None:
            return list(grp), [items[i].load() for i in grp]
        kept, imgs = [], []
        for i in grp:
            try:
                imgs.append(items[i].load())
                kept.append(int(i))
            except InputError as e:
                bad[int(i)] = e.message
        if len(kept) + n_refs < 2:
            bad.update({i: "nothing left in its zero-shot group to compare it with" for i in kept})
            return [], []
        return kept, imgs

    def save(self, directory: str | Path) -> Path:
        """Write the manifest (config, and reference features, if any) to `directory`."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        if self.refs is not None:
            np.save(d / "refs.npy", self.refs.numpy())
        self._write_manifest(d, n_refs=0 if self.refs is None else len(self.refs))
        return d

    @classmethod
    def load(cls, directory: str | Path, *, device: str | None = None) -> Self:
        """Read a zero-shot model folder written by save() (or by an oddeye before the config)."""
        head, doc = cls._from_manifest(directory, device)
        if doc.get("n_refs"):
            d = Path(directory)
            try:
                head.refs = torch.from_numpy(np.load(d / "refs.npy"))
            except (OSError, ValueError) as e:
                raise ModelError(f"{d / 'refs.npy'} is missing or corrupt ({e})", REFIT) from None
        return head
