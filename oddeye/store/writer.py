"""The one writer of results: result.json + arrays, timeline plots, and the run in the review store.

    written = write_result(result, Path("out"), kind="video", db="out/store.db", model="model/", data="clips/")
    print("\\n".join(written.lines))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from oddeye.core.errors import InputError
from oddeye.core.types import Result


@dataclass
class Written:
    """Where a Result went: its json file, the store and the run id, and lines to show the user."""

    result_json: Path
    db: str
    run_id: int
    lines: list[str]


def write_result(result: Result, out: str | Path, *, kind: str, db: str | None = None, model: str | Path | None = None,
                 data: str | Path | None = None, params: dict[str, Any] | None = None,
                 view: Callable[[Result], Result] | None = None, timelines: bool = True) -> Written:
    """Write `result` under `out` (json, arrays, a timeline PNG per series) and as one run in the store at `db`.

    `db` defaults to out/store.db; `view` turns the Result into the rows a reviewer sees (e.g. one row per patrol
    frame); paths (model, data, artefacts) are stored absolute.
    """
    from oddeye.store.api import save_result

    if not isinstance(result, Result):
        raise InputError(f"write_result needs an oddeye Result, got {type(result).__name__}")
    out = Path(out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    lines = _timelines(result, out) if timelines else []
    path = result.save(out)
    lines.append(f"result: {path}")
    store = str(db) if db else str(out / "store.db")
    run_id = save_result(store, view(result) if view else result, kind=kind, params=params,
                         model=None if model is None else str(model), data=None if data is None else str(data))
    lines.append(f"review store: {store} (run {run_id})")
    return Written(path, store, run_id, lines)


def _timelines(result: Result, out: Path) -> list[str]:
    """One score-vs-time PNG per sample with a frame series (recorded as its 'timeline' artefact); summary lines."""
    from oddeye.core.viz import plot_timeline

    lines = []
    for s in result.scores:
        if s.frame_scores is None or not len(s.frame_scores):
            continue
        evs = [e for e in result.events if e.sample_id == s.sample_id]
        png = plot_timeline(out / f"timeline_{Path(str(s.sample_id)).name}.png", s.frame_scores, result.threshold,
                            times=s.frame_times, events=evs, title=f"{s.sample_id} ({result.head})")
        s.artefacts["timeline"] = str(png)
        result.meta.setdefault("artefacts", {})[f"timeline_{s.sample_id}"] = str(png)
        lines.append(f"{s.sample_id}: max score {s.score:.3g}, {len(evs)} event(s); timeline {png}")
        if s.reason:
            lines.append(f"  {s.reason}")
    return lines
