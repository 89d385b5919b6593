"""The error types users see. Each message names the file or argument and what to do."""

from __future__ import annotations

from pathlib import Path


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of an exception's text (its type's name when empty), at most `limit` characters."""
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:limit]


def yaml_problem(e: Exception) -> str:
    """Where and what a YAML parse error is, for a message: "at line L, column C: problem"."""
    mark = getattr(e, "problem_mark", None)
    where = f"at line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + str(getattr(e, "problem", None) or e)


class OddeyeError(Exception):
    """Base of every error a user can act on; the CLI prints it in one or two lines, exit 2."""

    exit_code: int = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\n  hint: {hint}")


class InputError(OddeyeError):
    """A path, file or argument given by the user is missing, unreadable or invalid."""


class DataLayoutError(InputError):
    """A data set directory does not have the layout its loader expects."""


class EmptyDataError(InputError):
    """An input that must hold samples (a folder, a cloud, a split) holds none."""


class ModelError(OddeyeError):
    """A model directory is missing, corrupt, or was written by another head."""


class MissingWeightsError(ModelError):
    """Pretrained weights are not available offline; the message says where to put them."""


class BackendError(OddeyeError):
    """An external backend (LLM endpoint, database server) is down or answered garbage."""


class StoreError(OddeyeError):
    """The review store cannot be opened, is not a store, or is from a newer schema."""


class StoreUnavailable(StoreError):
    """The review store stopped answering mid-run (server down, connections refused, a lock held): it may pass."""


def require_file(path: str | Path, what: str = "file") -> Path:
    """Return `path` as a Path if it is an existing non-empty file, else raise InputError naming it."""
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"{what} not found: {p}", "check the path; it is resolved from the current directory")
    if not p.is_file():
        raise InputError(f"{what} is not a file: {p}")
    if p.stat().st_size == 0:
        raise InputError(f"{what} is empty (0 bytes): {p}", "the file may be truncated; re-export or re-copy it")
    return p


def require_dir(path: str | Path, what: str = "directory") -> Path:
    """Return `path` as a Path if it is an existing directory, else raise InputError naming it."""
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"{what} not found: {p}", "check the path; it is resolved from the current directory")
    if not p.is_dir():
        raise InputError(f"{what} is not a directory: {p}")
    return p


def require_out_dir(path: str | Path, what: str = "--out") -> Path:
    """`path` as a Path if it is a folder that exists or can be made and may be written to, else InputError."""
    import os

    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise InputError(f"{what} {p} is a file, not a folder", "pass a folder for the outputs")
    parent = next((q for q in (p, *p.parents) if q.exists()), Path("."))
    if not os.access(parent, os.W_OK):
        raise InputError(f"{what} {p} is not writable", "pass a folder you may write to")
    return p


def require_positive(value: float, name: str, allow_zero: bool = False) -> float:
    """Return `value` if it is > 0 (or >= 0 with allow_zero), else raise InputError naming `name`."""
    ok = value >= 0 if allow_zero else value > 0
    if not ok or value != value:
        bound = ">= 0" if allow_zero else "> 0"
        raise InputError(f"{name} must be {bound}, got {value}")
    return value


def require_range(value: float, name: str, lo: float, hi: float) -> float:
    """Return `value` if lo <= value <= hi, else raise InputError naming `name`."""
    if not (lo <= value <= hi):
        raise InputError(f"{name} must be in [{lo}, {hi}], got {value}")
    return value


class ConfigError(InputError):
    """A head setting is unknown or has a bad value; the message names the field."""

    def __init__(self, field: str, message: str, hint: str | None = None) -> None:
        self.field = field
        self.detail = message
        super().__init__(f"{field}: {message}", hint)

    def __reduce__(self) -> tuple[type, tuple[str, str, str | None]]:
        """Pickle with the constructor's arguments (Ray sends errors between processes)."""
        return (type(self), (self.field, self.detail, self.hint))
