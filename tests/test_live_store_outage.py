"""A store outage pauses a live source instead of ending it: with the PostgreSQL database refusing connections
and its sessions killed for a few seconds mid-run, the source keeps its frames, stores each once when the database
answers again, logs the outage, and closes its run."""

from __future__ import annotations

import threading
import time

import numpy as np
import psycopg
import pytest

from oddeye.live.config import one_source
from oddeye.live.runner import LiveSource
from oddeye.store.api import open_store
from store_support import new_pg_db
from test_live_support import clip, rules_model, wait_for


def _outage(dsn: str, name: str, seconds: float) -> None:
    """Refuse new connections to database `name` and kill its sessions for `seconds`, then let them in again."""
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            time.sleep(0.2)
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


@pytest.mark.slow
def test_a_source_rides_out_a_postgresql_outage_and_stores_every_frame_once(tmp_path, pg_server):
    db = new_pg_db(pg_server)
    name = db.rsplit("/", 1)[1]
    cfg = one_source(str(rules_model(tmp_path)), str(clip(tmp_path / "clip.mp4")), name="cam", db=db,
                     out=str(tmp_path / "live"), threshold=0.6, chunk_s=0.5)
    source = LiveSource(cfg.sources[0], cfg.db)
    stop = threading.Event()
    runner = threading.Thread(target=source.run, args=(stop,))
    runner.start()
    try:
        wait_for(lambda: source.stats.frames >= 25, 30, "the first second of frames stored")
        _outage(pg_server["dsn"], name, 2.5)
        runner.join(60)  # the 6 s file plays in real time, then the source closes its run by itself
        assert not runner.is_alive()
    finally:
        stop.set()
        runner.join(10)
    assert source.failed is None and source.store is None, "the run was closed, not abandoned"
    with open_store(db) as store:
        (run,) = store.live_runs()
        assert run["state"] == "closed"
        idx = store.series(store.samples(run["id"])[0]["id"])["frame_indices"]
        dropped = source.summary()["dropped_frames"]
        assert np.all(np.diff(idx) > 0), "no frame stored twice"
        assert len(idx) + dropped == 150, "every frame stored or counted as dropped"
        assert [e for e in store.live_log(run["id"]) if e["what"] == "store-outage"], "the outage is in the log"
        assert all(not e["is_open"] for e in store.events(run["id"]))
