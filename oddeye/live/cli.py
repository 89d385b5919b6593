"""`oddeye watch CONFIG.yaml`, the one-source shortcut `oddeye watch --model DIR --source SRC`, and
`oddeye watch status --db URL`.

`watch` is a command group whose callback runs the watcher unless a subcommand (`status`) is named; a first
positional argument that is not a subcommand is the config file. `watch_sources` and `watch_status` are plain
module-level functions the demo and the tests call with plain arguments.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

from oddeye.core.errors import InputError
from oddeye.live.bench import bench_live
from oddeye.live.config import KINDS, SourceSpec
from oddeye.scale.runtime import RayOpt

DEFAULT_DB = "oddeye-live/store.db"
DB_HELP = "The review store: a SQLite file or a postgresql://user:pass@host:5432/db URL."
HELP = """Score live sources as they arrive: streams, webcams, looped video files, watched folders.

Each source has a live run in the review store: frame scores are appended every few seconds, events show
as open while they last, folder files are stored one by one. Streams that drop are reconnected (backoff
0.5 s doubling to 10 s), unreadable files are recorded as errors, SIGTERM or Ctrl-C closes every run, and
a watcher killed and started again resumes its runs without doubles. Format and faults: docs/live.md.

\b
  oddeye watch watch.yaml                                   every source in a config file
  oddeye watch --model models/rules --source rtsp://10.0.0.5/stream1
  oddeye watch --model models/rules --source 0              webcam 0
  oddeye watch --model models/rules --source demo.mp4 --loop --seconds 30
  oddeye watch --model models/patchcore --source incoming/ --glob '*.png'
  oddeye watch watch.yaml --ray                             one Ray actor per source, on this machine's cores
  oddeye watch watch.yaml --ray auto --db postgresql://...  on the Ray cluster (`ray start --head`)
  oddeye watch status --db oddeye-live/store.db             health of every source
  oddeye ui --db oddeye-live/store.db                       the Live page shows sources and events
