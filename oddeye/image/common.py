"""What the image heads share: reading inputs, patch maps -> pixel maps, calibration, Results with overlays."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import cv2
import numpy as np
from scipy import ndimage

from oddeye.core.errors import EmptyDataError, InputError
from oddeye.core.imageio import IMAGE_SUFFIXES, convert, list_images, read_image, read_mask
from oddeye.core.types import AnomalyMap, Event, Result, Sample, Score
from oddeye.image.config import ExtractorConfig

REFIT = "refit it with `oddeye fit image`"  # the hint for a broken or mismatched model folder

@dataclass
class ImageItem:
    """One image to fit on or score: an id, where it came from, its label and mask if known."""

    id: str
    image: np.ndarray | None = None  # (H, W, 3) uint8 once loaded
    path: str | None = None
    label: int | None = None
    mask_path: str | None = None
    mask: np.ndarray | None = None  # (H, W) bool

    def load(self) -> np.ndarray:
        """The image as uint8 RGB (H, W, 3), read from `path` on first use (not cached)."""
        if self.image is not None:
            return self.image
        if self.path is None:
            raise InputError(f"sample {self.id!r} has neither pixels nor a path")
        return read_image(self.path, "rgb")

    def load_mask(self, shape: tuple[int, int]) -> np.ndarray | None:
        """The ground-truth mask (H, W) bool of this image, checked against its size; None if unknown."""
        if self.mask is not None:
            m = np.asarray(self.mask).astype(bool)
            if m.shape != tuple(shape):
                raise InputError(f"mask of {self.id} is {m.shape[1]}x{m.shape[0]} but its image is "
                                 f"{shape[1]}x{shape[0]}", "masks must have the size of their image")
            return m
        if self.mask_path is None:
            return np.zeros(shape, bool) if self.label == 0 else None
        return read_mask(self.mask_path, shape)


def as_items(samples: Any) -> list[ImageItem]:
    """Turn paths (files or folders), Samples, arrays (H, W[, C]), data-set items or ImageItems into ImageItems."""
    if isinstance(samples, (str, Path, np.ndarray, ImageItem, Sample)):
        samples = [samples]
    items: list[ImageItem] = []
    for i, s in enumerate(samples):
        if isinstance(s, ImageItem):
            items.append(s)
        elif isinstance(s, np.ndarray):
            if s.ndim not in (2, 3) or s.size == 0:
                raise InputError(f"image array {i} has shape {s.shape}; expected (H, W) or (H, W, 1|3|4)")
            items.append(ImageItem(id=f"image_{i}", image=convert(s, "rgb")))
        elif isinstance(s, (str, Path)):
            p = Path(s).expanduser()
            if p.is_dir():
                found = list_images(p)
                if not found:
                    raise EmptyDataError(f"no images in folder {p}", f"expected files ending in {', '.join(IMAGE_SUFFIXES)}")
                items += [ImageItem(id=f.stem, path=str(f)) for f in found]
            else:
                items.append(ImageItem(id=p.stem, path=str(p)))
        elif isinstance(s, Sample):
            items.append(ImageItem(id=s.id, path=s.path, label=s.label, mask_path=s.meta.get("mask_path"),
                                   image=s.meta.get("image")))
        elif hasattr(s, "image") and hasattr(s, "label"):  # e.g. oddeye.core.synth.SynthImage
            items.append(ImageItem(id=str(getattr(s, "id", f"image_{i}")), image=convert(np.asarray(s.image), "rgb"),
                                   label=int(s.label), mask=getattr(s, "mask", None)))
        elif hasattr(s, "path"):  # a data-set item: path, label, mask path
            mp = getattr(s, "mask_path", None) or getattr(s, "mask", None)
            items.append(ImageItem(id=str(getattr(s, "id", None) or getattr(s, "name", None) or Path(s.path).stem),
                                   path=str(s.path), label=getattr(s, "label", None),
                                   mask_path=str(mp) if mp is not None else None))
        else:
            raise InputError(f"cannot score input {i} of type {type(s).__name__}",
                             "pass image paths, folders, arrays or Samples")
    _dedupe_ids(items)
    return items


def _dedupe_ids(items: list[ImageItem]) -> None:
    """Make ids unique (two folders may both hold 000.png) by suffixing the parent folder name."""
    seen: dict[str, int] = {}
    for it in items:
        seen[it.id] = seen.get(it.id, 0) + 1
    for it in items:
        if seen[it.id] > 1 and it.path:
            it.id = f"{Path(it.path).parent.name}/{it.id}"
    counts: dict[str, int] = {}
    for it in items:
        n = counts.get(it.id, 0)
        counts[it.id] = n + 1
        if n:
            it.id = f"{it.id}#{n}"


def batches(items: Sequence[ImageItem], size: int, on_error: Callable[[ImageItem, InputError], Any] | None = None
            ) -> Iterator[tuple[list[ImageItem], list[np.ndarray]]]:
    """Yield (items, images (H, W, 3) uint8) chunks of up to `size`, reading files lazily. An unreadable image
    raises its InputError, or, with `on_error`, is handed to it and left out."""
    for s in range(0, len(items), size):
        chunk, images = [], []
        for it in items[s:s + size]:
            try:
                images.append(it.load())
            except InputError as e:
                if on_error is None:
                    raise
                on_error(it, e)
                continue
            chunk.append(it)
        if chunk:
            yield chunk, images


def apply_gain(image: np.ndarray, gain: float) -> np.ndarray:
    """A uint8 image (H, W[, C]) with its intensities multiplied by `gain` and clipped to 255 (an exposure change)."""
    if gain == 1.0:
        return image
    lut = np.clip(np.arange(256) * gain + 0.5, 0, 255).astype(np.uint8)
    return cv2.LUT(np.ascontiguousarray(image, dtype=np.uint8), lut)


VIEWS = {"none": ("",), "flips": ("", "h", "v", "hv"), "dihedral": ("", "h", "v", "hv", "t", "th", "tv", "thv")}
FEW_SHOTS = 16  # `augment: auto` turns dihedral on for fits on at most this many shots


def view_of(image: np.ndarray, view: str) -> np.ndarray:
    """An image (H, W[, C]) flipped left-right (h), upside down (v) and/or transposed (t, first), as `view` says."""
    out = image.swapaxes(0, 1) if "t" in view else image
    if "h" in view:
        out = out[:, ::-1]
    if "v" in view:
        out = out[::-1]
    return np.ascontiguousarray(out)


def augment_views(augment: str, shots: int | None) -> tuple[str, ...]:
    """The views a fit learns from (the identity "" first): `augment`, with auto = dihedral for few shots."""
    if augment == "auto":
        augment = "dihedral" if shots is not None and shots <= FEW_SHOTS else "none"
    return VIEWS[augment]


def check_gains(gains: Sequence[float] | str | None) -> tuple[float, ...]:
    """Exposure gains ("1.3,1.6" or a sequence) checked as FeatureMapConfig.exposure_gains: (0, 10], without 1
    and repeats."""
    from oddeye.image.config import FeatureMapConfig

    if gains is None:
        return ()
    if isinstance(gains, str):
        try:
            gains = [float(g) for g in gains.split(",") if g.strip()]
        except ValueError:
            raise InputError(f"exposure gains {gains!r}: give comma-separated numbers, e.g. 1.3,1.6,2") from None
    return FeatureMapConfig(exposure_gains=tuple(gains)).exposure_gains


def to_pixel_map(patch_map: np.ndarray, image_size: int, out_shape: tuple[int, int] | None,
                 sigma: float) -> np.ndarray:
    """Patch scores (h, w) -> upsampled to (S, S), Gaussian-smoothed, resized to out_shape (H, W): float32."""
    m = cv2.resize(patch_map.astype(np.float32), (image_size, image_size), interpolation=cv2.INTER_LINEAR)
    if sigma > 0:  # = ndimage.gaussian_filter(m, sigma, truncate=4.0) to ~1e-6, 3-4x faster
        k = 2 * int(4.0 * sigma + 0.5) + 1
        m = cv2.GaussianBlur(m, (k, k), sigma, borderType=cv2.BORDER_REFLECT)
    if out_shape is not None and tuple(out_shape) != m.shape:
        m = cv2.resize(m, (out_shape[1], out_shape[0]), interpolation=cv2.INTER_LINEAR)
    return m.astype(np.float32)


def region_box(amap: np.ndarray, threshold: float | None) -> tuple[float, float, float, float]:
    """Box (x1, y1, x2, y2) of the connected region above `threshold` holding the map's peak."""
    peak = np.unravel_index(int(np.argmax(amap)), amap.shape)
    thr = threshold if threshold is not None and threshold < amap[peak] else 0.5 * (amap[peak] + float(amap.mean()))
    lab, _ = ndimage.label(amap >= thr)
    ys, xs = np.nonzero(lab == lab[peak])
    if len(xs) == 0:
        return (float(peak[1]), float(peak[0]), float(peak[1] + 1), float(peak[0] + 1))
    return (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))


