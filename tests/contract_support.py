"""What the one contract test needs of each head: how to make it small, its data, and a value its config refuses."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from oddeye.core.head import Head, RunContext
from oddeye.core.types import Result


@dataclass
class ContractCase:
    """One head under the contract test; `train` / `test` build samples under a folder (oddeye.core.synth data)."""

    head: str  # its manifest name, e.g. "patchcore"
    make: Callable[[], Head]  # a fresh unfitted head, small enough to fit in seconds
    train: Callable[[Path], list[Any]]
    test: Callable[[Path], list[Any]]
    bad: tuple[str, Any]  # (config field, a value the config must refuse)
    ctx: Callable[[Path], RunContext] = lambda out: RunContext(out=out, progress=False)

    def __str__(self) -> str:
        return self.head


def assert_same_result(a: Result, b: Result) -> None:
    """Two Results are identical: head, threshold, every score, map, series and event (artefact paths aside)."""
    assert a.head == b.head
    assert a.threshold == b.threshold or (a.threshold is not None and b.threshold is not None
                                          and np.isnan(a.threshold) and np.isnan(b.threshold))
    assert [s.sample_id for s in a.scores] == [s.sample_id for s in b.scores]
    for x, y in zip(a.scores, b.scores):
        np.testing.assert_array_equal(x.score, y.score, err_msg=f"score of {x.sample_id}")
        assert x.label == y.label and x.reason == y.reason, x.sample_id
        assert sorted(x.maps) == sorted(y.maps), x.sample_id
        for name in x.maps:
            assert x.maps[name].kind == y.maps[name].kind
            np.testing.assert_array_equal(x.maps[name].values, y.maps[name].values, err_msg=f"{x.sample_id} {name}")
        for series in ("frame_scores", "frame_times", "frame_indices"):
            u, v = getattr(x, series), getattr(y, series)
            assert (u is None) == (v is None), f"{x.sample_id} {series}"
            if u is not None:
                np.testing.assert_array_equal(u, v, err_msg=f"{x.sample_id} {series}")
    assert len(a.events) == len(b.events)
    for e, f in zip(a.events, b.events):
        assert (e.sample_id, e.start_frame, e.end_frame, e.box, e.reason) == \
            (f.sample_id, f.start_frame, f.end_frame, f.box, f.reason)
        np.testing.assert_array_equal(e.score, f.score)
