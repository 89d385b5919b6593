"""The evaluation contract's output (a table, then one JSON line) and benchmark records."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Mapping

from rich.console import Console
from rich.table import Table

from oddeye.core.types import to_jsonable


def eval_line(metrics: Mapping[str, Any], dataset: str, n_samples: int, wall_s: float, **extra: Any) -> dict[str, Any]:
    """The dict printed as the last stdout line of `oddeye eval`: metrics, data set, samples, wall time."""
    doc = {**metrics, "dataset": dataset, "n_samples": int(n_samples), "wall_s": round(float(wall_s), 3), **extra}
    return to_jsonable(doc)


def print_eval(doc: Mapping[str, Any], title: str = "evaluation", json_path: str | Path | None = None) -> None:
    """Print a table for a person, then `doc` as ONE JSON line (last stdout line); optionally save it."""
    console = Console(stderr=False, highlight=False)
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in doc.items():
        if isinstance(v, (dict, list)):
            continue
        table.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
    console.print(table)
    line = json.dumps(to_jsonable(dict(doc)), sort_keys=False)
    if json_path is not None:
        p = Path(json_path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(line + "\n")
    sys.stdout.flush()
    print(line, flush=True)


def machine_line() -> str:
    """One line describing this machine: CPU model, cores, RAM, load."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    load = ""
    if hasattr(os, "getloadavg"):
        load = f", load avg {os.getloadavg()[0]:.1f}"
    return f"{cpu}, {os.cpu_count()} cores{mem}{load}"


def record_benchmark(title: str, dataset: str, command: str | None, figures: Mapping[str, Any],
                     notes: str = "", results_md: str | Path | None = None) -> Path:
    """Append a dated section with `figures` to benchmarks/RESULTS.md (data set, command, machine, date)."""
    path = Path(results_md) if results_md else Path(__file__).resolve().parents[2] / "benchmarks" / "RESULTS.md"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("# Benchmark results\n\nEvery figure here was measured by the command shown; newest last.\n")
    if command is None:
        argv = list(sys.argv)
        if argv and argv[0].endswith(".py"):
            argv[0] = ".venv/bin/python " + os.path.relpath(argv[0], path.parent.parent)
        elif argv and argv[0].endswith("oddeye"):
            argv[0] = ".venv/bin/oddeye"
        command = " ".join(shlex.quote(a) if i else a for i, a in enumerate(argv))
    cmd = command
    lines = [f"\n## {title}", "",
             f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
             f"- data: {dataset}", f"- command: `{cmd}`", f"- machine: {machine_line()}", "",
             "| figure | value |", "|---|---|"]
    for k, v in to_jsonable(dict(figures)).items():
        lines.append(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |")
    if notes:
        lines += ["", notes]
    with path.open("a") as f:
        f.write("\n".join(lines) + "\n")
    return path


def finish_benchmark(title: str, dataset: str, figures: Mapping[str, Any], *, command: str | None = None,
                     notes: str = "", record: bool = True, table: bool = True) -> int:
    """A benchmark's last steps: print `figures` one per line (`table`), append them to RESULTS.md (`record`), and
    print them as the JSON line that ends stdout; returns 0, the script's exit status."""
    doc = to_jsonable(dict(figures))
    if table:
        width = max((len(k) for k in doc), default=0) + 2
        for key, value in doc.items():
            print(f"{key:<{width}} {value}")
    if record:
        record_benchmark(title, dataset, command, doc, notes=notes)
    print(json.dumps(doc, default=str), flush=True)
    return 0
