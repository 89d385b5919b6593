"""What the `--auto` tests of every head share: `oddeye model info` on a model folder, and the check that the
recorded choice is the one `choose` makes from the recorded table."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import typer
from typer.testing import CliRunner

from oddeye.core import auto as A

ROW = re.compile(r"\s*\*?\s+\d+\s+\d\.\d{4}\s")  # a tried candidate's row of the table: [*] #, auroc, ...


def model_info(model: Path) -> tuple[str, list[list[str]]]:
    """(the output of `oddeye model info MODEL`, the split rows of its candidates that were tried)."""
    from oddeye.core.modelinfo import register

    app = typer.Typer()
    register(SimpleNamespace(app=app))
    res = CliRunner().invoke(app, ["model", "info", str(model)])
    assert res.exit_code == 0, res.output
    return res.output, [line.split() for line in res.output.splitlines() if ROW.match(line)]


def assert_info_table(model: Path, space: str, n_candidates: int) -> str:
    """`oddeye model info` names the space, has one row per candidate, one of them starred; returns the output."""
    out, rows = model_info(model)
    assert f"auto: search space '{space}'" in out and "chosen: " in out
    assert len(rows) == n_candidates and [r[0] == "*" for r in rows].count(True) == 1
    return out


def assert_choice_is_best(auto: dict[str, Any]) -> None:
    """The manifest's choice is within the tie of the best AUROC and is what `choose` picks from its table."""
    best = max(t["auroc"] for t in auto["trials"] if t["auroc"] is not None)
    assert auto["trials"][auto["chosen"]]["auroc"] >= best - A.TIE
    assert auto["chosen"] == A.choose([A.Trial(**t) for t in auto["trials"]])[0]
