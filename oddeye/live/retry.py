"""A store that rides out an outage: a live source's writes are retried with capped backoff while the database
is unreachable or locked, so that a PostgreSQL restart or a held SQLite lock pauses a source instead of ending it.

Every write a live source makes is idempotent (series chunks by their first frame, events by key, folder items by
the ledger), so a write retried after a lost acknowledgement stores nothing twice.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from oddeye.core.errors import first_line

FIRST_DELAY_S = 0.5
MAX_DELAY_S = 30.0
GIVE_UP_AFTER_STOP_S = 10.0  # once the watcher is stopping, an unreachable store is given up on after this


def _transient() -> tuple[type[BaseException], ...]:
    from sqlalchemy.exc import InterfaceError, OperationalError

    from oddeye.core.errors import StoreUnavailable

    return (OperationalError, InterfaceError, StoreUnavailable)


class RetryingStore:
    """Wraps a Store: each method call is retried while the database is down; the first failure and the recovery
    are reported through `note(what, detail)` (after recovery, so the note itself can be stored)."""

    def __init__(self, store: Any, stopping: Callable[[], bool], note: Callable[[str, str], None],
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._store, self._stopping, self._note, self._sleep = store, stopping, note, sleep
        self._local = threading.local()  # .atomic: inside atomically(), where calls are not retried one by one
        self.outages = 0

    def atomically(self, write: Callable[[], None]) -> None:
        """Run `write` (calls of this store) as ONE transaction (Store.batch), retried whole while the store is
        down; `write` must only write (it may run more than once)."""

        def block() -> None:
            self._local.atomic = True
            try:
                with self._store.batch():
                    write()
            finally:
                self._local.atomic = False

        self._retry("atomically", block, (), {})

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not callable(attr) or name.startswith("_") or name == "close":
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._retry(name, attr, args, kwargs)

        return call

    def _retry(self, name: str, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        if getattr(self._local, "atomic", False):
            return fn(*args, **kwargs)
        delay, down_since, stop_seen, first_error = FIRST_DELAY_S, None, None, ""
        while True:
            try:
                out = fn(*args, **kwargs)
            except _transient() as e:
                now = time.monotonic()
                if down_since is None:
                    down_since, first_error = now, first_line(e)
                    self.outages += 1
                if self._stopping():
                    stop_seen = stop_seen or now
                    if now - stop_seen > GIVE_UP_AFTER_STOP_S:
                        raise
                self._sleep(delay)
                delay = min(delay * 2, MAX_DELAY_S)
                continue
            if down_since is not None:
                self._note("store-outage", f"{name} failed for {time.monotonic() - down_since:.1f} s "
                                           f"({first_error}); retried until the store answered")
            return out
