"""What the image heads share (ImageHead: config, device, extractor, manifest) and the skeleton of the feature-map
heads (FeatureMapHead, for PatchCore and Gaussian): extract, fit, calibrate, score, save/load."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator, Self

import numpy as np
import torch

from oddeye.core.head import RunContext, context, read_manifest, write_manifest
from oddeye.core.types import Result
from oddeye.image.common import (ImageItem, apply_gain, as_items, augment_views, batches, build_result, calibrate,
                                 check_nonempty, extractor_from_config, progress, split_calibration, to_pixel_map,
                                 view_of)
from oddeye.image.config import FeatureMapConfig, ImageConfig, config_from_manifest

FORMAT_VERSION = 2  # 2: the settings under "config"; 1 (still read): at the manifest's top level


class ImageHead:
    """Base of the image heads: `config` (one dataclass), the device, the feature extractor (built on first use,
    in the precision the model was fitted in), and the manifest."""

    name = "image"
    config_class: type[ImageConfig] = ImageConfig

    def __init__(self, config: ImageConfig | None = None, *, device: str = "cpu", **overrides: Any) -> None:
        self.config = self.config_class.build(config, **overrides)
        self.device = device
        self.fit_bf16: bool | None = None  # bfloat16 features at fit time, read from a model folder (None: unknown)
        self._ext: Any = None

    @property
    def extractor(self) -> Any:
        """The patch feature extractor (built on first use)."""
        if self._ext is None:
            self._ext = extractor_from_config(self.config.extractor, device=self.device, fit_bf16=self.fit_bf16)
        return self._ext

    def features_bf16(self) -> bool | None:
        """Whether the features were computed in bfloat16: the built extractor's precision, else the model folder's."""
        bf16 = getattr(getattr(self._ext, "backbone", None), "bf16", None)
        return bf16 if isinstance(bf16, bool) else self.fit_bf16

    def _write_manifest(self, directory: Path, **state: Any) -> None:
        """The manifest: head, format, config, the features' precision (pinned at load) and the head's `state`."""
        write_manifest(directory, self.name, version=FORMAT_VERSION, config=self.config.to_dict(),
                       fit_bf16=self.features_bf16(), **state)

    @classmethod
    def _from_manifest(cls, directory: str | Path, device: str | None) -> tuple[Self, dict[str, Any]]:
        """A head with the config of the model folder `directory` (either manifest format), and the manifest."""
        doc = read_manifest(directory, head=cls.name, max_version=FORMAT_VERSION)
        head = cls(config_from_manifest(cls.config_class, doc), device=device or "cpu")
        fit_bf16 = doc["fit_bf16"] if "config" in doc else (doc.get("extractor") or {}).get("fit_bf16")
        head.fit_bf16 = None if fit_bf16 is None else bool(fit_bf16)
        return head, doc


class FeatureMapHead(ImageHead):
    """Base of heads that turn patch features (B, D, h, w) into patch scores (B, h, w) and image scores (B,)."""

    name = "feature-map"
    what = "patch distance"
    config_class: type[FeatureMapConfig] = FeatureMapConfig
    config: FeatureMapConfig

    def __init__(self, config: FeatureMapConfig | None = None, *, device: str = "cpu", **overrides: Any) -> None:
        super().__init__(config, device=device, **overrides)
        self.threshold: float | None = None
        self.pixel_threshold: float | None = None
        self.n_train = 0
        self._views: tuple[str, ...] = ("",)  # set by fit (config.augment)

    # ---- to be provided by a head ---------------------------------------------------------------------
    def _fit_passes(self, passes: Iterator[torch.Tensor]) -> None:
        """Learn from normal patch features (N, D, h, w), given as passes (the images, then each exposure gain)."""
        raise TypeError(f"{type(self).__name__} must define _fit_passes")

    def _patch_scores(self, feats: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(patch scores (B, h, w), image scores (B,)) for features (B, D, h, w)."""
        raise TypeError(f"{type(self).__name__} must define _patch_scores")

    def _state(self) -> dict[str, Any]:
        """Extra manifest fields of the head (what it learned, not its settings)."""
        return {}

    def _save_arrays(self, directory: Path) -> None:
        """Write the head's learned arrays under `directory`."""

    def _load_arrays(self, directory: Path, doc: dict[str, Any]) -> None:
        """Read what _save_arrays wrote."""

    # ---- shared ---------------------------------------------------------------------------------------
    def interior(self, pmap: np.ndarray) -> np.ndarray:
        """Patch scores (B, h, w) without the outer `border` ring (left out of image scores), (B, h', w')."""
        b = self.config.border
        if b == 0 or pmap.shape[1] <= 2 * b or pmap.shape[2] <= 2 * b:
            return pmap
        return pmap[:, b:-b, b:-b]

    def smoothed(self, pmap: np.ndarray) -> np.ndarray:
        """Patch scores (B, h, w) Gaussian-smoothed over `score_sigma` patches, for image scores: one odd patch
        is noise, a defect lights up a neighbourhood."""
        if self.config.score_sigma <= 0:
            return pmap
        import cv2

        return np.stack([cv2.GaussianBlur(m.astype(np.float32), (0, 0), self.config.score_sigma,
                                          borderType=cv2.BORDER_REFLECT) for m in pmap])

    def extract(self, items: list[ImageItem], desc: str = "features", gain: float = 1.0,
                show: bool = True, view: str = "") -> torch.Tensor:
        """Patch features (N, D, h, w) of all items (brightened by `gain`, flipped / turned as `view` says), in
        batches with a progress bar."""
        bs = self.config.batch_size
        out = [self.extractor.extract([view_of(apply_gain(im, gain), view) for im in imgs])
               for _, imgs in progress(batches(items, bs), -(-len(items) // bs), desc, show)]
        return torch.cat(out, dim=0)

    def n_passes(self) -> int:
        """How many feature passes over the training images a fit makes: views, then exposure gains."""
        return len(self._views) + len(getattr(self.config, "exposure_gains", ()))

    def training_passes(self, items: list[ImageItem], show: bool = True) -> Iterator[torch.Tensor]:
        """Features (N, D, h, w) of the training images, of their flipped / turned views (config.augment), then of
        their copies at each exposure gain, one pass each."""
        for v in self._views:
            yield self.extract(items, desc=f"{self.name} fit" + (f", view {v}" if v else ""), show=show, view=v)
        for g in self.config.exposure_gains:
            yield self.extract(items, desc=f"{self.name} fit, gain {g:g}", gain=g, show=show)

    def _fit_features(self, feats: torch.Tensor) -> None:
        """Learn from one pass of normal patch features (N, D, h, w)."""
        self._fit_passes(iter([feats]))

    def fit(self, samples: Iterable[Any], *, ctx: RunContext | None = None) -> Self:
        """Learn normal from normal images (paths, folders, arrays, Samples; the first `ctx.shots` if set); ~10 %
        are held out to set the threshold."""
        ctx = context(ctx)
        items = as_items(samples)[: ctx.shots]
        check_nonempty(items)
        self._views = augment_views(getattr(self.config, "augment", "none"), ctx.shots)
        train, calib = split_calibration(items, seed=self.config.seed)
        self._fit_passes(self.training_passes(train, show=ctx.progress))
        self.n_train = len(train)
        if calib:
            feats = self.extract(calib, desc="calibrate", show=ctx.progress)
            pmaps, scores = self._patch_scores(feats)
            s = self.extractor.image_size
            pix = np.concatenate([to_pixel_map(m, s, None, self.config.sigma).ravel() for m in pmaps])
            self.threshold, self.pixel_threshold = calibrate(scores, pix)
        return self

    def score_arrays(self, images: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """(image scores (B,), pixel maps [(H_i, W_i)]) for uint8 images of any size; no files, no Result."""
        pmaps, scores = self._patch_scores(self.extractor.extract(images))
        s = self.extractor.image_size
        return scores, [to_pixel_map(m, s, im.shape[:2], self.config.sigma) for m, im in zip(pmaps, images)]

    def score(self, samples: Iterable[Any], *, ctx: RunContext | None = None) -> Result:
        """Score images: a Score per image with its pixel map (unless ctx.keep_maps is False), events above the
        threshold, overlays under ctx.out; with ctx.skip_bad an unreadable image is recorded as an error."""
        ctx = context(ctx)
        keep_maps = ctx.keep_maps is not False
        items = as_items(samples)
        res = Result(head=self.name, threshold=self.threshold, meta={"extractor": self.config.extractor.to_dict()})
        on_error = (lambda it, e: res.add_error(it.id, e.message, it.path)) if ctx.skip_bad else None
        bs = self.config.batch_size
        for chunk, imgs in progress(batches(items, bs, on_error), -(-len(items) // bs), f"{self.name} score",
                                    ctx.progress):
            scores, maps = self.score_arrays(imgs)
            part = build_result(self.name, chunk, imgs, scores, maps if keep_maps or ctx.out else [None] * len(chunk),
                                self.threshold, self.pixel_threshold, out=ctx.out, what=self.what)
            if not keep_maps:
                for sc in part.scores:
                    sc.maps.clear()
            res.extend(part)
        return res

    def save(self, directory: str | Path) -> Path:
        """Write the manifest (config, thresholds, the head's state) and the head's arrays to `directory`."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self._save_arrays(d)
        self._write_manifest(d, threshold=self.threshold, pixel_threshold=self.pixel_threshold, n_train=self.n_train,
                             **self._state())
        return d

    @classmethod
    def load(cls, directory: str | Path, *, device: str | None = None) -> Self:
        """Read a model written by save() (or by an oddeye before the config); another head's folder or a corrupt
        one is a ModelError, a bad setting a ConfigError naming it."""
        head, doc = cls._from_manifest(directory, device)
        head.threshold, head.pixel_threshold = doc.get("threshold"), doc.get("pixel_threshold")
        head.n_train = doc.get("n_train", 0)
        head._load_arrays(Path(directory), doc)
        return head
