"""`oddeye fit patrol`, `oddeye score patrol`, `oddeye eval patrol`: reference-vs-query change detection."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any, Optional

import typer

from oddeye.core.errors import InputError


def _head_options(head: Any, features: bool, threads: Optional[int]) -> None:
    head.config.use_features = features
    head.config.threads = threads


def write_outputs(result: Any, out: Path, db: Optional[str], model: str, data: str) -> list[str]:
    """Save the Result, a timeline PNG per run, and one review sample per frame in the store; return lines."""
    from oddeye.core.viz import plot_timeline
    from oddeye.patrol.review import per_pair
    from oddeye.store.api import save_result

    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for s in result.scores:
        evs = [e for e in result.events if e.sample_id == s.sample_id]
        if s.frame_scores is not None and len(s.frame_scores):
            png = plot_timeline(out / f"timeline_{Path(s.sample_id).name}.png", s.frame_scores, result.threshold,
                                times=s.frame_times, events=evs, title=f"patrol: {s.sample_id}")
            s.artefacts["timeline"] = str(png)
            result.meta.setdefault("artefacts", {})[f"timeline_{s.sample_id}"] = str(png)
            lines.append(f"{s.sample_id}: max change {s.score:.3f}, {len(evs)} event(s); timeline {png}")
        lines.append(f"  {s.reason}")
    path = result.save(out)
    lines.append(f"result: {path}")
    store = db or str(out / "store.db")
    run_id = save_result(store, per_pair(result), kind="patrol", model=model, data=data)
    lines.append(f"review store: {store} (run {run_id})")
    return lines


def register(cli: Any) -> None:
    """Add the patrol commands to the oddeye CLI groups."""

    @cli.fit.command("patrol")
    def fit_patrol(
        reference: Path = typer.Option(..., "--reference", help="Reference route: a video file or a frame folder."),
        out: Path = typer.Option(..., "--out", help="Model folder to write."),
        poses: Optional[Path] = typer.Option(None, "--poses", help="CSV: frame,time,x,y[,z][,yaw] per reference frame."),
        stride: int = typer.Option(1, "--stride", help="Use every n-th reference frame."),
        max_side: int = typer.Option(640, "--max-side", help="Scale frames so the longest side is at most this."),
        features: bool = typer.Option(True, "--features/--no-features", help="Use the backbone's patch features in the change map."),
        threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads (default: all, or $ODDEYE_THREADS)."),
    ) -> None:
        """Ingest a reference patrol run (driven without anomalies): frames, global descriptors, poses.

        Example: oddeye fit patrol --reference route_ok.mp4 --out patrol-model --poses route_ok.csv
        """
        from oddeye.patrol.head import PatrolHead

        head = PatrolHead(stride=stride, max_side=max_side)
        _head_options(head, features, threads)
        head.fit(reference, poses=poses)
        head.save(out)
        ref = head.reference
        typer.echo(f"reference: {len(ref)} frames of {reference} at {ref.size[0]}x{ref.size[1]}"
                   + (", with poses" if ref.poses is not None else ""))
        typer.echo(f"model written to {out}")

    @cli.score.command("patrol")
    def score_patrol(
        model_dir: Path = typer.Argument(..., help="Folder written by `oddeye fit patrol`."),
        query: list[str] = typer.Option(..., "--query", help="Query run: video file or frame folder (repeatable)."),
        poses: Optional[Path] = typer.Option(None, "--poses", help="CSV of the query's poses/times (one query only)."),
        out: Path = typer.Option(Path("oddeye-results/patrol"), "--out", help="Folder for result, overlays, timeline, store."),
        db: Optional[str] = typer.Option(None, "--db", help="Review store (SQLite path or URL); default <out>/store.db."),
        threshold: Optional[float] = typer.Option(None, "--threshold", help="Frame change score that makes an event."),
        pose_radius: Optional[float] = typer.Option(None, "--pose-radius", help="Pair only with reference frames this close (pose units; needs --poses for both runs)."),
        time_window: Optional[float] = typer.Option(None, "--time-window", help="Pair only with reference frames this many seconds from the query frame's time."),
        min_similarity: Optional[float] = typer.Option(None, "--min-similarity", help="Descriptor similarity below which a frame must be confirmed by alignment (default 0.5)."),
        threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads (default: all, or $ODDEYE_THREADS)."),
    ) -> None:
        """Compare a query run with the reference frame by frame: pair, align, change map, events.

        Frames without a matching reference frame are reported as "no reference", not as anomalies.
        Example: oddeye score patrol patrol-model --query route_today.mp4 --out results/patrol
        """
        from oddeye.patrol.head import PatrolHead

        if poses is not None and len(query) > 1:
            raise InputError("--poses goes with a single --query", "score the runs one at a time")
        head = PatrolHead.load(model_dir)
        head.config.threads = threads
        if threshold is not None:
            head.config.event_threshold = threshold
        head.config.pairing.pose_radius = pose_radius
        head.config.pairing.time_window = time_window
        if min_similarity is not None:
            head.config.pairing.min_similarity = min_similarity
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = head.score(query, poses=poses, overlays=out / "overlays")
        for w in caught:
            if "resized" in str(w.message) or "truncated" in str(w.message):
                typer.echo(f"warning: {w.message}", err=True)
        typer.echo(f"threshold {result.threshold:.3g}; {len(result.events)} event(s)")
        for e in result.events:
            typer.echo(f"  {e.sample_id}: frames {e.start_frame}-{e.end_frame} ({e.start:.2f}-{e.end:.2f} s) "
                       f"score {e.score:.3f} {e.reason}")
        for line in write_outputs(result, out, db, str(model_dir), ",".join(query)):
            typer.echo(line)

    @cli.eval.command("patrol")
    def eval_patrol(
        dataset: str = typer.Option("deeppcb", "--dataset", help="deeppcb (template/test boards with defect boxes)."),
        root: Path = typer.Option(..., "--root", help="Data set folder in its public layout (holds PCBData/)."),
        warp: bool = typer.Option(False, "--warp", help="Warp each template by a seeded random homography first."),
        seed: int = typer.Option(0, "--seed", help="Seed of the --warp homographies."),
        limit: Optional[int] = typer.Option(None, "--limit", help="Evaluate only the first N test pairs."),
        features: bool = typer.Option(True, "--features/--no-features", help="Use patch features (slower)."),
        threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads (default: all, or $ODDEYE_THREADS)."),
        out: Path = typer.Option(Path("oddeye-results/eval-patrol"), "--out", help="Folder for result, overlays, store."),
        json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the JSON line to this file."),
        db: Optional[str] = typer.Option(None, "--db", help="Review store; default <out>/store.db."),
    ) -> None:
        """Evaluate patrol change detection on DeepPCB (test split): pixel AUROC (boxes as masks), box recall at
        IoU 0.5 (and with centre hits), pixel F1/IoU of the predicted boxes at the head's threshold, pairs/s.

        With --warp every template is first warped by a seeded random homography (rotation <= 5 deg, scale
        0.95-1.05, shift <= 5 %, corner jitter <= 1 %); pixels and boxes the warped template no longer covers
        are left out. Prints a table, then one JSON line (last line of stdout).
        Example: oddeye eval patrol --dataset deeppcb --root ../shared/data/deeppcb --warp
        """
        from oddeye.core.report import eval_line, print_eval
        from oddeye.patrol.evaluate import DATASETS, evaluate_deeppcb
        from oddeye.patrol.head import PatrolHead
        from oddeye.store.api import save_result

        if dataset not in DATASETS:
            raise InputError(f"unknown patrol data set {dataset!r}", f"use one of {', '.join(DATASETS)}")
        t0 = time.perf_counter()
        head = PatrolHead()
        _head_options(head, features, threads)
        if warp:
            typer.echo(f"--warp: each template is warped by a random homography (seed {seed}) before alignment")
        metrics, result = evaluate_deeppcb(head, root, warp=warp, seed=seed, limit=limit, out=out)
        result.save(out)
        store = db or str(out / "store.db")
        save_result(store, result, kind="patrol", data=str(root), params={"warp": warp, "features": features})
        doc = eval_line(metrics, "deeppcb", len(result.scores), time.perf_counter() - t0, split="test", warp=warp,
                        seed=seed if warp else None, features=features)
        print_eval(doc, title=f"patrol on deeppcb ({'warped' if warp else 'aligned'} templates)", json_path=json_path)
