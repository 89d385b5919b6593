"""Helpers of the store tests: where PostgreSQL lives, a fresh database on the test server, old schemas."""

from __future__ import annotations

import glob
import os
import shutil
import socket
from pathlib import Path


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


def new_pg_db(pg_server) -> str:
    """A fresh empty database on the test server, as a postgresql:// URL."""
    import psycopg

    pg_server["n"][0] += 1
    name = f"t{pg_server['n'][0]}_{os.getpid()}"
    with psycopg.connect(pg_server["dsn"], autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    return f"postgresql://oddeye@127.0.0.1:{pg_server['port']}/{name}"


def _stamp(db: str, revision: str) -> None:
    """Create a store at an older schema revision, or mark it as one from a newer oddeye."""
    from sqlalchemy import text

    from oddeye.store import engine as eng

    url = eng.store_url(db)
    _, write = eng.make_engines(url)
    if revision == "future":
        eng.migrate(write, url)
        with write.begin() as c:
            c.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    else:
        eng.migrate(write, url, target=revision)
    write.dispose()


