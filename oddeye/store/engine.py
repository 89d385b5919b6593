"""Opening a review store: SQLite file or PostgreSQL URL, pragmas, and Alembic migrations run on open."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, OperationalError

from oddeye.core.errors import StoreError, first_line

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_MAGIC = b"SQLite format 3\x00"
BUSY_TIMEOUT_MS = 60_000
_LOCK_KEY = 0x0DDE7E  # PostgreSQL advisory lock held while migrating


def is_url(db: str | Path) -> bool:
    """True if `db` is a database URL rather than a file path."""
    return isinstance(db, str) and "://" in db


def store_url(db: str | Path) -> URL:
    """The SQLAlchemy URL of `db`: a SQLite file path, sqlite:///..., or postgresql[+psycopg]://..."""
    if not is_url(db):
        path = Path(db).expanduser().resolve()
        return URL.create("sqlite+pysqlite", database=str(path))
    try:
        url = make_url(str(db))
    except ArgumentError:
        raise StoreError(f"--db {db!r} is not a valid database URL",
                         "use a file path, sqlite:///path/store.db or postgresql://user:pass@host:5432/dbname") from None
    if url.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        url = url.set(drivername="postgresql+psycopg")
    if url.drivername == "sqlite":
        url = url.set(drivername="sqlite+pysqlite")
    if url.drivername not in ("postgresql+psycopg", "sqlite+pysqlite"):
        raise StoreError(f"--db {db!r}: database {url.drivername!r} is not supported",
                         "use a SQLite file path or a postgresql:// URL")
    return url


def describe(url: URL) -> str:
    """A short name of the store for messages: the file path, or host:port/db (no password)."""
    if url.get_backend_name() == "sqlite":
        return str(url.database)
    return f"postgresql://{url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"


def _sqlite_pragmas(engine: Engine, immediate: bool) -> None:
    """WAL, a busy timeout so concurrent writers wait, foreign keys; BEGIN IMMEDIATE on the write engine."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record) -> None:  # noqa: ANN001 - DBAPI objects
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _set_wal(cur)
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn) -> None:  # noqa: ANN001
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _set_wal(cur: sqlite3.Cursor) -> None:
    """Switch a SQLite database to WAL (persistent, so once per file). SQLite answers "database is locked" at once,
    without calling the busy handler, when another process switches the same new file at that moment: wait for it."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            if cur.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                cur.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def check_sqlite_file(path: Path) -> None:
    """Refuse a file that exists and is not a SQLite database, naming it; create the parent folder."""
    if path.is_dir():
        raise StoreError(f"store {path} is a directory, not a store file", "pass a file such as results/store.db")
    if path.exists() and path.stat().st_size > 0:
        with path.open("rb") as f:
            head = f.read(16)
        if head != SQLITE_MAGIC:
            raise StoreError(f"{path} is not an oddeye store (not a SQLite database)",
                             "pass the store.db written by `oddeye score`, or a new file name")
    path.parent.mkdir(parents=True, exist_ok=True)


def make_engines(url: URL) -> tuple[Engine, Engine]:
    """(read engine, write engine); for SQLite the write engine takes the write lock at BEGIN."""
    if url.get_backend_name() == "sqlite":
        check_sqlite_file(Path(str(url.database)))
        kw = {"connect_args": {"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}}
        read, write = create_engine(url, **kw), create_engine(url, **kw)
        _sqlite_pragmas(read, immediate=False)
        _sqlite_pragmas(write, immediate=True)
        return read, write
    engine = create_engine(url, connect_args={"connect_timeout": 5}, pool_pre_ping=True)
    return engine, engine


def alembic_config() -> Config:
    """Alembic config pointing at the migrations shipped inside the package."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    """The newest schema revision this oddeye knows."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head() or ""


def migrate(write: Engine, url: URL, target: str = "head") -> str:
    """Bring the store to `target` under a write lock; refuse foreign or newer stores. Returns the revision."""
    name = describe(url)
    cfg = alembic_config()
    script = ScriptDirectory.from_config(cfg)
    try:
        with write.begin() as conn:
            if url.get_backend_name() == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
            current = MigrationContext.configure(conn).get_current_revision()
            if current is None:
                tables = set(inspect(conn).get_table_names()) - {"alembic_version"}
                if tables:
                    raise StoreError(f"{name} is a database but not an oddeye store (it has tables {sorted(tables)[:5]})",
                                     "pass a new file name or the store.db written by `oddeye score`")
            else:
                try:
                    script.get_revision(current)
                except CommandError:
                    raise StoreError(f"{name} was written by a newer oddeye (schema {current}; this oddeye knows up to "
                                     f"{script.get_current_head()})", "upgrade oddeye to open this store") from None
            if target == "head" and current == script.get_current_head():
                return current
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, target)
            return MigrationContext.configure(conn).get_current_revision() or ""
    except OperationalError as e:
        raise connect_error(url, e) from None
    except DatabaseError as e:
        raise StoreError(f"{name} is not an oddeye store ({str(e.orig).strip()})",
                         "pass the store.db written by `oddeye score`, or a new file name") from None


def connect_error(url: URL, e: Exception) -> StoreError:
    """A StoreError for a database that cannot be reached or opened, naming the host or file."""
    orig = first_line(getattr(e, "orig", None) or e, 1000)
    if url.get_backend_name() == "postgresql":
        return StoreError(f"cannot connect to PostgreSQL at {url.host or 'localhost'}:{url.port or 5432} "
                          f"(database {url.database!r}): {orig}",
                          "check the host, port, user, password and that the server is running")
    return StoreError(f"cannot open store {url.database}: {orig}", "check the file and folder permissions")
