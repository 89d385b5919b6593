"""The rules head's model folder: rules.yaml, zones.yaml, background.npy, fit.json, the manifest with the config, and
with appearance on the appearance/ folder (index of normal crops and their thumbnails).

Folders of format 1 (written before the settings moved into the manifest) kept every setting in perception.json;
they still load, with the settings they were scored with. Folders written before appearance existed have no
"appearance" setting and load with it off (an older oddeye refuses a folder that has one, naming the setting).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from oddeye.core.errors import ModelError
from oddeye.core.head import read_manifest, write_manifest
from oddeye.video.rules.appearance import Appearance
from oddeye.video.rules.config import RulesConfig
from oddeye.video.rules.rules import RuleSet
from oddeye.video.rules.zones import ZoneMap

HEAD = "video-rules"
FORMAT = 2
RULES_FILE = "rules.yaml"
ZONES_FILE = "zones.yaml"
BACKGROUND_FILE = "background.npy"
STATE_FILE = "fit.json"  # what fitting measured: scene_baseline, fit info
APPEARANCE_DIR = "appearance"
LEGACY_FILE = "perception.json"  # format 1: the settings and the state
# format-1 folders that lack these keys were scored with these values
LEGACY_DEFAULTS: dict[str, Any] = {"soft": 0.75, "flag_at": 0.5, "warmup": 4}
LEGACY_KEYS = ("sigma", "soft", "flag_at", "persist", "recheck", "warmup")


def write_model(directory: str | Path, config: RulesConfig, rules: RuleSet, zones: ZoneMap, background: np.ndarray,
                state: dict[str, Any], appearance: Appearance | None = None) -> Path:
    """Write a fitted rules head (background (h, w) float32 at processing scale) to `directory`; return it."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(d / APPEARANCE_DIR, ignore_errors=True)  # re-saved over an older fit: no stale crops
    if appearance is not None:
        appearance.save(d / APPEARANCE_DIR)
    rules.save(d / RULES_FILE)
    (d / ZONES_FILE).write_text(yaml.safe_dump(zones.to_dict(), sort_keys=False, width=120))
    (d / STATE_FILE).write_text(json.dumps(state, indent=1))
    (d / LEGACY_FILE).unlink(missing_ok=True)  # re-saved over a format-1 folder: the manifest holds the settings now
    np.save(d / BACKGROUND_FILE, background)
    write_manifest(d, HEAD, FORMAT, config=config.to_dict(), n_rules=len(rules))
    return d


def read_model(directory: str | Path) -> tuple[RulesConfig, RuleSet, ZoneMap, np.ndarray, dict[str, Any]]:
    """(config, rules, zones, background, state) of a folder written by write_model() or by a format-1 oddeye."""
    d = Path(directory)
    doc = read_manifest(d, head=HEAD, max_version=FORMAT)
    legacy = "config" not in doc
    try:
        state = json.loads((d / (LEGACY_FILE if legacy else STATE_FILE)).read_text())
        zones = ZoneMap.from_dict(yaml.safe_load((d / ZONES_FILE).read_text()), str(d / ZONES_FILE))
        background = np.load(d / BACKGROUND_FILE).astype(np.float32)
        config = _legacy_config(state, zones) if legacy else RulesConfig.from_dict(doc["config"])
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as e:
        raise ModelError(f"{d}: model files are missing or corrupt ({e})",
                         "refit with `oddeye fit video-rules`") from None
    if tuple(config.grid) != (zones.rows, zones.cols):
        raise ModelError(f"{d / ZONES_FILE} holds a {zones.rows}x{zones.cols} grid but the model's config says "
                         f"{config.grid[0]}x{config.grid[1]}",
                         "restore zones.yaml, or refit with `oddeye fit video-rules`")
    return config, RuleSet.load(d / RULES_FILE), zones, background, state


def read_appearance(directory: str | Path, config: RulesConfig, device: str = "cpu") -> Appearance | None:
    """The appearance index of a folder whose config has appearance on (None when off); ModelError if missing."""
    if not config.appearance.enabled:
        return None
    d = Path(directory) / APPEARANCE_DIR
    try:
        return Appearance.load(d, config.appearance, device)
    except (OSError, ValueError, KeyError, ModelError) as e:
        raise ModelError(f"{d}: the appearance index is missing or corrupt ({getattr(e, 'message', e)})",
                         "refit with `oddeye fit video-rules`") from None


def _legacy_config(params: dict[str, Any], zones: ZoneMap) -> RulesConfig:
    """The config of a format-1 folder from its perception.json (a loaded format-1 model scored without an LLM)."""
    settings = {k: params[k] for k in LEGACY_KEYS if k in params}
    return RulesConfig.from_dict({"perception": params["perception"], "induction": params["induction"],
                                  "grid": [zones.rows, zones.cols], **settings}, defaults=LEGACY_DEFAULTS)
