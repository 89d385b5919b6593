"""The skeleton the feature-map heads (PatchCore, Gaussian) share: extract, fit, calibrate, score, save/load."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator, Self, Sequence

import numpy as np
import torch

from oddeye.core.errors import InputError
from oddeye.core.head import read_manifest, write_manifest
from oddeye.core.types import Result
from oddeye.image.common import (ImageItem, apply_gain, as_items, batches, build_result, calibrate,
                                 check_extractor_dim, check_gains, check_nonempty, extractor_from_config, progress,
                                 split_calibration, to_pixel_map)

FORMAT_VERSION = 1
DEFAULT_EXTRACTOR: dict[str, Any] = {"name": "efficientnet-lite0", "image_size": 256, "layers": None,
                                     "target_dim": None, "patch_size": 3, "bf16": "auto", "channels_last": True}


class FeatureMapHead:
    """Base of heads that turn patch features (B, D, h, w) into patch scores (B, h, w) and image scores (B,)."""

    name = "feature-map"
    what = "patch distance"

    def __init__(self, extractor: dict[str, Any] | None = None, batch_size: int = 16, seed: int = 0,
                 device: str = "cpu", sigma: float = 4.0, border: int = 0, score_sigma: float = 1.0,
                 exposure_gains: Sequence[float] = ()) -> None:
        if border < 0:
            raise InputError(f"border must be >= 0 patches, got {border}")
        if score_sigma < 0:
            raise InputError(f"score_sigma must be >= 0 patches, got {score_sigma}")
        self.border = int(border)
        self.score_sigma = float(score_sigma)
        self.exposure_gains = check_gains(exposure_gains)
        self.extractor_cfg = {**DEFAULT_EXTRACTOR, **(extractor or {})}
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.device = device
        self.sigma = float(sigma)
        self.threshold: float | None = None
        self.pixel_threshold: float | None = None
        self.n_train = 0
        self._ext: Any = None

    # ---- to be provided by a head ---------------------------------------------------------------------
    def _fit_passes(self, passes: Iterator[torch.Tensor]) -> None:
        """Learn from normal patch features (N, D, h, w), given as passes (the images, then each exposure gain)."""
        raise TypeError(f"{type(self).__name__} must define _fit_passes")

    def _patch_scores(self, feats: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(patch scores (B, h, w), image scores (B,)) for features (B, D, h, w)."""
        raise TypeError(f"{type(self).__name__} must define _patch_scores")

    def interior(self, pmap: np.ndarray) -> np.ndarray:
        """Patch scores (B, h, w) without the outer `border` ring (left out of image scores), (B, h', w')."""
        b = self.border
        if b == 0 or pmap.shape[1] <= 2 * b or pmap.shape[2] <= 2 * b:
            return pmap
        return pmap[:, b:-b, b:-b]

    def smoothed(self, pmap: np.ndarray) -> np.ndarray:
        """Patch scores (B, h, w) Gaussian-smoothed over `score_sigma` patches, for image scores: one odd patch
        is noise, a defect lights up a neighbourhood."""
        if self.score_sigma <= 0:
            return pmap
        import cv2

        return np.stack([cv2.GaussianBlur(m.astype(np.float32), (0, 0), self.score_sigma,
                                          borderType=cv2.BORDER_REFLECT) for m in pmap])

    def _state(self) -> dict[str, Any]:
        """Extra manifest fields of the head."""
        return {}

    def _save_arrays(self, directory: Path) -> None:
        """Write the head's learned arrays under `directory`."""

    def _load_arrays(self, directory: Path, doc: dict[str, Any]) -> None:
        """Read what _save_arrays wrote."""

    # ---- shared ---------------------------------------------------------------------------------------
    @property
    def extractor(self) -> Any:
        """The patch feature extractor (built on first use)."""
        if self._ext is None:
            self._ext = extractor_from_config(self.extractor_cfg, device=self.device)
        return self._ext

    def extract(self, items: list[ImageItem], desc: str = "features", gain: float = 1.0) -> torch.Tensor:
        """Patch features (N, D, h, w) of all items (brightened by `gain`), in batches with a progress bar."""
        n_b = (len(items) + self.batch_size - 1) // self.batch_size
        out = [self.extractor.extract([apply_gain(im, gain) for im in imgs])
               for _, imgs in progress(batches(items, self.batch_size), n_b, desc)]
        return torch.cat(out, dim=0)

    def training_passes(self, items: list[ImageItem]) -> Iterator[torch.Tensor]:
        """Features (N, D, h, w) of the training images, then of their copies at each exposure gain, one pass each."""
        yield self.extract(items, desc=f"{self.name} fit")
        for g in self.exposure_gains:
            yield self.extract(items, desc=f"{self.name} fit, gain {g:g}", gain=g)

    def _fit_features(self, feats: torch.Tensor) -> None:
        """Learn from one pass of normal patch features (N, D, h, w)."""
        self._fit_passes(iter([feats]))

    def fit(self, samples: Iterable[Any]) -> Self:
        """Learn normal from normal images (paths, folders, arrays, Samples); ~10 % held out to set the threshold."""
        items = as_items(samples)
        check_nonempty(items)
        train, calib = split_calibration(items, seed=self.seed)
        self._fit_passes(self.training_passes(train))
        self.n_train = len(train)
        if calib:
            feats = self.extract(calib, desc="calibrate")
            pmaps, scores = self._patch_scores(feats)
            s = self.extractor.image_size
            pix = np.concatenate([to_pixel_map(m, s, None, self.sigma).ravel() for m in pmaps])
            self.threshold, self.pixel_threshold = calibrate(scores, pix)
        return self

    def score_arrays(self, images: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """(image scores (B,), pixel maps [(H_i, W_i)]) for uint8 images of any size; no files, no Result."""
        pmaps, scores = self._patch_scores(self.extractor.extract(images))
        s = self.extractor.image_size
        return scores, [to_pixel_map(m, s, im.shape[:2], self.sigma) for m, im in zip(pmaps, images)]

    def score(self, samples: Iterable[Any], out: str | Path | None = None, keep_maps: bool = True) -> Result:
        """Score images; a Score per image with its pixel map, events above the threshold, overlays under `out`."""
        items = as_items(samples)
        res = Result(head=self.name, threshold=self.threshold, meta={"extractor": self.extractor_cfg})
        n_b = (len(items) + self.batch_size - 1) // self.batch_size
        for chunk, imgs in progress(batches(items, self.batch_size), n_b, f"{self.name} score"):
            scores, maps = self.score_arrays(imgs)
            part = build_result(self.name, chunk, imgs, scores, maps if keep_maps or out else [None] * len(chunk),
                                self.threshold, self.pixel_threshold, out=out, what=self.what)
            if not keep_maps:
                for sc in part.scores:
                    sc.maps.clear()
            res.extend(part)
        return res

    def save(self, directory: str | Path) -> Path:
        """Write the manifest, the extractor config and the head's arrays to `directory`."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self._save_arrays(d)
        write_manifest(d, self.name, version=FORMAT_VERSION, extractor=self.fitted_extractor_cfg(),
                       threshold=self.threshold,
                       pixel_threshold=self.pixel_threshold, n_train=self.n_train, batch_size=self.batch_size,
                       seed=self.seed, sigma=self.sigma, border=self.border, score_sigma=self.score_sigma,
                       exposure_gains=list(self.exposure_gains), **self._state())
        return d

    def fitted_extractor_cfg(self) -> dict[str, Any]:
        """The extractor config plus `fit_bf16`, the precision the features were computed in (pinned at load)."""
        cfg = dict(self.extractor_cfg)
        if self._ext is not None and isinstance(getattr(self._ext.backbone, "bf16", None), bool):
            cfg["fit_bf16"] = self._ext.backbone.bf16
        return cfg

    @classmethod
    def load(cls, directory: str | Path, device: str = "cpu") -> Self:
        """Read a model written by save(); another head's folder or a corrupt one is a ModelError."""
        d = Path(directory)
        doc = read_manifest(d, head=cls.name, max_version=FORMAT_VERSION)
        head = cls.__new__(cls)
        FeatureMapHead.__init__(head, extractor=doc["extractor"], batch_size=doc.get("batch_size", 16),
                                seed=doc.get("seed", 0), device=device, sigma=doc.get("sigma", 4.0),
                                border=doc.get("border", 0), score_sigma=doc.get("score_sigma", 0.0),
                                exposure_gains=doc.get("exposure_gains", ()))
        head.threshold, head.pixel_threshold = doc.get("threshold"), doc.get("pixel_threshold")
        head.n_train = doc.get("n_train", 0)
        head._load_arrays(d, doc)
        return head

    def check_dim(self, dim: int, directory: Path) -> None:
        """ModelError if the extractor's feature dim differs from the stored one."""
        check_extractor_dim(self.extractor, dim, directory)
