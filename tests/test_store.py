"""Review store on SQLite: save_result round trip, labels, thresholds, bad input."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from oddeye.core.errors import InputError, StoreError
from oddeye.core.types import AnomalyMap, Result, Score, events_from_scores
from oddeye.ui.store import open_store, save_result


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL server: initdb into a temp dir, start on a free 127.0.0.1 port, stop at the end."""
    import psycopg

    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found; install them with `bash scripts/system-deps.sh --test`")
    root = Path(tempfile.mkdtemp(prefix="oddeye-pg-"))
    data, prefix = root / "data", []
    if os.geteuid() == 0:  # postgres refuses to run as root: run it as the postgres (or nobody) user
        user = "postgres" if subprocess.run(["id", "postgres"], capture_output=True).returncode == 0 else "nobody"
        shutil.chown(root, user)
        prefix = ["runuser", "-u", user, "--"]
    subprocess.run(prefix + [str(bindir / "initdb"), "-D", str(data), "-U", "oddeye", "-A", "trust", "-E", "UTF8",
                             "--no-sync"], check=True, capture_output=True)
    port = _free_port()
    proc = subprocess.Popen(prefix + [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1",
                                      "-k", str(root), "-F", "-c", "max_connections=60"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dsn = f"host=127.0.0.1 port={port} user=oddeye dbname=postgres"
    for _ in range(150):
        try:
            psycopg.connect(dsn, connect_timeout=1).close()
            break
        except psycopg.OperationalError:
            if proc.poll() is not None:
                pytest.fail(f"postgres exited with {proc.returncode}")
            time.sleep(0.1)
    yield {"port": port, "dsn": dsn, "n": [0]}
    pid_file = data / "postmaster.pid"  # signal postgres itself: runuser does not pass SIGINT on
    os.kill(int(pid_file.read_text().split()[0]) if pid_file.exists() else proc.pid, signal.SIGINT)  # fast shutdown
    proc.wait(timeout=30)
    shutil.rmtree(root, ignore_errors=True)


def new_pg_db(pg_server) -> str:
    """A fresh empty database on the test server, as a postgresql:// URL."""
    import psycopg

    pg_server["n"][0] += 1
    name = f"t{pg_server['n'][0]}_{os.getpid()}"
    with psycopg.connect(pg_server["dsn"], autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    return f"postgresql://oddeye@127.0.0.1:{pg_server['port']}/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path) -> str:
    """A new store location: a SQLite file or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "store.db")
    return new_pg_db(request.getfixturevalue("pg_server"))


def _result(n_frames: int = 500, seed: int = 0) -> Result:
    rng = np.random.default_rng(seed)
    fs = rng.random(n_frames).astype(np.float32)
    times = np.arange(n_frames) / 25.0
    return Result(head="video-rules",
                  scores=[Score("clip", float(fs.max()), label=1, frame_scores=fs, frame_times=times,
                                reason="a walker ran"),
                          Score("still", 0.2, maps={"anomaly": AnomalyMap("pixel", rng.random((16, 24)))})],
                  events=events_from_scores(fs, 0.9, "clip", times=times), threshold=0.9, metrics={"auroc": 0.7})


def test_save_result_round_trip(db):
    r = _result()
    run_id = save_result(db, r, kind="score", model="m/", data="clips/", params={"k": 3})
    with open_store(db) as st:
        run = st.run(run_id)
        assert (run["head"], run["kind"], run["model"], run["parameters"], run["metrics"]) == \
            ("video-rules", "score", "m/", {"k": 3}, {"auroc": 0.7})
        samples = st.samples(run_id)
        assert [s["sample_id"] for s in samples] == ["clip", "still"]
        ser = st.series(samples[0]["id"])
        np.testing.assert_array_equal(ser["frame_scores"], r.scores[0].frame_scores)
        kind, amap = st.maps(samples[1]["id"])["anomaly"]
        assert kind == "pixel" and amap.shape == (16, 24)
        assert len(st.events(run_id)) == len(r.events) > 0
        assert st.threshold(run_id) == pytest.approx(0.9)


def test_labels_and_threshold(db):
    run_id = save_result(db, _result(), kind="score")
    with open_store(db) as st:
        ev = st.events(run_id)[0]
        st.add_label(run_id, "false_alarm", event_id=ev["id"], by="ana", note="shadow")
        labs = st.labels(run_id)
        assert labs[0]["label"] == "false_alarm" and labs[0]["by"] == "ana" and labs[0]["sample_id"] == "clip"
        with pytest.raises(InputError, match="label must be one of"):
            st.add_label(run_id, "maybe", event_id=ev["id"])
        with pytest.raises(InputError, match="not in run"):
            st.add_label(run_id + 1, "unsure", event_id=ev["id"])
        st.set_threshold(run_id, 0.95, source="suggest")
        assert st.threshold(run_id) == pytest.approx(0.95)


def test_not_a_store(tmp_path):
    bad = tmp_path / "notes.db"
    bad.write_text("hello, I am a text file\n" * 10)
    with pytest.raises(StoreError, match="notes.db is not an oddeye store"):
        open_store(bad)