"""


class WatchGroup(TyperGroup):
    """`watch` takes a config file as its first positional argument unless that names a subcommand."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        """Rewrite `watch CONFIG ...` to `watch --config CONFIG ...` so the group callback gets it."""
        takes_value = {o for p in self.params if getattr(p, "param_type_name", "") == "option" and not p.is_flag
                       for o in p.opts}
        out, k = list(args), 0
        while k < len(out):
            a = out[k]
            if a == "--":
                break
            if a.startswith("-"):
                k += 2 if a in takes_value else 1
                continue
            if a not in self.commands:
                out[k:k + 1] = ["--config", a]
            break
        return super().parse_args(ctx, out)

    def format_usage(self, ctx: typer.Context, formatter: Any) -> None:
        """Usage lines of the three forms."""
        p = ctx.command_path
        formatter.write(f"Usage: {p} CONFIG.yaml [--db URL] [--seconds S]\n"
                        f"   or: {p} --model DIR --source SRC [OPTIONS]\n"
                        f"   or: {p} status [--db URL]\n")


def watch_sources(
    ctx: typer.Context = None,  # type: ignore[assignment]  # given by typer; None when called from Python
    config: Annotated[Optional[Path], typer.Option(
        "--config", hidden=True, help="Watch config YAML (also the first argument).")] = None,
    db: Annotated[Optional[str], typer.Option("--db", help=f"{DB_HELP} Overrides the config's db "
                                                           f"(default: <out>/store.db).")] = None,
    model: Annotated[Optional[Path], typer.Option("--model", help="One source: the model folder that scores it.")
                     ] = None,
    source: Annotated[Optional[str], typer.Option("--source", help=(
        "One source: a stream URL (rtsp/http/tcp/udp...), a webcam index, a video file or a folder."))] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="One source: its name (default: from --source).")
                    ] = None,
    kind: Annotated[Optional[str], typer.Option("--kind", help=f"One source: {' | '.join(KINDS)} "
                                                               "(default: from --source).")] = None,
    loop: Annotated[bool, typer.Option("--loop", help="One source: play the video file again when it ends.")] = False,
    glob: Annotated[Optional[str], typer.Option("--glob", help="One source: which files of the folder are items, "
                                                               "e.g. '*.png' (default: all).")] = None,
    fps: Annotated[Optional[float], typer.Option("--fps", help="One source: frames scored per second (default: "
                                                               "every frame).")] = None,
    chunk_s: Annotated[Optional[float], typer.Option("--chunk-s", help=(
        f"One source: seconds of frames scored and stored together (default {SourceSpec.chunk_s:g})."))] = None,
    threshold: Annotated[Optional[float], typer.Option("--threshold", help=(
        "One source: events where the frame score is above this (default: the head's events)."))] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="One source: artefact folder (default "
                                                              "oddeye-live).")] = None,
    seconds: Annotated[Optional[float], typer.Option("--seconds", help="Stop after this many seconds "
                                                                       "(default: run until stopped).")] = None,
    ray: RayOpt = None,
    cpus_per_source: Annotated[float, typer.Option("--cpus-per-source", help=(
        "With --ray: CPUs Ray reserves for each source's actor (its torch/OpenCV threads too)."))] = 1.0,
) -> dict[str, Any] | None:
    """Watch the sources of a config file, or one source, until stopped; prints a JSON summary as the last line."""
    if ctx is not None and ctx.invoked_subcommand:
        return None
    from oddeye.live.config import load_config, one_source
    from oddeye.live.watcher import Watcher

    singles = dict(name=name, kind=kind, glob=glob, fps=fps, chunk_s=chunk_s, threshold=threshold, out=out)
    if seconds is not None and seconds <= 0:
        raise InputError(f"--seconds must be > 0, got {seconds:g}")
    if config is not None:
        given = [f"--{k.replace('_', '-')}" for k, v in dict(model=model, source=source, loop=loop or None,
                                                             **singles).items() if v is not None]
        if given:
            raise InputError(f"{', '.join(given)} belong to the one-source form, not to a config file",
                             "put these settings into the config's source entries, or drop the config file")
        cfg = load_config(config, db=db)
    else:
        if ctx is not None and model is None and source is None and db is None and seconds is None:
            typer.echo(ctx.get_help())
            raise typer.Exit(0)
        if model is None or source is None:
            raise InputError("nothing to watch: give a config file, or --model and --source",
                             "see `oddeye watch --help` for examples")
        cfg = one_source(str(model), source, loop=loop, db=db, **{k: (str(v) if isinstance(v, Path) else v)
                                                                  for k, v in singles.items()})
    if ray is None:
        summary = Watcher(cfg, seconds=seconds).run()
    else:
        summary = _watch_on_ray(cfg, ray, seconds, cpus_per_source)
    typer.echo(f"review store: {cfg.db}  (`oddeye watch status --db {cfg.db}`, `oddeye ui --db {cfg.db}`)")
    typer.echo(json.dumps({k: v for k, v in summary.items() if k != "per_source"}))
    if summary["failed"]:
        raise typer.Exit(1)
    return summary


def _watch_on_ray(cfg: Any, address: str, seconds: float | None, cpus_per_source: float) -> dict[str, Any]:
    """Run the Watcher with one Ray actor per source (a local runtime sized so every actor is placed, or the
    cluster at `address`); a store the actors could not share is refused first."""
    from oddeye.live.watcher import Watcher
    from oddeye.scale.live import RaySources, local_cpus
    from oddeye.scale.runtime import check_store, ray_runtime

    if cpus_per_source <= 0:
        raise InputError(f"--cpus-per-source must be > 0, got {cpus_per_source:g}")
    check_store(cfg.db, address)
    with ray_runtime(address, num_cpus=local_cpus(len(cfg.sources), cpus_per_source)) as ray_mod:
        return Watcher(cfg, seconds=seconds, runner=RaySources(ray_mod, cpus_per_source=cpus_per_source)).run()


def _age(t: dt.datetime | None) -> str:
    """'4 s ago' / '3 min ago' / '-' for a time in UTC."""
    if t is None:
        return "-"
    s = (dt.datetime.now(dt.timezone.utc) - t).total_seconds()
    return f"{s:.0f} s ago" if s < 120 else f"{s / 60:.0f} min ago" if s < 7200 else f"{s / 3600:.1f} h ago"


def watch_status(db: Annotated[str, typer.Option("--db", help=DB_HELP)] = DEFAULT_DB) -> list[dict[str, Any]]:
    """Print the health of every live source in the store as a table (state, fps, lag, drops, reconnects, ...)."""
    from rich.console import Console
    from rich.table import Table

    from oddeye.store.api import is_url, open_store

    if not is_url(db) and not Path(db).expanduser().is_file():
        raise InputError(f"no store at {Path(db).expanduser().resolve()}",
                         "pass the --db that `oddeye watch` writes to (default oddeye-live/store.db)")
    with open_store(db) as store:
        rows = store.health()
    if not rows:
        typer.echo(f"no live sources in {db} yet (start one with `oddeye watch`)")
        return rows
    table = Table(title=f"live sources in {db}")
    for col in ("source", "run", "state", "fps in", "fps scored", "lag s", "dropped", "reconnects", "frames",
                "items", "errors", "last event", "updated"):
        table.add_column(col, justify="left" if col in ("source", "state", "last event", "updated") else "right")
    for r in rows:
        state = r["state"] + (" (stale)" if r["stale"] else "")
        table.add_row(r["source"], str(r["run_id"] or "-"), state, f"{r['fps_in']:.1f}", f"{r['fps_scored']:.1f}",
                      f"{r['lag_s']:.2f}", str(r["dropped_frames"]), str(r["reconnects"]), str(r["frames"]),
                      str(r["items"]), str(r["errors"]), _age(r["last_event"]), _age(r["updated"]))
    Console(width=160).print(table)
    stale = [r["source"] for r in rows if r["stale"]]
    if stale:
        typer.echo(f"stale (no update for over 10 s; is its watcher running?): {', '.join(stale)}")
    return rows


def register(cli: Any) -> None:
    """Add `oddeye watch` (with its `status` subcommand) and `oddeye bench live`."""
    app = typer.Typer(cls=WatchGroup, help=HELP, invoke_without_command=True, no_args_is_help=True,
                      rich_markup_mode=None)
    app.callback()(watch_sources)
    app.command("status", help="Health of every live source in a store, as a table.")(watch_status)
    cli.app.add_typer(app, name="watch")
    cli.bench.command("live")(bench_live)
