"""Contract cases of the rules head (see tests/test_contract.py)."""

from __future__ import annotations

from pathlib import Path

from contract_support import ContractCase
from oddeye.core import synth
from oddeye.video.rules.head import RulesHead

SEED = 7


def _normal(folder: Path) -> list[Path]:
    """One normal frame folder of 120 frames of walkers."""
    return [synth.write_frames(synth.make_video(seed=SEED, n_frames=120, anomaly=None).frames, folder / "normal")]


def _tests(folder: Path) -> list[Path]:
    """Two frame folders of 80 frames with a fast and a big object from frame 30 to 60."""
    return [synth.write_frames(synth.make_video(seed=SEED, n_frames=80, anomaly=a, anomaly_span=(30, 60)).frames,
                               folder / f"test_{a}") for a in ("fast", "big")]


CASES: list[ContractCase] = [
    ContractCase(head="video-rules", make=lambda: RulesHead(sigma=4, induction={"subsets": 3, "folds": 2}),
                 train=_normal, test=_tests, bad=("sigma", -1.0)),
]
