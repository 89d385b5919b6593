"""`oddeye fit patrol`, `oddeye score patrol`, `oddeye eval patrol`: reference-vs-query change detection.

Each command is a plain function (the demo calls the same ones): it checks every input first, then loads or fits
the head, and writes through the one writer. Options left at None take the PatrolConfig default.
"""

from __future__ import annotations

import time
import warnings
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from oddeye.core.auto import DEFAULT_MINUTES
from oddeye.core.autoopts import Auto, AutoMinutes
from oddeye.core.errors import InputError, require_dir, require_file, require_out_dir
from oddeye.core.headconfig import given
from oddeye.scale.batch import WorkersOpt, ray_mapper
from oddeye.scale.runtime import RayOpt, check_store
from oddeye.store.writer import Written

THREADS_HELP = "CPU threads (default: all, or $ODDEYE_THREADS)."


def _check_run(path: str | Path, what: str) -> Path:
    """A reference or query run that exists (a video file or a frame folder)."""
    from oddeye.core.videoio import is_stream

    if str(path).isdigit() or is_stream(str(path)):  # a webcam or a stream: nothing to check before opening it
        return Path(str(path))
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"{what} not found: {p}", "pass a video file or a folder of frame images")
    return p if p.is_dir() else require_file(p, what)


def fit_patrol(
    reference: Annotated[Path, typer.Option("--reference", help="Reference route: a video file or a frame folder.")],
    out: Annotated[Path, typer.Option("--out", help="Model folder to write.")],
    poses: Annotated[Optional[Path], typer.Option(
        "--poses", help="CSV: frame,time,x,y[,z][,yaw] per reference frame.")] = None,
    stride: Annotated[Optional[int], typer.Option(
        "--stride", help="Use every n-th reference frame (default: every frame).")] = None,
    max_side: Annotated[Optional[int], typer.Option(
        "--max-side", help="Scale frames so the longest side is at most this.")] = None,
    features: Annotated[Optional[bool], typer.Option(
        "--features/--no-features",
        help="Use the backbone's patch features in the change map (default: on).")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", help=THREADS_HELP)] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")] = True,
    auto: Auto = False,
    auto_minutes: AutoMinutes = DEFAULT_MINUTES,
) -> Path:
    """Ingest a reference patrol run (driven without anomalies): frames, global descriptors, poses.

    With --auto the change-map settings (features, alignment) and the event threshold are chosen on pairs made
    from the reference's own frames (normal copies and synthetic changes); the table goes into the manifest.
    Example: oddeye fit patrol --reference route_ok.mp4 --out patrol-model --poses route_ok.csv
    """
    _check_run(reference, "reference run")
    if poses is not None:
        require_file(poses, "poses CSV")
    require_out_dir(out)
    from oddeye.core.head import RunContext
    from oddeye.patrol.config import PatrolConfig
    from oddeye.patrol.head import PatrolHead

    settings = given(stride=stride, max_side=max_side, use_features=features, threads=threads)
    head = PatrolHead(PatrolConfig(**settings)).fit(reference, ctx=RunContext(poses=poses, progress=progress))
    if auto:  # every searched setting acts when pairs are compared: the ingested reference serves every candidate
        from oddeye.patrol.auto import search_route

        found = search_route(head, settings, minutes=auto_minutes, log=typer.echo)
        for line in found.found.lines():
            typer.echo(line)
        typer.echo(f"event threshold {found.meta['event_threshold']}")
        head.config = found.config
        model = found.save(head, out)
    else:
        model = head.save(out)
    ref = head.reference
    typer.echo(f"reference: {len(ref)} frames of {reference} at {ref.size[0]}x{ref.size[1]}"
               + (", with poses" if ref.poses is not None else ""))
    typer.echo(f"model written to {model}")
    return Path(model)


def set_options(head: Any, top: dict[str, Any], pairing: dict[str, Any]) -> None:
    """The `score patrol` options on a loaded head: `top` config fields and `pairing` fields of its config."""
    head.config = head.config.replace(**top, pairing=head.config.pairing.replace(**pairing))


