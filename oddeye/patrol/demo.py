"""Patrol demo: a generated reference route video and a query run with inserted objects, scored end to end."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from oddeye.core import metrics as M
from oddeye.core import synth

N_FRAMES = 40  # fewer than PatrolConfig.max_maps: every scored frame keeps its change map for the dashboard


def run_demo(out: Path, db: str) -> list[str]:
    """Fit on a synthetic reference route, score the query run through the CLI's functions (result, overlays,
    timeline, review store); return summary lines."""
    from oddeye.core.types import Result
    from oddeye.patrol.cli import fit_patrol, score_patrol

    t0 = time.perf_counter()
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    route = synth.make_route(seed=0, n_frames=N_FRAMES, size=(120, 160), n_objects=2)
    ref_video = synth.write_video_file(route.reference, out / "reference_route.mp4", fps=10.0)
    qry_video = synth.write_video_file(route.query, out / "query_run.mp4", fps=10.0)
    model = fit_patrol(reference=ref_video, out=out / "model", progress=False)
    written = score_patrol(model, query=[str(qry_video)], out=out, db=db, progress=False)
    result = Result.load(written.result_json)
    s = result.scores[0]
    labels = route.labels[: len(s.frame_scores)]
    scores = np.nan_to_num(s.frame_scores, nan=0.0)
    auroc = M.auroc(labels, scores) if 0 < labels.sum() < len(labels) else float("nan")
    hit = sum(bool(labels[e.start_frame:e.end_frame + 1].any()) for e in result.events)
    return [f"reference route {ref_video}, query run {qry_video}; {len(s.maps)} change maps kept",
            f"{len(result.events)} event(s), {hit} on frames with an inserted object; frame AUROC {auroc:.3f}",
            f"overlays: {out / 'overlays'}", *written.lines, f"took {time.perf_counter() - t0:.0f} s"]
