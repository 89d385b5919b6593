"""Commands that belong to no head: `oddeye demo` and `oddeye version`."""

from __future__ import annotations

import importlib
import time
from pathlib import Path

import typer

from oddeye.core.errors import InputError

# Each module defines `run_demo(out: Path, db: str) -> list[str]`, returning lines for the summary.
DEMOS = (
    ("images", "industrial images", "oddeye.image.demo"),
    ("video", "video (frame prediction)", "oddeye.video.prediction.demo"),
    ("rules", "video (rules)", "oddeye.video.rules.demo"),
    ("pointcloud", "3D point clouds", "oddeye.pointcloud.demo"),
    ("patrol", "robot patrol", "oddeye.patrol.demo"),
    ("live", "live sources (oddeye watch)", "oddeye.live.demo"),  # last: its events land on the Live page
)


def register(cli) -> None:  # noqa: ANN001 - CliGroups, imported lazily to avoid a cycle
    """Add `demo` and `version` to the root command."""

    @cli.app.command("demo")
    def demo(
        out: Path = typer.Option(Path("oddeye-demo"), "--out", help="Folder for results, plots and the review store."),
        only: str = typer.Option("", "--only", help="Comma-separated subset of: images,video,rules,pointcloud,patrol,live."),
    ) -> None:
        """Run every head end to end on data oddeye generates itself, then print where the results are.

        Example: oddeye demo --out oddeye-demo
        """
        out.mkdir(parents=True, exist_ok=True)
        db = str((out / "store.db").resolve())
        wanted = {w.strip() for w in only.split(",") if w.strip()}
        summary: list[str] = []
        t_all = time.perf_counter()
        unknown = wanted - {k for k, _, _ in DEMOS}
        if unknown:
            raise InputError(f"--only: unknown part(s) {sorted(unknown)}", "choose from " + ",".join(k for k, _, _ in DEMOS))
        for key, title, mod_name in DEMOS:
            if wanted and key not in wanted:
                continue
            try:
                mod = importlib.import_module(mod_name)
            except ModuleNotFoundError as e:
                if e.name and mod_name.startswith(e.name):
                    continue
                raise
            typer.echo(f"== {title} ==")
            t0 = time.perf_counter()
            lines = mod.run_demo(out / key, db)
            summary.append(f"{title} ({time.perf_counter() - t0:.0f} s):")
            summary += [f"  {line}" for line in lines]
        typer.echo("\n".join(["", "oddeye demo finished in %.0f s. Results:" % (time.perf_counter() - t_all)] + summary))
        typer.echo(f"\nAll results are under {out.resolve()}")
        typer.echo(f"Open the review dashboard with:\n  .venv/bin/oddeye ui --db {db}")

    @cli.app.command("version")
    def version() -> None:
        """Print the oddeye version."""
        from oddeye import __version__

        typer.echo(__version__)
