"""Retrieval: the one k-NN index (PatchIndex), coreset subsampling, and patch feature extractors."""

from __future__ import annotations

from typing import Any

__all__ = ["PatchIndex", "greedy_coreset"]


def __getattr__(name: str) -> Any:
    """Import PatchIndex / greedy_coreset lazily so `import oddeye.retrieval.x` stays light."""
    if name == "PatchIndex":
        from oddeye.retrieval.index import PatchIndex

        return PatchIndex
    if name == "greedy_coreset":
        from oddeye.retrieval.coreset import greedy_coreset

        return greedy_coreset
    raise AttributeError(name)
