"""Robot patrol: reference runs, pairing, alignment and change maps (reference-vs-query change detection)."""

from __future__ import annotations

from typing import Any

__all__ = ["PatrolHead", "PatrolConfig", "ReferenceRun", "align", "change_map", "pair_frames"]

_WHERE = {"PatrolHead": "head", "PatrolConfig": "config", "ReferenceRun": "reference", "align": "align",
          "change_map": "change", "pair_frames": "pairing"}


def __getattr__(name: str) -> Any:
    """Import the public names lazily (keeps `oddeye --help` fast)."""
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"oddeye.patrol.{_WHERE[name]}"), name)
    raise AttributeError(name)
