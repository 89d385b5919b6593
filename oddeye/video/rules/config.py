"""The settings of the rules head, one place: perception, appearance, induction, the LLM backend, deduction and
smoothing.

    cfg = RulesConfig(sigma=5, induction={"zone_weight": 1.0})   # ConfigError "RulesConfig.induction.x: ..." if bad
    RulesConfig.from_dict(cfg.to_dict()) == cfg                   # stored in the model folder's manifest
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from oddeye.core.errors import ConfigError
from oddeye.core.headconfig import HeadConfig, param
from oddeye.video.rules.rules import ATTRIBUTES, SET_ATTRIBUTES

NUMERIC_OBJECT_ATTRIBUTES = tuple(a for a, (_, scope) in ATTRIBUTES.items()
                                  if scope == "object" and a not in SET_ATTRIBUTES)
MAX_GRID = (12, 16)  # rows, columns
APPEARANCE_BACKBONES = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")


@dataclass
class PerceptionConfig(HeadConfig):
    """Offline perception: background subtraction, blobs, optical flow."""

    proc_height: int = param(120, ge=16,
                             doc="foreground is found on frames resized to this height (px; never upscaled)")
    background: str = param("median", choices=("median", "mog2"),
                            doc="median (learned from normal frames, slowly adapted) or mog2")
    bg_frames: int = param(120, ge=1, doc="normal frames sampled for the median background")
    bg_rate: float = param(0.02, ge=0.0, le=1.0, doc="adaptation rate of the median background on background pixels")
    diff_threshold: int = param(22, ge=0, le=255,
                                doc="grey levels a pixel must differ from the background to be foreground")
    min_area: float = param(0.0006, ge=0.0, lt=1.0, doc="smallest object, as a share of the frame area")
    close_px: int = param(5, ge=0, doc="closing kernel (px at processing scale) that joins body parts into one blob")
    flow: str = param("farneback", choices=("farneback", "dis", "none"),
                      doc="optical flow: farneback, dis (faster) or none (speed from the tracker only)")
    flow_height: int = param(80, ge=16, doc="optical flow runs on frames resized to this height (px; never upscaled)")


@dataclass
class InductionConfig(HeadConfig):
    """How rules are induced: attributes, quantile and margins, support, aggregation and validation."""

    attributes: tuple[str, ...] = param(("speed", "area", "height", "width"),
                                        choices=NUMERIC_OBJECT_ATTRIBUTES, doc="object attributes to induce rules for")
    quantile: float = param(0.995, gt=0.5, le=1.0,
                            doc="allowed high = this quantile of the normal values (low = 1 - q)")
    margin_k: float = param(1.0, ge=0.0, doc="margin = margin_k * (high - median), at least margin_floor * high")
    margin_floor: float = param(0.15, ge=0.0)
    flat_pad: float = param(1.0, ge=0.0, doc="where many normal values tie at the quantile, the limit sits this many "
                                             "margins above it")
    min_support: int = param(30, ge=1, doc="observations a zone (or band) needs for a rule of its own")
    presence_min: int = param(2, ge=0, doc="a zone is allowed when normal objects were seen there at least this often")
    count_rule: bool = param(True, doc="a rule on the number of moving objects per frame")
    kind_rule: bool = param(True, doc="shape kinds (tall / compact / wide) allowed per zone")
    kind_min_share: float = param(0.01, ge=0.0, le=1.0, doc="kinds making at least this share of a zone's objects")
    zone_rule: bool = param(True, doc="objects may appear only in zones where normal footage has them")
    zone_weight: float = param(0.1, gt=0.0, le=1.0, doc="judgement of an object in a zone where normal footage has "
                                                        "nobody, or of a crowd")
    size_weight: float = param(0.3, gt=0.0, le=1.0, doc="judgement of a breach of a size/shape/count rule")
    subsets: int = param(5, ge=1, doc="aggregation: induce on this many random subsets of frames ...")
    subset_frac: float = param(0.6, gt=0.0, le=1.0, doc="... each this share of the frames ...")
    recur: float = param(0.6, gt=0.0, le=1.0, doc="... and keep rules found in at least this share of them")
    redundant: float = param(0.1, ge=0.0, doc="drop a zone rule within this share of its band's rule")
    folds: int = param(4, ge=0,
                       doc="robust induction: drop attributes whose rules break on held-out normal footage ...")
    max_breach: float = param(0.01, ge=0.0, le=1.0, doc="... in more than this share of its frames (0 folds: keep all)")
    seed: int = param(0, ge=0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.attributes:
            raise ConfigError("InductionConfig.attributes", "name at least one attribute",
                              f"use some of {', '.join(NUMERIC_OBJECT_ATTRIBUTES)}")


@dataclass
class LLMConfig(HeadConfig):
    """The optional LLM (induction, aggregation, deduction) and VLM captioner; offline needs neither."""

    backend: str = param("offline", choices=("offline", "transformers", "http"),
                         doc="offline (no LLM), transformers (a local causal LM) or http (an OpenAI-compatible server)")
    model: Optional[str] = param(None, doc="transformers: local model folder; http: model name ($ODDEYE_LLM_MODEL)")
    url: Optional[str] = param(None, doc="http: base URL ($ODDEYE_LLM_BASE_URL), e.g. http://localhost:8000/v1")
    retries: int = param(2, ge=0, doc="extra attempts after a malformed answer")
    max_new_tokens: int = param(512, ge=1, doc="longest answer generated")
    induce_frames: int = param(24, ge=1, doc="normal frame descriptions the LLM induces rules from")
    subsets: int = param(3, ge=1, doc="LLM inductions on random halves of those, then one aggregation")
    deduce_frames: int = param(8, ge=0, doc="most anomalous flagged frames per video the LLM judges")
    captioner: Optional[str] = param(None, doc="local VLM folder (BLIP, LLaVA, ...) whose captions the LLM reads too")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.backend == "transformers" and not self.model:
            raise ConfigError("LLMConfig.model", "the transformers backend needs a local causal LM folder",
                              "pass --llm-model PATH")
        if self.captioner and self.backend == "offline":
            raise ConfigError("LLMConfig.captioner", "the captioner feeds the LLM, and the backend is offline",
                              "add --backend transformers or --backend http")


@dataclass
class AppearanceConfig(HeadConfig):
    """Appearance: each object's crop embedded with the shared backbone; its distance to the nearest normal crop is
    the attribute "appearance", whose rule flags an object that looks like none in the normal footage."""

    enabled: bool = param(False, doc="embed object crops and induce appearance rules (off: motion, size, place, "
                                     "count only)")
    crop: int = param(64, ge=32, le=256, doc="an object's box (padded) is resized to this square (px) for the backbone")
    margin: float = param(1.0, ge=0.0, doc="the appearance limit sits this many margins (high quantile - median of "
                                           "the normal distances) above their high quantile")
    weight: float = param(1.0, gt=0.0, le=1.0, doc="judgement of an object that breaks an appearance rule")
    every: int = param(1, ge=1, doc="measure on every n-th frame (and a track's first); a track keeps its last "
                                    "measure in between: about n times cheaper")
    bank: int = param(2000, ge=16, doc="normal crops kept in the index (a greedy coreset when there are more)")
    backbone: str = param("efficientnet-lite0", choices=APPEARANCE_BACKBONES, doc="the shared backbone that embeds "
                                                                                 "the crops")


@dataclass
class RulesConfig(HeadConfig):
    """Every setting of RulesHead that changes its results."""

    perception: PerceptionConfig = param(default_factory=PerceptionConfig)
    induction: InductionConfig = param(default_factory=InductionConfig)
    llm: LLMConfig = param(default_factory=LLMConfig)
    appearance: AppearanceConfig = param(default_factory=AppearanceConfig)
    grid: tuple[int, int] = param((4, 6), ge=1, doc="scene zone grid, rows x columns")
    sigma: float = param(10.0, ge=0.0, doc="temporal smoothing of the per-frame judgement (frames; 0: none)")
    soft: float = param(0.75, ge=0.0, doc="margin units below a rule's limit where the judgement starts to rise "
                                          "from 0 to 1 (0: a hard step)")
    persist: int = param(3, ge=1, doc="frames a track must break a rule before it counts")
    recheck: bool = param(False, doc="re-measure flagged speeds with full-resolution flow (on Ped2 it lowered frame "
                                     "AUROC, 0.942 vs 0.948)")
    flag_at: float = param(0.5, gt=0.0, le=1.0, doc="a frame is flagged (events) when it breaks a rule of this "
                                                    "judgement weight or more")
    warmup: int = param(4, ge=0, doc="few-shot: frames perceived before each shot frame")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.grid[0] > MAX_GRID[0] or self.grid[1] > MAX_GRID[1]:
            raise ConfigError("RulesConfig.grid", f"at most {MAX_GRID[0]} rows and {MAX_GRID[1]} columns, "
                                                  f"got {self.grid[0]}x{self.grid[1]}")
        if "appearance" in self.induction.attributes:
            raise ConfigError("RulesConfig.induction.attributes", "appearance is not measured unless switched on",
                              "leave it out of the attributes and switch appearance on: appearance.enabled")