def score_patrol(
    model_dir: Annotated[Path, typer.Argument(help="Folder written by `oddeye fit patrol`.")],
    query: Annotated[list[str], typer.Option("--query", help="Query run: video file or frame folder (repeatable).")],
    poses: Annotated[Optional[Path], typer.Option(
        "--poses", help="CSV of the query's poses/times (one query only).")] = None,
    out: Annotated[Path, typer.Option(
        "--out", help="Folder for result, overlays, timeline, store.")] = Path("oddeye-results/patrol"),
    db: Annotated[Optional[str], typer.Option(
        "--db", help="Review store (SQLite path or URL); default <out>/store.db.")] = None,
    threshold: Annotated[Optional[float], typer.Option(
        "--threshold", help="Frame change score that makes an event (default: the model's).")] = None,
    pose_radius: Annotated[Optional[float], typer.Option(
        "--pose-radius",
        help="Pair only with reference frames this close (pose units; needs --poses for both runs).")] = None,
    time_window: Annotated[Optional[float], typer.Option(
        "--time-window",
        help="Pair only with reference frames this many seconds from the query frame's time.")] = None,
    min_similarity: Annotated[Optional[float], typer.Option(
        "--min-similarity",
        help="Descriptor similarity below which a frame must be confirmed by alignment.")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", help=THREADS_HELP)] = None,
    skip_bad: Annotated[bool, typer.Option(
        "--skip-bad", help="Record a query run that cannot be read as an error and go on with the others.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")] = True,
    ray: RayOpt = None,
    workers: WorkersOpt = None,
) -> Written:
    """Compare a query run with the reference frame by frame: pair, align, change map, events.

    Frames without a matching reference frame are reported as "no reference", not as anomalies. With --ray, each
    query run is a Ray task (one run in the store, the same result).
    Example: oddeye score patrol patrol-model --query route_today.mp4 --out results/patrol
    """
    if not query:
        raise InputError("no --query given", "pass the query run: `oddeye score patrol MODEL --query RUN.mp4`")
    if poses is not None and len(query) > 1:
        raise InputError("--poses goes with a single --query", "score the runs one at a time")
    for q in query:
        _check_run(q, "query run")
    if poses is not None:
        require_file(poses, "poses CSV")
    require_out_dir(out)
    if ray is not None:
        check_store(db, ray)
    from oddeye.core.head import RunContext, read_manifest
    from oddeye.patrol.config import PatrolConfig
    from oddeye.patrol.head import NAME, PatrolHead
    from oddeye.patrol.review import per_pair
    from oddeye.store.writer import write_result

    read_manifest(model_dir, head=NAME)  # another head's folder is refused before the (slow) load
    pairing = dict(pose_radius=pose_radius, time_window=time_window,
                   **given(min_similarity=min_similarity))
    top = dict(threads=threads, **given(event_threshold=threshold))
    PatrolConfig().replace(**top, pairing=PatrolConfig().pairing.replace(**pairing))  # bad values: refused now
    configure = partial(set_options, top=top, pairing=pairing)
    ctx = RunContext(out=out, poses=poses, skip_bad=skip_bad, progress=progress)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if ray is None:
            head = PatrolHead.load(model_dir)
            configure(head)
            result = head.score(query, ctx=ctx)
        else:
            from oddeye.scale.batch import score_on_ray

            result = score_on_ray(model_dir, query, ctx, address=ray, db=db, workers=workers, configure=configure,
                                  names=lambda q: Path(q).stem or q, desc="score patrol runs", unit="run")
    for w in caught:
        if "resized" in str(w.message) or "truncated" in str(w.message):
            typer.echo(f"warning: {w.message}", err=True)
    for s in result.errors():
        typer.echo(f"skipped {s.meta.get('path', s.sample_id)}: {s.meta['error']}", err=True)
    thr = "no run scored" if result.threshold is None else f"threshold {result.threshold:.3g}"
    typer.echo(f"{thr}; {len(result.events)} event(s)")
    for e in result.events:
        typer.echo(f"  {e.sample_id}: frames {e.start_frame}-{e.end_frame} ({e.start:.2f}-{e.end:.2f} s) "
                   f"score {e.score:.3f} {e.reason}")
    written = write_result(result, out, kind="patrol", db=db, model=model_dir, data=",".join(query), view=per_pair)
    for line in written.lines:
        typer.echo(line)
    return written


def eval_patrol(
    root: Annotated[Path, typer.Option("--root", help="Data set folder in its public layout (holds PCBData/).")],
    dataset: Annotated[str, typer.Option(
        "--dataset", help="deeppcb (template/test boards with defect boxes).")] = "deeppcb",
    warp: Annotated[bool, typer.Option(
        "--warp", help="Warp each template by a seeded random homography first.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the --warp homographies.")] = 0,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Evaluate only the first N test pairs.")] = None,
    features: Annotated[Optional[bool], typer.Option(
        "--features/--no-features", help="Use patch features (slower; default: on).")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", help=THREADS_HELP)] = None,
    out: Annotated[Path, typer.Option(
        "--out", help="Folder for result, overlays, store.")] = Path("oddeye-results/eval-patrol"),
    json_path: Annotated[Optional[Path], typer.Option(
        "--json", help="Also write the JSON line to this file.")] = None,
    db: Annotated[Optional[str], typer.Option("--db", help="Review store; default <out>/store.db.")] = None,
    auto: Auto = False,
    auto_minutes: AutoMinutes = DEFAULT_MINUTES,
    ray: RayOpt = None,
    workers: WorkersOpt = None,
) -> dict[str, Any]:
    """Evaluate patrol change detection on DeepPCB (test split): pixel AUROC (boxes as masks), box recall at
    IoU 0.5 (and with centre hits), pixel F1/IoU of the predicted boxes at the head's threshold, pairs/s.

    With --warp every template is first warped by a seeded random homography (rotation <= 5 deg, scale
    0.95-1.05, shift <= 5 %, corner jitter <= 1 %); pixels and boxes the warped template no longer covers
    are left out. With --auto the settings are searched first on synthetic changes made on the TRAINVAL split's
    templates (never a test image or label), then evaluated. With --ray, each pair is compared in a Ray task. Prints
    a table, then one JSON line (last line of stdout).
    Example: oddeye eval patrol --dataset deeppcb --root ../shared/data/deeppcb --warp
    """
    from oddeye.patrol.evaluate import DATASETS

    if dataset not in DATASETS:
        raise InputError(f"unknown patrol data set {dataset!r}", f"use one of {', '.join(DATASETS)}")
    require_dir(root, "--root")
    require_out_dir(out)
    if ray is not None:
        check_store(db, ray)
    from oddeye.core.report import eval_line, print_eval
    from oddeye.patrol.evaluate import evaluate_deeppcb
    from oddeye.patrol.head import PatrolHead
    from oddeye.store.writer import write_result

    t0 = time.perf_counter()
    settings = given(use_features=features, threads=threads)
    head, found = PatrolHead(**settings), None
    if auto:
        from oddeye.patrol.auto import search_deeppcb

        found = search_deeppcb(root, head.config, settings, minutes=auto_minutes, log=typer.echo)
        for line in found.found.lines():
            typer.echo(line)
        head = PatrolHead(found.config)
    if warp:
        typer.echo(f"--warp: each template is warped by a random homography (seed {seed}) before alignment")
    mapper = map if ray is None else ray_mapper(ray, workers, desc="deeppcb pairs", unit="pair")
    metrics, result = evaluate_deeppcb(head, root, warp=warp, seed=seed, limit=limit, out=out, mapper=mapper)
    if found is not None:
        result.meta["auto"] = {**found.found.to_dict(), **found.meta}
    written = write_result(result, out, kind="patrol", db=db, data=root, timelines=False,
                           params={"warp": warp, "features": head.config.use_features,
                                   **({"auto": found.found.chosen_settings} if found is not None else {})})
    for line in written.lines:
        typer.echo(line)
    doc = eval_line(metrics, "deeppcb", len(result.scores), time.perf_counter() - t0, split="test", warp=warp,
                    seed=seed if warp else None, features=head.config.use_features,
                    **(found.line() if found is not None else {}))
    print_eval(doc, title=f"patrol on deeppcb ({'warped' if warp else 'aligned'} templates)", json_path=json_path)
    return doc


def register(cli: Any) -> None:
    """Add the patrol commands to the oddeye CLI groups."""
    cli.fit.command("patrol")(fit_patrol)
    cli.score.command("patrol")(score_patrol)
    cli.eval.command("patrol")(eval_patrol)
