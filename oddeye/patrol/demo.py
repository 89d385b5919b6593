"""Patrol demo: a generated reference route video and a query run with inserted objects, scored end to end."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from oddeye.core import metrics as M
from oddeye.core import synth


def run_demo(out: Path, db: str) -> list[str]:
    """Fit on a synthetic reference route, score the query run, write result, overlays, timeline and store."""
    from oddeye.patrol.cli import write_outputs
    from oddeye.patrol.head import PatrolHead

    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    route = synth.make_route(seed=0, n_frames=40, size=(120, 160), n_objects=2)
    ref_video = synth.write_video_file(route.reference, out / "reference_route.mp4", fps=10.0)
    qry_video = synth.write_video_file(route.query, out / "query_run.mp4", fps=10.0)
    head = PatrolHead().fit(ref_video)
    head.save(out / "model")
    result = head.score(qry_video, overlays=out / "overlays")
    s = result.scores[0]
    labels = route.labels[: len(s.frame_scores)]
    scores = np.nan_to_num(s.frame_scores, nan=0.0)
    auroc = M.auroc(labels, scores) if 0 < labels.sum() < len(labels) else float("nan")
    result.metrics = {"frame_auroc": auroc}
    lines = write_outputs(result, out, db, str(out / "model"), str(qry_video))
    hit = sum(bool(labels[e.start_frame:e.end_frame + 1].any()) for e in result.events)
    return [f"reference route {ref_video} ({len(head.reference)} frames), query run {qry_video}",
            f"{len(result.events)} event(s), {hit} on frames with an inserted object; frame AUROC {auroc:.3f}",
            f"overlays: {out / 'overlays'}", *lines, f"took {time.perf_counter() - t0:.0f} s"]
