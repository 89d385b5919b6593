"""Settings of the image heads: one config dataclass per head, defaults written once, stored in the manifest.

    PatchCoreConfig(coreset=0.2, extractor={"image_size": 128})   # a partial extractor dict takes the defaults
    PatchCoreHead(coreset=0.2)                                    # the same, through the head's constructor
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, TypeVar

from oddeye.core.errors import ConfigError
from oddeye.core.headconfig import HeadConfig, param
from oddeye.retrieval.index import KINDS

C = TypeVar("C", bound=HeadConfig)

# settings a version-1 manifest (before "config") may lack, with the value such a model was scored with
LEGACY_MISSING: dict[str, Any] = {"score_sigma": 0.0, "retrieve_patches": 0, "max_pool": None}


@dataclass
class ExtractorConfig(HeadConfig):
    """The patch feature extractor (oddeye.retrieval.features.build_extractor) a model is fitted with."""

    name: str = param("efficientnet-lite0", doc="backbone: efficientnet-lite0 | efficientnet-lite1 | "
                                                "efficientnet-lite2 | hf:<folder or hub id> | torchscript:<file.pt>")
    image_size: int = param(256, ge=32, doc="images are resized to this square size (px)")
    layers: tuple[int, ...] | None = param(None, ge=0, doc="backbone blocks to use (None: the backbone's default)")
    target_dim: int | None = param(None, ge=1, doc="pool features to this many channels (None: keep)")
    patch_size: int = param(3, ge=1, doc="patch features are averaged over this many neighbouring patches")
    intensity: str = param("raw", doc="raw | standardize (per-image mean/std: ignore exposure differences)")
    bf16: bool | str | None = param("auto", choices=("auto", True, False),
                                    doc="bfloat16 autocast ('auto': where the device runs it natively)")
    channels_last: bool | None = param(True, doc="Lite backbones: channels-last memory layout")
    normalize: str | None = param(None, choices=("lite", "imagenet"), doc="input normalisation (None: the backbone's)")
    weights: str | None = param(None, doc="Lite backbones: weights file (None: the installed package or the oddeye cache)")
    compile: bool = param(False, doc="Lite backbones: torch.compile the backbone (10-40 s once per process)")
    runtime: str = param("auto", doc="Lite backbones on CPU: auto | onnx | torch")

    def __post_init__(self) -> None:
        super().__post_init__()
        from oddeye.retrieval.features import INTENSITY_MODES  # here, not at import: it loads torch
        from oddeye.retrieval.features_onnx import RUNTIMES

        for name, allowed in (("intensity", INTENSITY_MODES), ("runtime", RUNTIMES)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{type(self).__name__}.{name}",
                                  f"must be one of {', '.join(map(repr, allowed))}, got {getattr(self, name)!r}")


@dataclass
class ImageConfig(HeadConfig):
    """Settings every image head has."""

    extractor: ExtractorConfig = param(default_factory=ExtractorConfig, doc="the patch feature extractor")
    batch_size: int = param(16, ge=1, doc="images per feature-extraction batch")
    seed: int = param(0, doc="seed of the calibration split, random pools, coresets and zero-shot groups")
    sigma: float = param(4.0, ge=0, doc="Gaussian smoothing of the pixel map (px of the model input)")
    border: int = param(0, ge=0, doc="outer ring of patches left out of image scores")


@dataclass
class FeatureMapConfig(ImageConfig):
    """Settings PatchCore and the Gaussian head share."""

    score_sigma: float = param(1.0, ge=0, doc="smooth patch scores over this many patches before the image max")
    exposure_gains: tuple[float, ...] = param((), gt=0, le=10, doc="also learn from every normal image with its "
                                                                  "intensities times each gain (1 and repeats dropped)")
    augment: str = param("auto", choices=("auto", "none", "flips", "dihedral"), doc=(
        "also learn from flipped / turned copies of every normal image: flips (3 more), dihedral (7 more: flips, "
        "transposes); auto: dihedral when fitting on few shots (fit with shots <= 16), else none"))

    def __post_init__(self) -> None:
        super().__post_init__()
        self.exposure_gains = tuple(dict.fromkeys(g for g in self.exposure_gains if g != 1.0))


@dataclass
class PatchCoreConfig(FeatureMapConfig):
    """PatchCore: a coreset memory bank (or an image-conditioned one) of normal patch features."""

    coreset: float = param(0.1, gt=0, le=1, doc="share of the (pooled) normal patches kept in the memory bank")
    max_bank: int | None = param(None, ge=1, doc="cap on the memory bank size (None: none)")
    num_neighbors: int = param(9, ge=1, doc="bank neighbours of the PatchCore re-weighting")
    index_kind: str = param("auto", choices=(*KINDS, "auto"), doc="PatchIndex kind of the bank")
    max_pool: int | None = param(200_000, ge=1, doc="random pool of patches the coreset is chosen from (None: all)")
    position_weight: float = param(0.0, ge=0, doc="weight of each patch's (row, column) appended to its feature "
                                                  "(0: compare with patches from anywhere)")
    retrieve: int = param(0, ge=0, doc="compare each image only with its K nearest normal images (0: global bank)")
    retrieve_stride: int = param(2, ge=1, doc="with retrieve and retrieve_patches 0: keep every n-th row and column")
    retrieve_patches: int = param(64, ge=0, doc="with retrieve: coreset patches kept per normal image")


@dataclass
class GaussianConfig(FeatureMapConfig):
    """Gaussian head: one Gaussian per feature-map location (local) or one for all patches (global)."""

    mode: str = param("local", choices=("local", "global"), doc="local (per location, PaDiM-like) | global")


@dataclass
class ZeroShotConfig(ImageConfig):
    """Zero-shot mutual scoring: test images score each other in seeded groups."""

    group_size: int = param(32, ge=2, doc="images compared with each other at once")
    percentile: float = param(10.0, ge=0, le=100, doc="patch score = this percentile of the distances to the others")
    pool: int = param(2, ge=1, doc="average-pool the patch grid by this factor")
    max_refs: int = param(8, ge=0, doc="known-normal images kept from fit() as extra comparison images")


def config_from_manifest(cls: type[C], doc: dict[str, Any]) -> C:
    """The config of a model folder: its manifest's "config", or, for folders written before it (format 1), the
    settings kept at the manifest's top level (the extractor's without the fitted precision `fit_bf16`)."""
    if "config" in doc:
        return cls.from_dict(doc["config"])
    extractor = {k: v for k, v in dict(doc.get("extractor") or {}).items() if k != "fit_bf16"}
    known = {f.name for f in fields(cls)}
    legacy = {k: v for k, v in {**LEGACY_MISSING, **doc}.items() if k in known}
    return cls.from_dict({}, defaults={**legacy, "extractor": extractor})
