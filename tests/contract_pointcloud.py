"""Contract cases of the pointcloud head (see tests/test_contract.py)."""

from __future__ import annotations

from contract_support import ContractCase

CASES: list[ContractCase] = []