CALIB_FPR = 0.01  # share of new normal images allowed above the threshold, if their scores were Gaussian
CALIB_MIN_BOUND = 5  # held-out images needed for the prediction bound (with fewer, t explodes: their maximum)


def calibrate(scores: np.ndarray, pixel_values: np.ndarray) -> tuple[float | None, float | None]:
    """Image and pixel thresholds from held-out normal images. The image threshold is the larger of their maximum
    and the upper 99 % prediction bound of one more normal score (Student's t on their mean and spread): with the
    few images held out (6 of 64) the maximum alone sits inside the normal spread; below CALIB_MIN_BOUND images the
    bound is too wide to use and the maximum is the threshold. Pixel: their 99.9th percentile."""
    if len(scores) == 0:
        return None, None
    from scipy.stats import t as student_t

    scores = np.asarray(scores, dtype=np.float64)
    n, bound = len(scores), float(scores.max())
    if n >= CALIB_MIN_BOUND:
        t = float(student_t.ppf(1 - CALIB_FPR, n - 1))
        bound = max(bound, float(scores.mean() + t * scores.std(ddof=1) * np.sqrt(1 + 1 / n)))
    return bound, float(np.quantile(pixel_values, 0.999)) if pixel_values.size else None


def build_result(head: str, items: Sequence[ImageItem], images: Sequence[np.ndarray] | None,
                 image_scores: np.ndarray, maps: Sequence[np.ndarray | None], threshold: float | None,
                 pixel_threshold: float | None, out: str | Path | None = None, meta: dict[str, Any] | None = None,
                 what: str = "patch distance") -> Result:
    """A Result with one Score per item (map kept), events for scores above threshold, overlays under `out`."""
    from oddeye.core.viz import save_overlay

    res = Result(head=head, threshold=threshold, meta=dict(meta or {}))
    for k, it in enumerate(items):
        sc = Score(sample_id=it.id, score=float(image_scores[k]), label=it.label,
                   meta={"path": it.path} if it.path else {})
        amap = maps[k]
        if amap is not None:
            sc.maps["anomaly"] = AnomalyMap("pixel", amap)
            if out is not None:
                img = images[k] if images is not None else it.load()
                name = it.id.replace("/", "__").replace("#", "_") + ".png"
                vmax = max(float(amap.max()), pixel_threshold or 0.0) if pixel_threshold else None
                p = save_overlay(Path(out) / "overlays" / name, img, amap,
                                 vmin=float(min(amap.min(), 0.0)) if vmax else None, vmax=vmax)
                sc.artefacts["overlay"] = str(p)
        if threshold is not None and sc.score > threshold:
            box = region_box(amap, pixel_threshold) if amap is not None else None
            sc.reason = f"{what} {sc.score:.3g} above the normal limit {threshold:.3g}"
            res.events.append(Event(sample_id=it.id, score=sc.score, box=box, reason=sc.reason))
        res.scores.append(sc)
    return res


