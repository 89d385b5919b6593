"""Contract cases of the patrol head (see tests/test_contract.py)."""

from __future__ import annotations

from pathlib import Path

from contract_support import ContractCase
from oddeye.core import synth
from oddeye.patrol.head import PatrolHead


def _route() -> synth.SynthRoute:
    return synth.make_route(seed=0, n_frames=10, size=(96, 128), n_objects=1)


def _reference(folder: Path) -> list[Path]:
    return [synth.write_frames(_route().reference, folder / "reference")]


def _query(folder: Path) -> list[Path]:
    return [synth.write_frames(_route().query, folder / "query")]


CASES: list[ContractCase] = [
    ContractCase(head="patrol", make=lambda: PatrolHead(threads=1, image_size=64, descriptor_size=64),
                 train=_reference, test=_query, bad=("stride", 0)),
]
