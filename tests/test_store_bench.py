"""`oddeye bench store` with real parts: writer processes append series chunks and upsert events into a SQLite
file and into the test PostgreSQL server at once; the last stdout line is JSON with the rates per writer count, the
bench's runs are gone from the store afterwards, and bad arguments or a writer that fails are reported. And the
Store.batch: several live writes in one transaction, all or nothing, other threads unaffected."""

from __future__ import annotations

import json
import threading
from types import SimpleNamespace

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from oddeye.core.errors import InputError
from oddeye.scale.cli import register
from oddeye.scale.store_bench import bench_store, measure
from oddeye.store.api import open_store
from store_support import new_pg_db

KEYS = {f"{p}_per_s{w}" for p in ("chunks", "events", "batched_chunks", "batched_events") for w in ("", "_per_writer")}


def _app() -> typer.Typer:
    """`oddeye bench` with the scale package's benches registered (as oddeye.cli wires them)."""
    app, bench = typer.Typer(), typer.Typer()
    app.add_typer(bench, name="bench")
    register(SimpleNamespace(bench=bench))
    return app


def test_bench_store_measures_sqlite_and_postgresql_and_leaves_no_runs(pg_server, monkeypatch):
    recorded = {}
    monkeypatch.setattr("oddeye.core.report.record_benchmark",
                        lambda title, dataset, command, figures, **kw: recorded.update(figures))
    db = new_pg_db(pg_server)
    done = CliRunner().invoke(_app(), ["bench", "store", "--db", db, "--writers", "1,2", "--seconds", "0.25",
                                       "--frames", "10", "--batch", "5"])
    assert done.exit_code == 0, (done.output, "".join(__import__("traceback").format_exception(done.exception)))
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["writers"] == [1, 2] and figures["frames_per_chunk"] == 10 and figures["batch"] == 5
    for store in ("sqlite", "postgresql"):
        assert set(figures[store]) == {"1", "2"}
        for n in ("1", "2"):
            got = figures[store][n]
            assert set(got) == KEYS and min(got.values()) > 0, (store, n, got)
            assert got["events_per_s_per_writer"] == pytest.approx(got["events_per_s"] / int(n), abs=0.1)
    assert recorded["postgresql 2w chunks_per_s"] == figures["postgresql"]["2"]["chunks_per_s"]
    with open_store(db) as s:
        assert s.runs() == [], "the bench's runs are deleted at the end"


def test_bench_store_into_a_given_sqlite_file_leaves_it_empty(tmp_path):
    db = tmp_path / "given.db"
    figures = bench_store(db=str(db), writers="2", seconds=0.3, frames=5, batch=1, no_record=True)
    assert set(figures) == {"seconds", "frames_per_chunk", "batch", "writers", "sqlite"}
    assert set(figures["sqlite"]["2"]) == {k for k in KEYS if not k.startswith("batched")}, "--batch 1: not batched"
    assert figures["sqlite"]["2"]["chunks_per_s"] > 0
    with open_store(db) as s:
        assert s.runs() == []


@pytest.mark.parametrize("args, message", [
    (dict(writers="0"), "--writers"), (dict(writers="one,two"), "--writers"), (dict(seconds=0), "--seconds"),
    (dict(batch=0), "--batch"), (dict(db="mysql://u@h/db"), "PostgreSQL URL"),
])
def test_bench_store_refuses_bad_arguments(args, message):
    with pytest.raises(InputError, match=message):
        bench_store(**{"no_record": True, **args})


def test_a_writer_that_cannot_reach_the_store_is_reported_naming_it():
    with pytest.raises(InputError, match="a writer of postgresql://127.0.0.1:9/nowhere failed"):
        measure("postgresql://oddeye@127.0.0.1:9/nowhere", 1, seconds=0.1, frames=5, tag="t")


# -- Store.batch: several live writes in one transaction ----------------------------------------------
def _chunk(first: int, n: int = 5) -> dict[str, np.ndarray]:
    idx = np.arange(first, first + n)
    return {"frame_scores": idx.astype(np.float32) / 10, "frame_indices": idx, "frame_times": idx / 10.0}


def test_a_batch_stores_what_single_writes_store(db):
    with open_store(db) as store:
        run = store.open_live_run("cam", head="video-rules", model="m", source_kind="stream")
        with store.batch():
            for k in range(4):
                store.append_series(run, "cam", _chunk(5 * k))
            store.upsert_event(run, "cam:3", sample_id="cam", score=0.7, start_frame=3, end_frame=9, start=0.3,
                               end=0.9, open=True)
            with store.batch():  # nested: joins the outer transaction
                store.upsert_event(run, "cam:3", sample_id="cam", score=0.9, start_frame=3, end_frame=12, start=0.3,
                                   end=1.2, open=False)
        series = store.series(store.samples(run)[0]["id"])
        assert np.array_equal(series["frame_indices"], np.arange(20))
        assert np.array_equal(series["frame_scores"], (np.arange(20) / 10).astype(np.float32))
        (ev,) = store.events(run)
        assert (ev["score"], ev["end_frame"], ev["is_open"]) == (pytest.approx(0.9), 12, False)
        assert store.samples(run)[0]["n_frames"] == 20


def test_a_failed_batch_stores_nothing_while_other_threads_write_as_usual(db):
    with open_store(db) as store:
        run = store.open_live_run("cam", head="video-rules", model="m", source_kind="stream")
        other = threading.Thread(target=store.log_live, args=(run, "note", "from another thread"))
        with pytest.raises(InputError, match="unknown keys"), store.batch():
            store.append_series(run, "cam", _chunk(0))
            other.start()  # its own transaction (on SQLite it waits for the batch's write lock to go)
            store.append_series(run, "cam", {**_chunk(5), "bogus": np.zeros(5)})
        other.join(30)
        assert store.samples(run) == [], "the chunk written before the error was rolled back with the batch"
        assert [r["detail"] for r in store.live_log(run)] == ["from another thread"]
        store.append_series(run, "cam", _chunk(0))  # the Store works as before after a failed batch
        assert store.samples(run)[0]["n_frames"] == 5
