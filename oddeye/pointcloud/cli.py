"""`oddeye fit pointcloud`, `oddeye score pointcloud`, `oddeye eval pointcloud`.

Each command is a plain function (the demo calls the same ones): it checks its inputs first, then fits or loads
the head, and writes through the one writer. Settings left at None take the PointCloudConfig default.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from oddeye.core.auto import DEFAULT_MINUTES
from oddeye.core.autoopts import Auto, AutoMinutes
from oddeye.core.errors import EmptyDataError, InputError
from oddeye.core.headconfig import given
from oddeye.pointcloud.config import BUNNY_SETTINGS, PointCloudConfig
from oddeye.scale.batch import WorkersOpt, ray_mapper
from oddeye.scale.runtime import RayOpt, check_store
from oddeye.store.writer import Written

DATASET_CHOICES = ("bunny-defects", "scan-defects", "real3d-ad", "anomaly-shapenet", "mvtec3d")
SCANNED = ("bunny-defects", "scan-defects")  # our defects on registered range scans
# with --auto the scanned data sets keep only the bank size of BUNNY_SETTINGS (a capacity): the weights are searched
AUTO_SCANNED = {"bank_max": BUNNY_SETTINGS["bank_max"]}
DEFAULT = PointCloudConfig()


def expand_inputs(items: list[Path]) -> list[Path]:
    """Files as given, folders expanded to the point-cloud files they hold (sorted naturally)."""
    from oddeye.core.paths import natural_key
    from oddeye.pointcloud.io import CLOUD_SUFFIXES

    files: list[Path] = []
    for it in map(Path, items):
        if it.is_dir():
            found = sorted((p for p in it.rglob("*") if p.suffix.lower() in CLOUD_SUFFIXES and p.is_file()),
                           key=lambda p: natural_key(str(p)))
            if not found:
                raise EmptyDataError(f"{it}: no point-cloud files ({', '.join(CLOUD_SUFFIXES)})")
            files += found
        elif it.is_file():
            files.append(it)
        else:
            raise InputError(f"input not found: {it}", "pass point-cloud files or folders holding them")
    return files


def check_clouds(files: list[Path], progress: bool = True) -> None:
    """Read every cloud once: an unreadable file or one with too few points is refused before any work."""
    from tqdm.auto import tqdm

    from oddeye.pointcloud.head import usable
    from oddeye.pointcloud.io import load_cloud

    for f in tqdm(files, desc="check clouds", disable=not progress or len(files) < 2, leave=False):
        usable(load_cloud(f))


def _help(field: str) -> str:
    """A setting's description with its default, from the config."""
    doc, value = PointCloudConfig.describe()[field], getattr(DEFAULT, field)
    shown = ("on" if value else "off") if isinstance(value, bool) else value
    return f"{doc[0].upper()}{doc[1:]} (default {shown})."


def fit_pointcloud(
    train: Annotated[list[Path], typer.Option("--train", help="Normal clouds: files or folders (repeatable).")],
    out: Annotated[Path, typer.Option("--out", help="Model folder to write.")],
    adapt: Annotated[Optional[bool], typer.Option("--adapt/--no-adapt", help=_help("adapt"))] = None,
    keep_raw: Annotated[Optional[bool], typer.Option("--keep-raw/--adapted-only", help=_help("keep_raw"))] = None,
    adapt_steps: Annotated[Optional[int], typer.Option("--adapt-steps", help=_help("adapt_steps"))] = None,
    target_points: Annotated[Optional[int], typer.Option("--target-points", help=_help("target_points"))] = None,
    position_weight: Annotated[Optional[float], typer.Option("--position-weight", help=_help("position_weight"))] = None,
    surface_weight: Annotated[Optional[float], typer.Option("--surface-weight", help=_help("surface_weight"))] = None,
    hole_weight: Annotated[Optional[float], typer.Option("--hole-weight", help=_help("hole_weight") + " Bunny eval: 0.3.")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help=_help("seed"))] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")] = True,
    auto: Auto = False,
    auto_minutes: AutoMinutes = DEFAULT_MINUTES,
) -> Path:
    """Learn normal local 3D shape from normal point clouds; writes a model folder.

    Example: oddeye fit pointcloud --train scans/good/ --out models/part --no-adapt
    Term weights chosen from the normal clouds: oddeye fit pointcloud --train scans/good/ --out models/part --auto
    """
    settings = given(adapt=adapt, keep_raw=keep_raw, adapt_steps=adapt_steps, target_points=target_points,
                     position_weight=position_weight, surface_weight=surface_weight, hole_weight=hole_weight,
                     seed=seed)
    config = PointCloudConfig(**settings)
    files = expand_inputs(train)
    if Path(out).is_file():
        raise InputError(f"--out {out} is a file", "pass a folder for the model")
    check_clouds(files, progress)
    from oddeye.core.head import RunContext
    from oddeye.pointcloud.head import PointCloudHead

    if auto:
        from oddeye.pointcloud.auto import auto_search

        search = auto_search(config, files, given=settings, minutes=auto_minutes, log=typer.echo)
        for line in search.found.lines():
            typer.echo(line)
        head = search.fit(progress)
        model = search.save(head, out)
    else:
        head = PointCloudHead(config).fit(files, ctx=RunContext(progress=progress))
        model = head.save(out)
    typer.echo(f"fitted on {len(files)} clouds (bank {head.fit_info['n_bank']} of {head.fit_info['n_bank_all']} "
               f"voxel features, voxel {head.fpfh.voxel_size:.4g}, threshold {head.threshold:.4g}) -> {model}")
    return Path(model)


