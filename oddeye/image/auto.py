"""`--auto` for the image heads: pick the settings from the normal images alone (oddeye.core.auto).

A seeded share of the normal images validates, each with PER_NORMAL synthetic anomalies (oddeye.core.anomalies.images)
made from it; every candidate of the head's space (oddeye.image.search) is fitted on the rest and scored on those.
Candidates share patch features through a cache keyed by image content, so the backbone runs once per image,
exposure gain and extractor; a candidate's times still count the features it would compute on its own (at the
measured cost per image); PatchCore's bank is capped while searching (SEARCH_LIMITS). The chosen settings are
then fitted on ALL the normal images, with the config's own bank.

With `shots` K (few-shot: the first K normal images only) half of the shots validate, each seen in the views the
fit learns (augment auto: the 8 flips and turns for K <= 16) so the validation set has more than a few normals, and
the candidates fit on the other half with those views; the choice is then fitted on all K.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from oddeye.core.anomalies.images import make_image_anomalies
from oddeye.core.auto import DEFAULT_MINUTES, SearchResult, apply, record, search, split_normals
from oddeye.core.errors import InputError
from oddeye.core.head import RunContext
from oddeye.image.common import (VIEWS, ImageItem, apply_gain, as_items, augment_views, check_nonempty,
                                 extractor_from_config, split_calibration, view_of)
from oddeye.image.config import ExtractorConfig, ImageConfig
from oddeye.image.search import SPACES, fit_key

VAL_FRACTION = 0.2  # share of the normal images that validate
SHOTS_VAL_FRACTION = 0.5  # with few shots: share of the shots that validate
MAX_VAL = 96  # at most this many validation normals: bounds the search's time
MAX_FIT = 400  # the candidates fit on at most this many of the rest (the choice is then fitted on all)
PER_NORMAL = 2  # synthetic anomalies made from each validation normal (kinds in turn): halves the AUROC's noise there
# caps on PatchCore's memory bank while searching (eval image's own settings): the greedy coreset costs bank x pool
# steps, minutes per candidate with the fit defaults on ~500 images; the chosen settings are fitted without them
SEARCH_LIMITS = {"max_bank": 6000, "max_pool": 100_000}
CACHE_BYTES = 3 << 30  # features kept between candidates (least recently used dropped beyond)
METRIC = f"image AUROC on held-out normal images + {PER_NORMAL} synthetic anomalies made from each"


class FeatureCache:
    """Patch features (D, h, w) per (extractor, image content), least recently used dropped beyond `max_bytes`."""

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self.max_bytes, self.nbytes = max_bytes, 0
        self.features: OrderedDict[tuple[str, bytes], torch.Tensor] = OrderedDict()

    def get(self, key: tuple[str, bytes]) -> torch.Tensor | None:
        """The features of one image, or None."""
        f = self.features.get(key)
        if f is not None:
            self.features.move_to_end(key)
        return f

    def put(self, key: tuple[str, bytes], f: torch.Tensor) -> None:
        """Keep the features of one image, dropping the least recently used beyond the byte budget."""
        f = f.clone()
        self.features[key] = f
        self.nbytes += f.numel() * f.element_size()
        while self.nbytes > self.max_bytes and len(self.features) > 1:
            _, old = self.features.popitem(last=False)
            self.nbytes -= old.numel() * old.element_size()


class CachedExtractor:
    """A patch feature extractor (PatchFeatureExtractor's `extract`, `image_size`, ...) answering from the cache;
    it measures its backbone's CPU seconds per image."""

    def __init__(self, inner: Any, key: str, cache: FeatureCache) -> None:
        self.inner, self.key, self.cache = inner, key, cache
        self.computed, self.seconds = 0, 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def seconds_per_image(self) -> float:
        """Measured backbone CPU seconds per image (0 before any was computed)."""
        return self.seconds / self.computed if self.computed else 0.0

    def extract(self, images: list[np.ndarray]) -> torch.Tensor:
        """Patch features (B, D, h, w) of uint8 images; those not seen before are computed in one batch."""
        keys = [(self.key, _digest(im)) for im in images]
        found = [self.cache.get(k) for k in keys]
        missing = [i for i, f in enumerate(found) if f is None]
        if missing:
            t0 = time.process_time()
            new = self.inner.extract([images[i] for i in missing])
            self.seconds += time.process_time() - t0
            self.computed += len(missing)
            for i, f in zip(missing, new):
                self.cache.put(keys[i], f)
                found[i] = f
        return torch.stack(found)


def _digest(image: np.ndarray) -> bytes:
    a = np.ascontiguousarray(image)
    return hashlib.blake2b(a.tobytes(), digest_size=16, person=str(a.shape).encode()[:16]).digest()


def loaded(items: list[ImageItem]) -> list[ImageItem]:
    """The items with their pixels read once (candidates refit many times), ids and labels kept."""
    return [ImageItem(id=it.id, image=it.load(), path=it.path, label=it.label) for it in items]


def validation_set(normals: list[ImageItem], seed: int, per_normal: int = PER_NORMAL
                   ) -> tuple[list[ImageItem], np.ndarray]:
    """The validation normals, then `per_normal` seeded synthetic anomalies of each (kinds in turn); labels
    ((1 + per_normal) N,) 0/1."""
    sources = [it for _ in range(per_normal) for it in normals]
    fakes = make_image_anomalies([it.image for it in sources], seed=seed)
    items = [ImageItem(id=it.id, image=it.image, label=0) for it in normals]
    items += [ImageItem(id=f"{it.id}~{i // len(normals)}~{a.kind}", image=a.image, label=1, mask=a.mask)
              for i, (it, a) in enumerate(zip(sources, fakes))]
    return items, np.array([0] * len(normals) + [1] * len(fakes))


@dataclass
class AutoSearch:
    """What `auto_search` found: the chosen config, the search table, facts about the validation set, and what
    `fit` needs to fit the choice on all the normal images with the search's features."""

    config: ImageConfig
    found: SearchResult
    meta: dict[str, Any]
    items: list[ImageItem]
    make: Callable[[ImageConfig], Any]
    shots: int | None = None

    def fit(self) -> Any:
        """A head of the chosen settings fitted on ALL the normal images (fit and validation parts; the shots)."""
        head = self.make(self.config)
        head.fit(self.items, ctx=RunContext(progress=False, shots=self.shots))
        head._ext = head._ext.inner  # the fitted head keeps the extractor, not the search's cache
        return head

    def save(self, head: Any, out: str | Path) -> Path:
        """Save `head` and add the search table and choice to its manifest."""
        head.save(out)
        record(out, self.found, **self.meta)
        return Path(out)


def shot_views(base: ImageConfig, shots: int | None) -> tuple[str, ...]:
    """The views a fit of `base` on `shots` images learns from (("",) for heads without augment)."""
    return augment_views(getattr(base, "augment", "none"), shots)


def in_views(items: list[ImageItem], views: tuple[str, ...]) -> list[ImageItem]:
    """Every item in the first of `views`, then every item in the next, ... (ids tagged with the view but the
    identity's)."""
    return [ImageItem(id=it.id + (f"@{v}" if v else ""), image=view_of(it.image, v), label=it.label)
            for v in views for it in items]


def auto_search(cls: Any, base: ImageConfig, train: Any, given: dict[str, Any] | None = None,
                minutes: float = DEFAULT_MINUTES, log: Callable[[str], None] | None = None,
                shots: int | None = None) -> AutoSearch:
    """Search the space of head class `cls` around config `base` (the settings the user `given` are fixed in
    every candidate) on the normal images `train` (anything as_items takes; the first `shots` if set); never sees
    a test label."""
    items = loaded(as_items(train if isinstance(train, (list, tuple)) else [train])[:shots])
    check_nonempty(items)
    if cls.name not in SPACES:
        raise InputError(f"--auto has no search space for the {cls.name} head", f"choose one of {', '.join(SPACES)}")
    space = SPACES[cls.name].fixing(given or {})
    if shots is None:
        views: tuple[str, ...] = ("",)  # many normals: no need to multiply them
        fit_part, val_normals = split_normals(items, VAL_FRACTION, seed=base.seed, max_val=MAX_VAL, min_fit=2,
                                             max_fit=MAX_FIT)
    else:
        views = shot_views(base, shots)
        fit_part, val_normals = split_normals(items, SHOTS_VAL_FRACTION, seed=base.seed)
    val, labels = validation_set(in_views(val_normals, views), seed=base.seed)
    search_base = base  # the candidates fit without ctx.shots: they get the shots' views from their config
    if len(views) > 1:
        search_base = base.replace(augment=next(k for k, v in VIEWS.items() if v == views))
    limits = {k: v for k, v in SEARCH_LIMITS.items()
              if hasattr(base, k) and (getattr(base, k) is None or getattr(base, k) > v)}
    cache, extractors = FeatureCache(), {}

    def cached(cfg: ExtractorConfig) -> CachedExtractor:
        """The cached extractor of `cfg` (built once)."""
        key = repr(sorted(cfg.to_dict().items()))
        if key not in extractors:
            extractors[key] = CachedExtractor(extractor_from_config(cfg), key, cache)
        return extractors[key]

    def make(cfg: ImageConfig) -> Any:
        head = cls(cfg)
        head._ext = cached(cfg.extractor)  # the candidates share features (same images, same extractor)
        return head

    def prepare(cfg: ImageConfig) -> tuple[float, float]:
        """Compute the candidate's features into the cache (untimed); what they would cost it, fit and score."""
        ext = cached(cfg.extractor)
        fit_images = [it.image for it in fit_part]
        if cls.name == "zero-shot":
            fit_images = fit_images[: getattr(cfg, "max_refs", 0)]
        else:
            train_items, _ = split_calibration(fit_part, seed=cfg.seed)
            fit_images += [it.image for it in in_views(train_items, shot_views(cfg, None)[1:])]  # the other views
            fit_images += [apply_gain(it.image, g) for g in getattr(cfg, "exposure_gains", ()) for it in train_items]
        for batch in (fit_images, [it.image for it in val]):
            for s in range(0, len(batch), cfg.batch_size):
                ext.extract(batch[s:s + cfg.batch_size])
        return ext.seconds_per_image * len(fit_images), ext.seconds_per_image * len(val)

    found = search(space, search_base.replace(**limits), make, fit_part, val, labels, minutes=minutes, prepare=prepare,
                   same_fit=lambda cfg: fit_key(cls.name, cfg), log=log, metric=METRIC)
    meta = {"n_fit": len(fit_part), "n_val_normal": int((labels == 0).sum()), "n_val_anomalous": int(labels.sum()),
            "n_final": len(items), "seed": base.seed, "search_limits": limits,
            "anomalies": sorted({it.id.rsplit("~", 1)[1] for it in val if it.label == 1})}
    if shots is not None:
        meta.update(shots=shots, val_views=len(views))
    return AutoSearch(apply(base, found.chosen_settings), found, meta, items, make, shots)


def search_for_eval(head: str, train: list[Any], settings: dict[str, Any], extractor: dict[str, Any], *, seed: int,
                    minutes: float = DEFAULT_MINUTES, log: Callable[[str], None] | None = None, **fixed: Any
                    ) -> tuple[dict[str, Any], dict[str, Any], SearchResult]:
    """`eval image --auto`: search on the data set's TRAINING split only, around the eval's own settings (`fixed`,
    e.g. max_bank) and those the user gave (`settings`, `extractor`: kept in every candidate). Returns the chosen
    config as (settings, extractor) for `evaluate`, and the search."""
    from oddeye.image.evaluate import head_class, make_head

    base = make_head(head, seed=seed, extractor=extractor, **fixed, **settings).config
    given = {**settings, **({"extractor": extractor} if extractor else {})}
    found = auto_search(head_class(head), base, train, given=given, minutes=minutes, log=log)
    chosen = found.config.to_dict()
    return ({k: v for k, v in chosen.items() if k not in ("seed", "extractor", *fixed)}, chosen["extractor"],
            found.found)
