"""`oddeye bench scale`: batch scoring on Ray (1, 2, ... workers) against the plain loop; the last line is JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from oddeye.core.errors import InputError
from oddeye.scale.bench import PED2, TILES


def _counts(text: str) -> list[int]:
    """'1,2' -> [1, 2]; anything else is an InputError."""
    try:
        counts = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise InputError(f"--workers {text!r}: give worker counts separated by commas, e.g. 1,2") from None
    if not counts or counts[0] < 1:
        raise InputError(f"--workers {text!r}: give worker counts >= 1, e.g. 1,2")
    return counts


def bench_scale(
    workers: Annotated[str, typer.Option("--workers", help="Ray worker counts to time, e.g. 1,2 (speedup: the "
                                                           "most over the fewest; overhead: 1 over the plain loop).")
                       ] = "1,2",
    videos: Annotated[int, typer.Option("--videos", min=1, max=12, help="Ped2 test clips scored.")] = 12,
    images: Annotated[int, typer.Option("--images", min=1, help="Magnetic-tile images scored.")] = 128,
    ped2: Annotated[Path, typer.Option("--ped2", help="The UCSD Ped2 folder.")] = PED2,
    tiles: Annotated[Path, typer.Option("--tiles", help="The magnetic-tile folder.")] = TILES,
    db: Annotated[Optional[str], typer.Option(
        "--db", help="Store the merged results are written to for store_rows_per_s (default: a new SQLite file).")
    ] = None,
    work: Annotated[Optional[Path], typer.Option("--work", help="Folder for the models (default: a temp folder).")
                    ] = None,
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="Timed rounds; each figure is their median.")] = 3,
    no_record: Annotated[bool, typer.Option("--no-record", help="Do not append to benchmarks/RESULTS.md.")] = False,
) -> dict[str, Any]:
    """Score Ped2 test clips (video-rules) and magnetic-tile images (PatchCore) in a plain loop and on a local Ray
    runtime with each worker count: speedup, overhead, store rows/s, per-worker images/s and frames/s.

    Example: oddeye bench scale --workers 1,2 --videos 12 --images 128
    """
    from oddeye.scale.bench import bench_json, print_table, run_scale_bench

    counts = _counts(workers)
    doc = run_scale_bench(counts, videos, images, ped2=ped2, tiles=tiles, db=db, work=work, log=typer.echo,
                          rounds=rounds)
    print_table(doc, typer.echo)
    if not no_record:
        from oddeye.core.report import record_benchmark

        record_benchmark(f"Ray batch scoring, {', '.join(map(str, counts))} worker(s)",
                         f"UCSD Ped2 (Mahadevan et al. 2010), first {videos} test clips, video-rules head fitted on "
                         f"the training frames; magnetic tile (Huang et al. 2018), {images} test images (seeded), "
                         "PatchCore fitted on a seeded share of MT_Free", None, doc,
                         notes="One thread per Ray worker and in the plain loop, which runs in a process of its "
                               "own per round (`speedup`, `overhead`: W workers on W cores); plain_all_cores: the "
                               "plain loop with every core's threads. Each worker count warmed up (models loaded in "
                               "every worker) right before its timed run: steady-state throughput; "
                               "model_loads_in_timed_runs counts loads that still fell in a timed run. "
                               f"Each figure is the median of {rounds} interleaved rounds.")
    typer.echo(bench_json(doc))
    return doc


def register(cli: Any) -> None:
    """Add `oddeye bench scale` and `oddeye bench store`."""
    from oddeye.scale.store_bench import bench_store

    cli.bench.command("scale")(bench_scale)
    cli.bench.command("store")(bench_store)