def score_pointcloud(
    model: Annotated[Path, typer.Argument(help="Folder written by `oddeye fit pointcloud`.")],
    inputs: Annotated[list[Path], typer.Argument(help="Clouds to score: files or folders.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for PLY/PNG maps + result.")] = Path("oddeye-results/pointcloud"),
    db: Annotated[Optional[str], typer.Option("--db", help="Review store (SQLite path or URL); default <out>/store.db.")] = None,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Record a cloud that cannot be read or has too few "
                                                              "points as an error and score the others.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")] = True,
    ray: RayOpt = None,
    workers: WorkersOpt = None,
) -> Written:
    """Score point clouds: per-point anomaly scores as coloured PLY + PNG views, a result and store entry.

    With --ray, each cloud is a Ray task (one run in the store, the same result).
    Example: oddeye score pointcloud models/part scans/new/ --out results/
    """
    from oddeye.core.head import RunContext, read_manifest
    from oddeye.pointcloud.head import NAME, PointCloudHead
    from oddeye.store.writer import write_result

    read_manifest(model, head=NAME)  # cheap: a missing folder or another head's (naming its command) fails first
    if ray is not None:
        check_store(db, ray)
    files = expand_inputs(inputs)
    if Path(out).is_file():
        raise InputError(f"--out {out} is a file", "pass a folder for the results")
    if not skip_bad:
        check_clouds(files, progress)
    ctx = RunContext(out=Path(out), skip_bad=skip_bad, progress=progress)
    if ray is None:
        head = PointCloudHead.load(model)
        result = head.score(files, ctx=ctx)
        params = head.config.to_dict()
    else:
        from oddeye.scale.batch import score_on_ray

        result = score_on_ray(model, files, ctx, address=ray, db=db, workers=workers,
                              names=lambda f: Path(f).stem, desc="score clouds", unit="cloud")
        params = result.meta.get("config", {})  # the loaded head's config.to_dict(), as the plain path stores
    for s in result.errors():
        typer.echo(f"skipped {s.meta.get('path', s.sample_id)}: {s.meta['error']}", err=True)
    for s in (s for s in result.scores if "error" not in s.meta):
        if s.meta.get("dropped_nonfinite"):
            typer.echo(f"{s.meta['source']}: dropped {s.meta['dropped_nonfinite']} non-finite (NaN/inf) points, "
                       f"scored the other {s.meta['n_points']}", err=True)
        flag = "ANOMALOUS" if result.threshold is not None and s.score > result.threshold else "ok"
        typer.echo(f"{s.sample_id}: {s.score:.4g} {flag}  {s.artefacts.get('png', '')}")
    written = write_result(result, out, kind="pointcloud", db=db, model=model, data=",".join(map(str, inputs)),
                           params=params)
    for line in written.lines:
        typer.echo(line)
    return written