def check_nonempty(items: Sequence[Any], what: str = "training set") -> None:
    """Raise EmptyDataError naming `what` when it holds no images."""
    if len(items) == 0:
        raise EmptyDataError(f"the {what} holds no images", "point --train at a folder of normal images")


def split_calibration(items: list[ImageItem], seed: int = 0, max_calib: int = 16) -> tuple[list[ImageItem], list[ImageItem]]:
    """Hold out ~10 % (at most `max_calib`) of normal training images to set the threshold; none below 10 images."""
    n = len(items)
    k = min(max_calib, n // 10)
    if k == 0:
        return items, []
    rng = np.random.default_rng(seed)
    hold = set(rng.choice(n, size=k, replace=False).tolist())
    return [it for i, it in enumerate(items) if i not in hold], [it for i, it in enumerate(items) if i in hold]


def extractor_from_config(cfg: ExtractorConfig, device: str = "cpu", fit_bf16: bool | None = None) -> Any:
    """The feature extractor of `cfg`; with bf16 'auto', a model's features stay in the precision it was fitted in
    (`fit_bf16`, None: not known)."""
    from oddeye.retrieval.features import build_extractor

    kw = {k: v for k, v in cfg.to_dict().items() if v is not None}
    if fit_bf16 is not None and cfg.bf16 == "auto":
        kw["bf16"] = pinned_bf16(fit_bf16, device)
    return build_extractor(kw.pop("name"), device=device, **kw)


def pinned_bf16(fit_bf16: bool, device: str) -> bool:
    """Score with the precision a model was fitted with: its distances and threshold were measured in it (bf16
    moves Lite0 features by ~2.5 %). A bf16 model on a device without native bf16 runs float32, with a warning."""
    from oddeye.retrieval.features import bf16_is_fast

    if fit_bf16 and not bf16_is_fast(device):
        warnings.warn(f"this model was fitted with bfloat16 features, which this {device} cannot run natively; "
                      "scoring in float32 instead shifts patch distances by a few per cent: check the threshold, "
                      "or refit on this machine (`oddeye fit image`)", RuntimeWarning, stacklevel=3)
        return False
    return fit_bf16


def progress(iterable: Iterable[Any], total: int, desc: str, show: bool = True) -> Iterable[Any]:
    """A tqdm bar on stderr when `show` and there is enough to wait for (3 steps or more)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="batch", leave=False, disable=not show or total < 3)
