"""`oddeye model info DIR`: what a model folder holds, for any head: the head, versions, its settings, and the
table of the `--auto` search that chose them (if it was fitted with --auto)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from oddeye.core.auto import table_lines
from oddeye.core.head import HEADS, read_manifest, score_command

SHOWN = ("head", "format_version", "oddeye_version", "written", "config", "auto")
TABLE = ("space", "metric", "times", "tie", "budget_s", "elapsed_s", "chosen", "chosen_settings", "reason", "trials")


def _flat(doc: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested settings as (dotted name, value) rows."""
    rows: list[tuple[str, Any]] = []
    for k, v in doc.items():
        if isinstance(v, dict) and v:
            rows += _flat(v, f"{prefix}{k}.")
        else:
            rows.append((f"{prefix}{k}", v))
    return rows


def info_lines(directory: str | Path) -> list[str]:
    """The manifest of a model folder as lines for a person: head, versions, config, other state, the auto table."""
    doc = read_manifest(directory)
    head = doc["head"]
    lines = [f"model: {Path(directory)}",
             f"head: {head}" + (f" (score it with `{score_command(head)}`)" if head in HEADS else ""),
             f"format: {doc.get('format_version', 1)}, written by oddeye {doc.get('oddeye_version', '?')} "
             f"on {doc.get('written', '?')}"]
    config = doc.get("config")
    if isinstance(config, dict):
        lines.append("config:")
        lines += [f"  {k} = {json.dumps(v)}" for k, v in _flat(config)]
    state = {k: v for k, v in doc.items() if k not in SHOWN}
    if state:
        lines.append("state:")
        lines += [f"  {k} = {json.dumps(v)}" for k, v in _flat(state)]
    auto = doc.get("auto")
    if isinstance(auto, dict):
        lines.append(f"auto: search space {auto.get('space', '?')!r}, scored by {auto.get('metric', '?')}; times in "
                     f"{auto.get('times', 'seconds')}")
        lines += [f"  {line}" for line in table_lines(auto)]
        extra = {k: v for k, v in auto.items() if k not in TABLE}
        if extra:
            lines.append("  " + ", ".join(f"{k} {json.dumps(v)}" for k, v in extra.items()))
    else:
        lines.append("auto: not fitted with --auto")
    return lines


def model_info(
    model_dir: Annotated[Path, typer.Argument(help="A model folder written by any `oddeye fit ...`.")],
) -> list[str]:
    """Print what a model folder holds: head, versions, settings, and the --auto search table if it has one.

    Example: oddeye model info models/bottle
    """
    lines = info_lines(model_dir)
    for line in lines:
        typer.echo(line)
    return lines


def register(cli: Any) -> None:
    """Add the `model` group with `model info`."""
    app = typer.Typer(help="Look at model folders.", no_args_is_help=True)
    app.command("info")(model_info)
    cli.app.add_typer(app, name="model")
