"""The review store: SQLAlchemy models, Alembic migrations, the store API, and the one writer of results.

    from oddeye.store import open_store, write_result
    written = write_result(result, "out/", kind="image", db="out/store.db", model="model/", data="images/")
    with open_store("out/store.db") as store:
        store.add_label(written.run_id, "true_anomaly", sample_pk=1)
"""

from __future__ import annotations

from typing import Any

__all__ = ["Store", "open_store", "save_result", "write_result", "Written", "PathRefusedError"]

_WHERE = {"Store": "api", "open_store": "api", "save_result": "api", "PathRefusedError": "api",
          "write_result": "writer", "Written": "writer"}


def __getattr__(name: str) -> Any:
    """Import the public names lazily (keeps `oddeye --help` fast)."""
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"oddeye.store.{_WHERE[name]}"), name)
    raise AttributeError(name)
