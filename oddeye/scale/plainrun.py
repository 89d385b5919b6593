"""The plain loop of `oddeye bench scale` in a process of its own, as `oddeye score` runs without Ray.

    python -m oddeye.scale.plainrun JOB.pkl OUT.pkl

JOB holds (model folder, inputs, inputs to warm up on, threads); OUT gets (seconds, Result): the head is loaded and
warmed up first (as every Ray worker's is before its timed run), then the whole list is scored once and timed.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from oddeye.core.errors import InputError


def plain_in_process(model: Path, inputs: list[Any], warm: int, threads: int, work: Path) -> tuple[float, Any]:
    """(seconds, Result) of scoring `inputs` with the model folder in a new process with `threads` threads."""
    job, out = work / "plain-job.pkl", work / "plain-out.pkl"
    job.write_bytes(pickle.dumps((str(model), inputs, warm, threads)))
    proc = subprocess.run([sys.executable, "-m", "oddeye.scale.plainrun", str(job), str(out)], capture_output=True,
                          text=True)
    if proc.returncode:
        raise InputError(f"the plain loop on {model} failed: {proc.stderr.strip()[-500:]}")
    return pickle.loads(out.read_bytes())


def main(argv: list[str]) -> None:
    """Run the job in argv[0]; write (seconds, Result) to argv[1]."""
    from oddeye.core.config import set_threads
    from oddeye.core.head import RunContext, load_head

    model, inputs, warm, threads = pickle.loads(Path(argv[0]).read_bytes())
    set_threads(threads)
    head = load_head(model)
    head.score(inputs[:warm], ctx=RunContext(progress=False))
    t0 = time.perf_counter()
    result = head.score(inputs, ctx=RunContext(progress=False))
    Path(argv[1]).write_bytes(pickle.dumps((time.perf_counter() - t0, result)))


if __name__ == "__main__":
    main(sys.argv[1:])
