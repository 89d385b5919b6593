"""The `--auto` and `--auto-minutes` options, one definition for every head's `fit` and `eval` command."""

from __future__ import annotations

from typing import Annotated

import typer


Auto = Annotated[bool, typer.Option("--auto", help=(
    "Choose the settings from the normal data alone: fit each candidate of the head's search space on part of it, "
    "score the rest plus synthetic anomalies made from it, keep the best (options you give stay fixed); the table "
    "goes into the model's manifest (`oddeye model info`)."))]
AutoMinutes = Annotated[float, typer.Option("--auto-minutes", min=0.0, help=(
    "Time budget of one --auto search in minutes (eval: one search per fold or category); candidates left when it "
    "runs out are skipped (and listed)."))]
