"""Shared parts of the live tests (no tests here): tiny models, generated clips, the ffmpeg stream server (from
oddeye.live.bench), and waiting on the store for a condition with a deadline."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from oddeye.core import synth
from oddeye.core.head import RunContext
from oddeye.live.bench import free_port, serve, stop_process  # noqa: F401 - used by the live tests

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg (scripts/system-deps.sh --test)")
SPAN = (40, 130)  # frames of the injected anomaly in the 150-frame clip


def rules_model(folder: Path) -> Path:
    """A rules model fitted on a generated normal clip (the contract case's recipe, about a second)."""
    import contract_rules

    case = contract_rules.CASES[0]
    head = case.make().fit(case.train(folder / "train"), ctx=RunContext(progress=False))
    return head.save(folder / "rules-model")


def gaussian_model(folder: Path) -> Path:
    """A Gaussian image model on 64 px generated images (the contract case's recipe, about two seconds)."""
    import contract_image

    case = next(c for c in contract_image.CASES if c.head == "gaussian")
    head = case.make().fit(case.train(folder), ctx=RunContext(progress=False))
    return head.save(folder / "gaussian-model")


def clip(path: Path, anomaly: str | None = "fast", n_frames: int = 150) -> Path:
    """A generated walkway clip (mp4, 25 fps) with a fast walker during SPAN (or no anomaly)."""
    v = synth.make_video(seed=7, n_frames=n_frames, anomaly=anomaly, anomaly_span=SPAN)
    return synth.write_video_file(v.frames, path, fps=25)


def images(folder: Path, n: int) -> list[np.ndarray]:
    """`n` generated test images (64 px, normal and defective)."""
    return [s.image for s in synth.make_image_set(seed=5, n_normal=(n + 1) // 2, n_defect=n // 2)][:n]


def wait_for(check: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    """Call `check` until it returns something truthy (returned) or `timeout` s pass (AssertionError naming `what`)."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)
