"""`oddeye bench store`: how fast the review store takes the writes of live sources, from 1, 2, 4 ... writer
processes at once: series chunks (Store.append_series) and event upserts (Store.upsert_event), into a SQLite file
and, when --db is a PostgreSQL URL, into that server too; one write per transaction and `--batch` writes per
transaction (Store.batch). The last stdout line is JSON.

    oddeye bench store                                          # a temporary SQLite file
    oddeye bench store --db postgresql://user@host/db --writers 1,2,4,8 --seconds 10 --batch 10

Each writer is a process with its own Store and its own live run (as each `watch --ray` actor is), so the figures
include the connection, the transaction and the lock each call takes. A chunk holds `--frames` frames (20: 2 s of a
10 fps camera, what a source with chunk_s 2 writes). The bench's runs are deleted from the store at the end.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import tempfile
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from oddeye.core.errors import InputError

PHASES = ("chunks", "events")
EVENT_UPDATES = 4  # upserts per event after its insert (the last one closes it), as a live event grows


def _write(store: Any, phase: str, run_id: int, source: str, n: int, frames: int, scores: np.ndarray) -> None:
    """The n-th write of a phase: a series chunk of `frames` frames, or an event upsert (1 insert + updates)."""
    if phase == "chunks":
        idx = np.arange(n * frames, (n + 1) * frames, dtype=np.int64)
        store.append_series(run_id, source, {"frame_scores": scores, "frame_indices": idx,
                                             "frame_times": idx / 10.0})
        return
    key, step = divmod(n, EVENT_UPDATES + 1)
    first = key * 100
    store.upsert_event(run_id, f"{source}:{first}", sample_id=source, score=0.5 + 0.1 * step, start_frame=first,
                       end_frame=first + 10 * step, start=first / 10.0, end=(first + 10 * step) / 10.0,
                       reason="bench", open=step < EVENT_UPDATES)


def _writer(db: str, source: str, frames: int, seconds: float, batch_size: int, barrier: Any, results: Any) -> None:
    """One writer process: its run id, then for each phase: wait for the others, write for `seconds`, report
    (phase, writes, s). Batched phases write `batch_size` per transaction. A failure is reported as ("error", text)
    and breaks the barrier so that nobody waits."""
    from oddeye.store.api import open_store

    try:
        with open_store(db) as store:
            run_id = store.open_live_run(source, head="bench", model="bench", source_kind="stream")
            results.put(("run", run_id, 0.0))
            scores = np.random.default_rng(0).random(frames).astype(np.float32)
            for phase in phases(batch_size):
                what, k = phase.removeprefix("batched_"), batch_size if phase.startswith("batched_") else 1
                barrier.wait()
                n, t0 = 0, time.perf_counter()
                while time.perf_counter() - t0 < seconds:
                    with store.batch() if k > 1 else nullcontext():
                        for _ in range(k):
                            _write(store, what, run_id, source, n, frames, scores)
                            n += 1
                results.put((phase, n, time.perf_counter() - t0))
    except Exception as e:  # noqa: BLE001 - sent to the parent, which raises it
        results.put(("error", f"{type(e).__name__}: {e}", 0.0))
        barrier.abort()


def phases(batch_size: int) -> tuple[str, ...]:
    """The phases measured: chunks and events one per transaction, and batched too when batch_size > 1."""
    return PHASES + (tuple(f"batched_{p}" for p in PHASES) if batch_size > 1 else ())


def measure(db: str, writers: int, *, seconds: float, frames: int, tag: str, batch_size: int = 1) -> dict[str, float]:
    """chunks_per_s and events_per_s (and per writer) of `writers` processes writing into `db` at once; with
    batch_size > 1 also batched_chunks_per_s and batched_events_per_s (batch_size writes per transaction)."""
    ctx = mp.get_context("spawn")  # each writer opens its own Store (never one inherited through fork)
    barrier, results = ctx.Barrier(writers + 1), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(db, f"bench-store-{tag}-w{writers}-{i}", frames, seconds,
                                               batch_size, barrier, results), daemon=True) for i in range(writers)]
    for p in procs:
        p.start()
    todo = phases(batch_size)
    got: dict[str, list[tuple[int, float]]] = {ph: [] for ph in todo}
    runs: list[int] = []

    def take(timeout: float) -> None:
        what, n, s = results.get(timeout=timeout)
        if what == "error":
            raise InputError(f"a writer of {describe(db)} failed: {n}")
        if what == "run":
            runs.append(int(n))
        else:
            got[what].append((n, s))

    try:
        try:
            for _ in todo:  # the parent takes part: a phase starts when every writer is ready for it
                barrier.wait(timeout=120 + seconds)
        except threading.BrokenBarrierError:  # a writer failed: its message is in the queue
            while True:
                take(timeout=30)
        while len(runs) < writers or sum(map(len, got.values())) < writers * len(todo):
            take(timeout=120 + seconds)
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
        _delete_runs(db, runs)
    out: dict[str, float] = {}
    for phase in todo:
        key = f"{phase}_per_s"
        rate = sum(n / s for n, s in got[phase])
        out[key] = round(rate, 1)
        out[f"{key}_per_writer"] = round(rate / writers, 1)
    return out


def describe(db: str) -> str:
    """The store named for a person (no password)."""
    from oddeye.store import engine

    return engine.describe(engine.store_url(db))


def _delete_runs(db: str, runs: list[int]) -> None:
    """Remove the bench's runs (and what hangs on them) from the store."""
    from oddeye.store.api import open_store

    if not runs:
        return
    with open_store(db) as store:
        for run_id in runs:
            store.delete_run(run_id)


