"""The Head contract every detector implements, the run context they share, and the model-folder manifest."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, Self, runtime_checkable

from oddeye.core.errors import ModelError
from oddeye.core.types import Result, to_jsonable

MANIFEST = "oddeye_model.json"
# How an evaluation spreads its per-item work (fn over items, results in order): the builtin map, or
# oddeye.scale.batch.map_on_ray (`--ray`).
Mapper = Callable[[Callable[[Any], Any], Iterable[Any]], Iterable[Any]]

# Manifest head name -> (the `oddeye score` command that scores it, "module:Class"). Strings only: core imports no head.
HEADS: dict[str, tuple[str, str]] = {
    "patchcore": ("image", "oddeye.image.patchcore:PatchCoreHead"),
    "gaussian": ("image", "oddeye.image.gaussian:GaussianHead"),
    "zero-shot": ("image", "oddeye.image.zeroshot:ZeroShotHead"),
    "video-prediction": ("video", "oddeye.video.prediction.head:PredictionHead"),
    "video-rules": ("video", "oddeye.video.rules.head:RulesHead"),
    "pointcloud": ("pointcloud", "oddeye.pointcloud.head:PointCloudHead"),
    "patrol": ("patrol", "oddeye.patrol.head:PatrolHead"),
}


def score_command(head: str) -> str:
    """The command that scores a model of `head`, e.g. 'oddeye score image'."""
    kind = HEADS.get(head, (None,))[0]
    return f"oddeye score {kind}" if kind else "oddeye score"


@dataclass
class RunContext:
    """What varies per call of fit/score, the same for every head; each head reads the fields that apply to it."""

    out: Path | None = None  # folder for artefacts: overlays, maps, plots, checkpoints
    progress: bool = True  # show progress bars
    resume: bool = False  # fit: continue from the checkpoints in `out`
    skip_bad: bool = False  # score: record an unreadable input as an error in the Result and go on
    keep_maps: bool | None = None  # score: keep dense maps in the Result (None: the head's default)
    shots: int | None = None  # fit: use only the first K normal samples (few-shot)
    poses: Any = None  # patrol: pose file(s) of the query run(s)
    callback: Callable[[Any], None] | None = None  # fit: called with the head's progress state
    callback_every_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.out is not None:
            self.out = Path(self.out)


def context(ctx: RunContext | None) -> RunContext:
    """`ctx`, or the default context when None."""
    return ctx if ctx is not None else RunContext()


@runtime_checkable
class Head(Protocol):
    """fit(normal samples) -> self, score(samples) -> Result, save(dir) -> Path, load(dir) -> head."""

    name: str
    config: Any  # the head's HeadConfig

    def fit(self, samples: Iterable[Any], *, ctx: RunContext | None = None) -> Self:
        """Learn what normal looks like from normal samples only."""
        ...

    def score(self, samples: Iterable[Any], *, ctx: RunContext | None = None) -> Result:
        """Score samples; higher is more anomalous."""
        ...

    def save(self, directory: str | Path) -> Path:
        """Write the fitted head to `directory` (with a manifest) and return it."""
        ...

    @classmethod
    def load(cls, directory: str | Path, *, device: str | None = None) -> Self:
        """Read a head written by save(); a directory of another head is a ModelError naming its command."""
        ...


def load_head(directory: str | Path, *, device: str | None = None) -> Head:
    """Load whatever head the model folder's manifest names."""
    import importlib

    found = read_manifest(directory)["head"]
    if found not in HEADS:
        raise ModelError(f"{directory} holds a '{found}' model, which this oddeye does not know",
                         "upgrade oddeye, or refit the model")
    module, cls = HEADS[found][1].split(":")
    return getattr(importlib.import_module(module), cls).load(directory, device=device)


def write_manifest(directory: str | Path, head: str, version: int = 1, **extra: Any) -> Path:
    """Write `oddeye_model.json` naming the head that owns `directory`; return its path."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    from oddeye import __version__

    doc = {"head": head, "format_version": version, "oddeye_version": __version__,
           "written": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra}
    path = d / MANIFEST
    path.write_text(json.dumps(to_jsonable(doc), indent=1))
    return path


def read_manifest(directory: str | Path, head: str | None = None, max_version: int | None = None) -> dict[str, Any]:
    """Read the manifest of `directory`; raise ModelError if absent, corrupt, or of another head."""
    d = Path(directory)
    path = d / MANIFEST
    if not d.is_dir():
        raise ModelError(f"model directory not found: {d}", "pass the --out folder of an `oddeye fit ...` run")
    if not path.is_file():
        raise ModelError(f"{d} is not an oddeye model directory (no {MANIFEST})",
                         "pass the --out folder of an `oddeye fit ...` run")
    try:
        doc = json.loads(path.read_text())
        found = doc["head"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ModelError(f"{path} is corrupt ({e})", "refit the model") from None
    if head is not None and found != head:
        raise ModelError(f"{d} holds a '{found}' model, not a '{head}' model",
                         f"score it with `{score_command(found)}`, or fit a '{head}' model")
    if max_version is not None and doc.get("format_version", 1) > max_version:
        raise ModelError(f"{d} was written by a newer oddeye (format {doc['format_version']})", "upgrade oddeye")
    return doc
