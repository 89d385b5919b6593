"""Start or join the Ray runtime behind `--ray`, and refuse a store that the workers could not share."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Annotated, Any, Iterator

import typer

from oddeye.core.errors import InputError

LOCAL = "local"
RAY_HELP = ("Run on Ray. `--ray` alone starts a local Ray runtime in this process on this machine's cores; "
            "`--ray auto` joins the cluster started with `ray start --head`; `--ray ray://HOST:10001` joins a remote "
            "one. Across nodes, --db must be a postgresql:// URL every worker reaches.")
RayOpt = Annotated[str | None, typer.Option("--ray", help=RAY_HELP, show_default=False)]
_ADDRESS = re.compile(r"^(auto|local|ray://\S+|[\w.\-]+:\d+)$")


def is_address(token: str) -> bool:
    """Whether `token` can be a `--ray` value: local, auto, ray://host:port or host:port."""
    return bool(_ADDRESS.match(token))


def normalise_argv(argv: list[str]) -> list[str]:
    """Give a bare `--ray` its value `local`, so that `--ray` works alone and with an address.

    `oddeye score image M IN --ray` and `oddeye score image --ray M IN` mean the local runtime;
    `--ray auto` and `--ray=ray://h:10001` keep their address.
    """
    out: list[str] = []
    for i, tok in enumerate(argv):
        out.append(tok)
        if tok == "--ray" and (i + 1 == len(argv) or not is_address(argv[i + 1])):
            out.append(LOCAL)
    return out


def is_local(address: str | None) -> bool:
    """Whether `address` means a runtime embedded in this process (no cluster)."""
    return address in (None, "", LOCAL)


def check_store(db: str | None, address: str | None) -> None:
    """Refuse a SQLite store (or none) when workers may run on other nodes; they could not reach the file."""
    if is_local(address):
        return
    if db is None or not str(db).startswith(("postgresql:", "postgresql+", "postgres:")):
        raise InputError(
            f"--db {db or '(none)'} with --ray {address}: workers on other nodes cannot write to a SQLite file "
            "on this machine, and SQLite serialises many writers",
            "pass --db postgresql://USER:PASS@HOST:5432/DB (a server every node reaches), or use `--ray` alone "
            "for a local runtime on this machine")


def cpus() -> int:
    """The CPUs this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@contextlib.contextmanager
def ray_runtime(address: str | None, *, num_cpus: int | None = None) -> Iterator[Any]:
    """The Ray module with a runtime up: an existing one, a local one started here, or the cluster at `address`.

    A runtime this call started is shut down on exit; one that was already up (e.g. a test's) is left running.
    """
    try:
        import ray
    except ImportError:
        raise InputError("--ray needs the `ray` package, which is not installed",
                         "pip install 'ray>=2.9' (it is part of oddeye's dependencies; reinstall oddeye)") from None
    if ray.is_initialized():
        yield ray
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True, "configure_logging": False}
    try:
        if is_local(address):
            ray.init(num_cpus=num_cpus or cpus(), **kwargs)
        else:
            if (Path.home() / ".ray" / "auth_token").is_file():  # `ray start` (2.5x) made one: the driver must send it
                os.environ.setdefault("RAY_AUTH_MODE", "token")
            ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise InputError(f"--ray {address}: could not start or join a Ray runtime ({e})",
                         "for a cluster, run `ray start --head` on its head node and pass --ray auto there, or "
                         "--ray ray://HEAD:10001 from elsewhere; `--ray` alone runs on this machine") from None
    try:
        yield ray
    finally:
        ray.shutdown()