def _backends(db: str | None, tmp: Path) -> list[tuple[str, str]]:
    """(name, store) measured: a SQLite file (--db if it is one, else a temporary one) and a PostgreSQL --db."""
    from oddeye.store.api import is_url

    if db is not None and is_url(db):
        if not db.startswith(("postgresql:", "postgresql+", "postgres:")):
            raise InputError(f"--db {db}: not a PostgreSQL URL or a SQLite file", "pass postgresql://USER@HOST/DB")
        return [("sqlite", str(tmp / "bench.db")), ("postgresql", db)]
    return [("sqlite", str(Path(db).expanduser().resolve()) if db else str(tmp / "bench.db"))]


def _writer_counts(text: str) -> list[int]:
    """'1,2,4' -> [1, 2, 4]; each count >= 1."""
    try:
        counts = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise InputError(f"--writers must be a comma-separated list of counts >= 1, e.g. 1,2,4; got {text!r}")
    return counts


def bench_store(
    db: Annotated[str | None, typer.Option("--db", help=(
        "A postgresql:// URL to measure besides a temporary SQLite file, or a SQLite file to measure instead of "
        "the temporary one. The bench's runs are deleted at the end."))] = None,
    writers: Annotated[str, typer.Option("--writers", help="Writer process counts to measure, comma-separated.")
                       ] = "1,2,4",
    seconds: Annotated[float, typer.Option("--seconds", help="Seconds each writer count writes, per phase.")] = 5.0,
    frames: Annotated[int, typer.Option("--frames", help="Frames per series chunk (20: 2 s of a 10 fps camera).")
                      ] = 20,
    batch: Annotated[int, typer.Option("--batch", help=(
        "Also measure writes batched this many per transaction (Store.batch); 1: not batched."))] = 10,
    no_record: Annotated[bool, typer.Option("--no-record", help="Do not append to benchmarks/RESULTS.md.")] = False,
) -> dict[str, Any]:
    """Write rate of the store from N writer processes: series chunks/s and event upserts/s per writer count, one
    per transaction and batched, into SQLite and PostgreSQL; prints a table, then one JSON line
    ({store: {writers: {chunks_per_s, events_per_s, batched_chunks_per_s, ...}}})."""
    counts = _writer_counts(writers)
    if seconds <= 0 or frames < 1 or batch < 1:
        raise InputError(f"--seconds must be > 0, --frames and --batch >= 1; got {seconds:g}, {frames}, {batch}")
    say = lambda line: typer.echo(line, err=True)  # noqa: E731
    out: dict[str, Any] = {"seconds": seconds, "frames_per_chunk": frames, "batch": batch, "writers": counts}
    with tempfile.TemporaryDirectory(prefix="oddeye-bench-store-") as tmp:
        for name, store_db in _backends(db, Path(tmp)):
            from oddeye.store.api import open_store

            open_store(store_db).close()  # created and migrated once, before the writers start
            out[name] = {}
            for n in counts:
                say(f"{name}: {n} writer(s), {seconds:g} s per phase ...")
                out[name][str(n)] = measure(store_db, n, seconds=seconds, frames=frames, tag=str(os.getpid()),
                                             batch_size=batch)
    _print_table(out)
    if not no_record:
        from oddeye.core.report import record_benchmark

        flat = {f"{name} {n}w {k}": v for name in ("sqlite", "postgresql") if name in out
                for n, figs in out[name].items() for k, v in figs.items()}
        record_benchmark("store write rate (live sources)", "generated series chunks and event upserts",
                         None, {"seconds": seconds, "frames_per_chunk": frames, "batch": batch, **flat},
                         notes="Each writer is a process with its own Store and live run; chunks: append_series of "
                               f"{frames} frames; events: upsert_event (1 insert + {EVENT_UPDATES} updates per event); "
                               f"batched: {batch} writes per transaction (Store.batch).")
    typer.echo(json.dumps(out))
    return out


def _print_table(out: dict[str, Any]) -> None:
    """One row per (store, writer count): writes per second in all and per writer, one per transaction and batched."""
    from rich.console import Console
    from rich.table import Table

    cols = phases(out["batch"])
    table = Table(title=f"oddeye bench store: writes/s in all (per writer); {out['frames_per_chunk']} frames per chunk"
                        + (f", batched: {out['batch']} per transaction" if out["batch"] > 1 else ""))
    table.add_column("store")
    table.add_column("writers", justify="right")
    for p in cols:
        table.add_column(f"{p.replace('_', ' ')}/s", justify="right")
    for name in ("sqlite", "postgresql"):
        for n, f in out.get(name, {}).items():
            table.add_row(name, n, *[f"{f[f'{p}_per_s']:.0f} ({f[f'{p}_per_s_per_writer']:.0f})" for p in cols])
    Console(width=120).print(table)