def eval_pointcloud(
    dataset: Annotated[str, typer.Option("--dataset", help=f"One of {', '.join(DATASET_CHOICES)}.")],
    root: Annotated[Path, typer.Option("--root", help=(
        "Data set folder in its public layout; scan-defects: a folder of PLY range scans and one .conf of "
        "`bmesh NAME.ply tx ty tz qi qj qk qw` lines registering them (the Stanford layout)."))],
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Also write the JSON line to this file.")] = None,
    db: Annotated[Optional[str], typer.Option("--db", help="Review store; default <out>/store.db.")] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for result + plots.")] = Path("oddeye-results/eval-pointcloud"),
    adapt: Annotated[Optional[bool], typer.Option("--adapt/--no-adapt", help=_help("adapt"))] = None,
    keep_raw: Annotated[Optional[bool], typer.Option("--keep-raw/--adapted-only", help=_help("keep_raw"))] = None,
    folds: Annotated[Optional[int], typer.Option("--folds", help=(
        "bunny-defects / scan-defects: how many folds to run (default: all; the bunny has 5, any other object "
        "ceil(scans / 2))."))] = None,
    variants: Annotated[int, typer.Option("--variants", help=(
        "bunny-defects / scan-defects: resampled variants per held-out scan."))] = 2,
    seed: Annotated[int, typer.Option("--seed", help="Seed of defects, adapter and coreset.")] = 0,
    surface_weight: Annotated[Optional[float], typer.Option(
        "--surface-weight", help="bunny-defects / scan-defects (registered scans): weight of the deviation from the training surface "
                                 f"(0 = FPFH only; default {BUNNY_SETTINGS['surface_weight']}).")] = None,
    hole_weight: Annotated[Optional[float], typer.Option(
        "--hole-weight", help="bunny-defects / scan-defects: weight of the area of missing surface (holes); 0 = off (faster; "
                              f"default {BUNNY_SETTINGS['hole_weight']}).")] = None,
    auto: Auto = False,
    auto_minutes: AutoMinutes = DEFAULT_MINUTES,
    ray: RayOpt = None,
    workers: WorkersOpt = None,
) -> dict[str, Any]:
    """Evaluate on a data set: object AUROC, point AUROC, AUPRO (organised clouds), points/s; last line JSON.

    bunny-defects = real Stanford bunny scans with OUR seeded synthetic defects (registered with bun.conf,
    5 folds of 8 train / 2 test scans); scan-defects = the same protocol on any scanned object (folds formed from
    the scans found). With --auto (bunny-defects, scan-defects) each fold's settings are searched on its training
    scans alone (--auto-minutes per fold), instead of the hand-set weights. With --ray, each fold (category) is
    fitted and scored as a Ray task.

    Example: oddeye eval pointcloud --dataset bunny-defects --root ../shared/data/stanford_bunny --no-adapt
             oddeye eval pointcloud --dataset scan-defects --root scans/bracket
    """
    if dataset not in DATASET_CHOICES:
        raise InputError(f"--dataset {dataset!r} is unknown", f"choose from {', '.join(DATASET_CHOICES)}")
    from oddeye.core.errors import require_dir

    require_dir(root, "--root")
    if ray is not None:
        check_store(db, ray)
    unit = "fold" if dataset in SCANNED else "category"
    mapper = map if ray is None else ray_mapper(ray, workers, desc=f"eval {dataset}", unit=unit)
    from oddeye.core.report import eval_line, print_eval
    from oddeye.pointcloud.evaluate import eval_bunny, eval_layout, eval_scans
    from oddeye.pointcloud.scans import find_scans
    from oddeye.pointcloud.head import PointCloudHead
    from oddeye.store.writer import write_result

    if auto and dataset not in SCANNED:
        raise InputError(f"--auto is not available for --dataset {dataset}", f"use it with {' or '.join(SCANNED)}")
    fixed = given(adapt=adapt, keep_raw=keep_raw, surface_weight=surface_weight, hole_weight=hole_weight)
    chosen = given(adapt=adapt, keep_raw=keep_raw, seed=seed)
    if dataset in SCANNED:
        chosen = {**(AUTO_SCANNED if auto else BUNNY_SETTINGS), **fixed, "seed": seed}
    config = PointCloudConfig(**chosen)
    search = None
    if auto:
        from functools import partial

        from oddeye.pointcloud.auto import fold_search

        search = partial(fold_search, base=config, given=fixed, minutes=auto_minutes, log=typer.echo)
    t0 = time.perf_counter()
    if dataset == "bunny-defects":
        metrics, result = eval_bunny(root, lambda: PointCloudHead(config), folds=folds or 5, variants=variants,
                                     seed=seed, out=out, mapper=mapper, search=search)
    elif dataset == "scan-defects":
        scan_set = find_scans(root)
        if scan_set.missing:
            typer.echo(f"note: {scan_set.conf} lists scans not in {root}: {', '.join(scan_set.missing)}", err=True)
        metrics, result = eval_scans(scan_set, lambda: PointCloudHead(config), folds=folds, variants=variants,
                                     seed=seed, out=out, mapper=mapper, search=search)
    else:
        metrics, result = eval_layout(dataset, root, lambda: PointCloudHead(config), out=out, mapper=mapper)
    result.metrics = {k: v for k, v in metrics.items() if isinstance(v, float)}
    written = write_result(result, out, kind="pointcloud-eval", db=db, data=f"{dataset}:{root}", timelines=False,
                           params=config.to_dict())
    line = eval_line(metrics, dataset, len(result.scores), time.perf_counter() - t0, adapted=config.adapt,
                     keep_raw=config.keep_raw, store_run=written.run_id, **auto_line(result.meta.get("auto")))
    print_eval(line, title=f"pointcloud on {dataset}", json_path=json_path)
    return line


def auto_line(folds: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The eval JSON line's --auto keys: per fold the chosen settings and their validation AUROC; search seconds."""
    if not folds:
        return {}
    return {"auto": [f["chosen_settings"] for f in folds],
            "auto_val_auroc": [f["trials"][f["chosen"]]["auroc"] for f in folds],
            "auto_s": round(sum(f["elapsed_s"] for f in folds), 1)}


def register(cli: Any) -> None:
    """Add the point-cloud commands to the fit / score / eval groups."""
    cli.fit.command("pointcloud")(fit_pointcloud)
    cli.score.command("pointcloud")(score_pointcloud)
    cli.eval.command("pointcloud")(eval_pointcloud)
