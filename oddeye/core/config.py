"""Process-wide settings: threads, device, seeds, where weights and results live."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import numpy as np

ENV_HOME = "ODDEYE_HOME"


def oddeye_home() -> Path:
    """Folder for user-provided weights and caches: $ODDEYE_HOME or ~/.cache/oddeye."""
    return Path(os.environ.get(ENV_HOME, Path.home() / ".cache" / "oddeye")).expanduser()


def weights_dir() -> Path:
    """Folder where oddeye looks for weights the user put there by hand."""
    return oddeye_home() / "weights"


def default_results_dir() -> Path:
    """Where results go when the user names no --out: ./oddeye-results."""
    return Path("oddeye-results")


def n_threads() -> int:
    """Threads oddeye may use: $ODDEYE_THREADS, else all cores (at least 1)."""
    return max(1, int(os.environ.get("ODDEYE_THREADS", os.cpu_count() or 1)))


def set_threads(n: int | None = None, *, loaded_only: bool = False) -> int:
    """Set torch/OpenCV/BLAS threads (and $ODDEYE_THREADS, which FAISS reads) to `n` (default: n_threads());
    return n. loaded_only: leave torch and OpenCV alone unless already imported (a light process stays light)."""
    n = n_threads() if n is None else max(1, n)
    os.environ["ODDEYE_THREADS"] = str(n)
    for module, setter in (("torch", "set_num_threads"), ("cv2", "setNumThreads")):
        if loaded_only and module not in sys.modules:
            continue
        try:
            mod = __import__(module)
        except ImportError:  # pragma: no cover - both are hard dependencies
            continue
        getattr(mod, setter)(n)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:  # pragma: no cover - numpy's BLAS then keeps OMP_NUM_THREADS
        pass
    return n


def get_device(prefer: str | None = None) -> str:
    """'cuda' when asked or available (unless $ODDEYE_DEVICE says otherwise), else 'cpu'."""
    import torch

    want = prefer or os.environ.get("ODDEYE_DEVICE")
    if want:
        if want.startswith("cuda") and not torch.cuda.is_available():
            from oddeye.core.errors import InputError

            raise InputError(f"device {want!r} requested but no CUDA device is available", "use --device cpu")
        return want
    return "cuda" if torch.cuda.is_available() else "cpu"


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch for a repeatable run."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    import torch

    torch.manual_seed(seed)
