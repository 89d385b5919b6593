"""Fixtures shared by test files: a real PostgreSQL server for the whole session, and a store location per backend."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from store_support import _free_port, _pg_bindir, new_pg_db


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL server: initdb into a temp dir, start on a free 127.0.0.1 port, stop at the end."""
    import psycopg

    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found; install them with `bash scripts/system-deps.sh --test`")
    shm = Path("/dev/shm")  # in memory when possible: initdb and the teardown are much faster than on a busy disk
    roomy = shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 1 << 30
    root = Path(tempfile.mkdtemp(prefix="oddeye-pg-", dir=shm if roomy else None))
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
    os.kill(int(pid_file.read_text().split()[0]) if pid_file.exists() else proc.pid, signal.SIGQUIT)  # immediate shutdown: a throwaway server
    proc.wait(timeout=30)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path) -> str:
    """A new store location: a SQLite file or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "store.db")
    return new_pg_db(request.getfixturevalue("pg_server"))


@pytest.fixture(autouse=True)
def _keep_main_module():
    """Streamlit's AppTest leaves the dashboard script as sys.modules["__main__"]; a later test that spawns
    processes (multiprocessing re-runs __main__ in the child) would start the dashboard there."""
    main = sys.modules.get("__main__")
    yield
    if main is not None:
        sys.modules["__main__"] = main
