"""PatrolConfig: every setting of a PatrolHead, defaults written once, stored in the model folder's manifest."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from oddeye.core.errors import ModelError
from oddeye.core.headconfig import HeadConfig, param
from oddeye.patrol.change import ChangeParams
from oddeye.patrol.pairing import PairingParams

LEGACY_CONFIG_FILE = "patrol.json"  # where model folders written before the config moved into the manifest kept it


@dataclass
class PatrolConfig(HeadConfig):
    """Everything a PatrolHead needs besides the reference run."""

    backbone: str = param("efficientnet-lite0", doc="backbone of the patch features and global descriptors")
    image_size: int = param(160, ge=32, doc="backbone input (px) for the change map's patch features (a coarse gate; "
                                           "256: no better on DeepPCB trainval, 1.7x slower)")
    descriptor_size: int = param(128, ge=32, doc="backbone input (px) for the global descriptors used in pairing")
    layers: tuple[int, ...] | None = param(None, ge=0, doc="backbone blocks of the patch features "
                                                           "(None: the backbone's default)")
    use_features: bool = param(True, doc="use the backbone's patch features in the change map")
    threads: int | None = param(None, ge=1, doc="CPU threads (None: all, or $ODDEYE_THREADS)")
    max_side: int = param(640, ge=16, doc="frames are scaled so their longest side is at most this (px)")
    stride: int = param(1, ge=1, doc="use every n-th reference frame")
    detector: str = param("orb", choices=("orb", "sift", "akaze"), doc="keypoint detector of the alignment")
    ecc_levels: tuple[int, ...] = param((128, 256), ge=16, doc="coarse-to-fine ECC sizes (longest side, px)")
    event_threshold: float = param(0.1, ge=0, doc="frame score (max of the change map) above which a frame is flagged")
    merge_gap: int = param(2, ge=0, doc="flagged spans this many frames apart (e.g. around a 'no reference' frame) "
                                        "are one event")
    max_maps: int = param(64, ge=0, doc="change maps kept in the Result per run (the highest-scoring frames)")
    map_side: int = param(320, ge=8, doc="longest side (px) of the kept maps")
    change: ChangeParams = field(default_factory=ChangeParams, metadata={"doc": "knobs of the change map"})
    pairing: PairingParams = field(default_factory=PairingParams, metadata={"doc": "knobs of the pairing step"})

    @classmethod
    def from_model(cls, directory: Path, manifest: dict[str, Any]) -> PatrolConfig:
        """The config of a model folder: the manifest's "config", or patrol.json for folders written before it."""
        if "config" in manifest:
            return cls.from_dict(manifest["config"])
        path = directory / LEGACY_CONFIG_FILE
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ModelError(f"{path} is missing or corrupt ({e})", "refit with `oddeye fit patrol`") from None
        if not isinstance(doc, dict):
            raise ModelError(f"{path} is corrupt (not a JSON object)", "refit with `oddeye fit patrol`")
        return cls.from_dict(_known(cls, doc))


def _known(cls: type[HeadConfig], doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` without the keys `cls` (and its nested configs) does not know: old side files ignored extra keys."""
    out = {}
    for f in fields(cls):
        if f.name in doc:
            nested = f.default_factory if isinstance(f.default_factory, type) else None
            is_config = nested is not None and issubclass(nested, HeadConfig) and isinstance(doc[f.name], dict)
            out[f.name] = _known(nested, doc[f.name]) if is_config else doc[f.name]
    return out
