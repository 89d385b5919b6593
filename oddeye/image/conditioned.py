"""Image-conditioned memory bank (SPADE's idea): a query image is compared only with the patches of the normal
images that look most like it as a whole.

Where normal images differ as a whole (exposure, part type), one global bank lets a defect patch find a close
match in some unrelated normal image; conditioning on the k nearest normal images keeps the comparison among
images of the same kind. Both searches go through `PatchIndex`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from oddeye.core.errors import InputError, ModelError
from oddeye.image.common import REFIT
from oddeye.retrieval.coreset import greedy_coreset_batched
from oddeye.retrieval.index import PatchIndex


def image_descriptors(feats: torch.Tensor, border: int = 0) -> np.ndarray:
    """Patch features (B, D, h, w) -> L2-normalised mean over the interior (without `border` patches), (B, D)."""
    _, _, h, w = feats.shape
    if border > 0 and h > 2 * border and w > 2 * border:
        feats = feats[:, :, border:-border, border:-border]
    g = feats.float().mean(dim=(2, 3))
    return torch.nn.functional.normalize(g, dim=1).numpy().astype(np.float32)


class ConditionedBank:
    """Normal patches kept per image; `distances` searches those of the `k` normal images nearest to each query.

    Kept per image: a greedy k-centre coreset of `per_image` patches (> 0), or else every `stride`-th row and
    column. On magnetic tile 64 coreset patches per image match all of every 2nd row and column (256 patches) at
    a quarter of the search (docs/image.md).
    """

    def __init__(self, k: int = 20, stride: int = 2, border: int = 0, per_image: int = 0, seed: int = 0) -> None:
        if k < 1:
            raise InputError(f"retrieve (images per query) must be >= 1, got {k}")
        if stride < 1:
            raise InputError(f"retrieve_stride must be >= 1, got {stride}")
        if per_image < 0:
            raise InputError(f"retrieve_patches must be >= 0 (0: keep every stride-th patch), got {per_image}")
        self.k, self.stride, self.border = int(k), int(stride), int(border)
        self.per_image, self.seed = int(per_image), int(seed)
        self.patches: np.ndarray | None = None  # (N, m, D) float16
        self.gallery: PatchIndex | None = None  # image descriptors (N, D), cosine

    def fit(self, feats: torch.Tensor, descriptors: np.ndarray | None = None) -> ConditionedBank:
        """Keep only the patches of normal features (N, D, h, w) and their image descriptors (N, D'): see add()."""
        self.patches, self.gallery = None, None
        return self.add(feats, descriptors)

    def add(self, feats: torch.Tensor, descriptors: np.ndarray | None = None) -> ConditionedBank:
        """Add normal images' features (N, D, h, w) with their descriptors (N, D') (default: from `feats`; pass them
        when `feats` carry channels that should not steer retrieval, e.g. positions). Only the kept patches
        (float16) stay, so images can come in passes without holding every pass's features."""
        kept = self.kept_patches(feats).astype(np.float16)
        if self.patches is not None and kept.shape[1:] != self.patches.shape[1:]:
            raise InputError(f"features of shape {tuple(feats.shape)} do not match the bank's "
                             f"{self.patches.shape[1]} patches x {self.patches.shape[2]} dims per image")
        self.patches = kept if self.patches is None else np.concatenate([self.patches, kept])
        desc = image_descriptors(feats, self.border) if descriptors is None else descriptors
        if self.gallery is None:
            self.gallery = PatchIndex(desc.shape[1], kind="flat", metric="cosine", device="cpu")
        self.gallery.add(desc)
        return self

    def kept_patches(self, feats: torch.Tensor) -> np.ndarray:
        """The patches kept of each image's features (B, D, h, w): (B, m, D) float32."""
        if self.per_image > 0:
            out = []
            for s in range(0, len(feats), 128):  # bounded memory for the projected copies
                flat = feats[s:s + 128].float().flatten(2).transpose(1, 2)  # (b, h*w, D)
                ids = torch.from_numpy(greedy_coreset_batched(flat, count=self.per_image, seed=self.seed))
                out.append(flat[torch.arange(len(flat))[:, None], ids].numpy())
            return np.concatenate(out)
        sub = feats[:, :, :: self.stride, :: self.stride]
        return sub.permute(0, 2, 3, 1).reshape(sub.shape[0], -1, sub.shape[1]).float().numpy()

    def distances(self, feats: torch.Tensor, descriptors: np.ndarray | None = None) -> np.ndarray:
        """Distance of every query patch (B, D, h, w) to the nearest patch of its image's k nearest normal images
        (by `descriptors` (B, D'), default from `feats`): (B, h, w)."""
        if self.patches is None or self.gallery is None:
            raise ModelError("the image-conditioned bank is not fitted", "call fit() or load a fitted model folder")
        b, d, h, w = feats.shape
        desc = image_descriptors(feats, self.border) if descriptors is None else descriptors
        _, near = self.gallery.search(desc, k=min(self.k, len(self.gallery)))
        q = feats.permute(0, 2, 3, 1).reshape(b, h * w, d).numpy()
        out = np.empty((b, h * w), np.float32)
        for i in range(b):
            cand = self.patches[near[i]].reshape(-1, d).astype(np.float32)
            dist, _ = PatchIndex.build(cand, kind="flat", device="cpu").search(np.ascontiguousarray(q[i]), k=1)
            out[i] = dist[:, 0]
        return out.reshape(b, h, w)

    @property
    def size(self) -> int:
        """Number of stored patches."""
        return 0 if self.patches is None else int(self.patches.shape[0] * self.patches.shape[1])

    def save(self, directory: Path) -> None:
        """Write patches.npy (float16) and the gallery index."""
        if self.patches is None or self.gallery is None:
            raise ModelError("cannot save an unfitted image-conditioned bank", "call fit() first")
        np.save(directory / "patches.npy", self.patches)
        self.gallery.save(directory / "gallery")

    @classmethod
    def load(cls, directory: Path, k: int, stride: int, border: int, per_image: int = 0) -> ConditionedBank:
        """Read what save() wrote; a missing or inconsistent file is a ModelError."""
        bank = cls(k, stride, border, per_image)
        try:
            bank.patches = np.load(directory / "patches.npy")
        except (OSError, ValueError) as e:
            raise ModelError(f"{directory / 'patches.npy'} is missing or corrupt ({e})", REFIT) from None
        bank.gallery = PatchIndex.load(directory / "gallery")
        if bank.patches.ndim != 3 or len(bank.gallery) != bank.patches.shape[0]:
            raise ModelError(f"{directory}: patches.npy and the gallery index disagree", REFIT)
        return bank
