"""The head interface every detector implements, and the model-directory manifest they share."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterable, Protocol, Self, runtime_checkable

from oddeye.core.errors import ModelError
from oddeye.core.types import Result, to_jsonable

MANIFEST = "oddeye_model.json"


@runtime_checkable
class Head(Protocol):
    """fit(normal samples) -> self, score(samples) -> Result, save(dir), load(dir)."""

    name: str

    def fit(self, samples: Iterable[Any]) -> Self:
        """Learn what normal looks like from normal samples only."""
        ...

    def score(self, samples: Iterable[Any]) -> Result:
        """Score samples; higher is more anomalous."""
        ...

    def save(self, directory: str | Path) -> Path:
        """Write the fitted head to `directory` (with a manifest) and return it."""
        ...

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        """Read a head written by save(); a directory of another head is a ModelError."""
        ...


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
                         f"use the command for '{found}', or fit a '{head}' model")
    if max_version is not None and doc.get("format_version", 1) > max_version:
        raise ModelError(f"{d} was written by a newer oddeye (format {doc['format_version']})", "upgrade oddeye")
    return doc
