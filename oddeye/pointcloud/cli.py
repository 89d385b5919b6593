"""`oddeye fit pointcloud`, `oddeye score pointcloud`, `oddeye eval pointcloud`."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from oddeye.core.errors import EmptyDataError, InputError

DATASET_CHOICES = ("bunny-defects", "real3d-ad", "anomaly-shapenet", "mvtec3d")


def expand_inputs(items: list[Path]) -> list[Path]:
    """Files as given, folders expanded to the point-cloud files they hold (sorted naturally)."""
    from oddeye.core.paths import natural_key
    from oddeye.pointcloud.io import CLOUD_SUFFIXES

    files: list[Path] = []
    for it in items:
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


def _save(db: str | None, out: Path, result, kind: str, model: str | None, data: str, params: dict) -> int:  # noqa: ANN001
    """Write the Result to the review store (imported lazily: only entry points import oddeye.ui)."""
    from oddeye.store.api import save_result

    return save_result(db or str(out / "store.db"), result, kind=kind, model=model, data=data, params=params)


def register(cli) -> None:  # noqa: ANN001 - CliGroups
    """Add the point-cloud commands to the fit / score / eval groups."""

    @cli.fit.command("pointcloud")
    def fit_pointcloud(
        train: list[Path] = typer.Option(..., "--train", help="Normal clouds: files or folders (repeatable)."),
        out: Path = typer.Option(..., "--out", help="Model folder to write."),
        adapt: bool = typer.Option(True, "--adapt/--no-adapt", help="Train the LSFA-style feature adapter."),
        keep_raw: bool = typer.Option(False, "--keep-raw/--adapted-only",
                                      help="With --adapt: score on FPFH and adapted features side by side."),
        target_points: int = typer.Option(3000, help="Voxels per training cloud (sets the voxel size)."),
        position_weight: float = typer.Option(0.0, help="Weight of xyz in the features; only for clouds "
                                                         "registered into one frame (0 = off)."),
        surface_weight: float = typer.Option(0.0, help="Weight of the deviation from the training surface; only "
                                                        "for clouds registered into one frame (0 = off)."),
        hole_weight: float = typer.Option(0.0, help="With --surface-weight: weight of the area of missing surface "
                                                     "(holes) in a one-view scan (0 = off; bunny eval: 0.3)."),
        seed: int = typer.Option(0, help="Seed for adapter, coreset and calibration."),
    ) -> None:
        """Learn normal local 3D shape from normal point clouds; writes a model folder.

        \b
        Example: oddeye fit pointcloud --train scans/good/ --out models/part --no-adapt
        """
        from oddeye.pointcloud.head import PointCloudHead

        files = expand_inputs(train)
        head = PointCloudHead(adapt=adapt, target_points=target_points, position_weight=position_weight,
                              keep_raw=keep_raw, surface_weight=surface_weight, hole_weight=hole_weight, seed=seed)
        head.fit(files)
        head.save(out)
        typer.echo(f"fitted on {len(files)} clouds (bank {head.fit_info['n_bank']} of {head.fit_info['n_bank_all']} "
                   f"voxel features, voxel {head.cfg.voxel_size:.4g}, threshold {head.threshold:.4g}) -> {out}")

    @cli.score.command("pointcloud")
    def score_pointcloud(
        model: Path = typer.Argument(..., help="Folder written by `oddeye fit pointcloud`."),
        inputs: list[Path] = typer.Argument(..., help="Clouds to score: files or folders."),
        out: Path = typer.Option(Path("oddeye-results/pointcloud"), "--out", help="Folder for PLY/PNG maps + result."),
        db: str = typer.Option(None, "--db", help="Review store (SQLite path or URL); default <out>/store.db."),
    ) -> None:
        """Score point clouds: per-point anomaly scores as coloured PLY + PNG views, a result and store entry.

        \b
        Example: oddeye score pointcloud models/part scans/new/ --out results/
        """
        from oddeye.pointcloud.head import PointCloudHead, as_cloud
        from oddeye.pointcloud.render import write_review

        head = PointCloudHead.load(model)
        head.progress = True
        files = expand_inputs(inputs)
        result = head.score(files)
        for f, sc in zip(files, result.scores):
            cloud = as_cloud(f)
            pts = head._clean(cloud)[0].points
            sc.artefacts = write_review(out / "clouds", sc.sample_id, pts, sc.maps["points"].values,
                                        title=f"{sc.sample_id}: score {sc.score:.3g}")
        result.save(out)
        run = _save(db, out, result, "pointcloud", str(model), ", ".join(map(str, inputs)), head.params)
        for sc in result.scores:
            flag = "ANOMALOUS" if head.threshold is not None and sc.score > head.threshold else "ok"
            typer.echo(f"{sc.sample_id}: {sc.score:.4g} {flag}  {sc.artefacts.get('png', '')}")
        typer.echo(f"result -> {out / 'result.json'}; store run {run}")

    @cli.eval.command("pointcloud")
    def eval_pointcloud(
        dataset: str = typer.Option(..., "--dataset", help=f"One of {', '.join(DATASET_CHOICES)}."),
        root: Path = typer.Option(..., "--root", help="Data set folder in its public layout."),
        json_path: Path = typer.Option(None, "--json", help="Also write the JSON line to this file."),
        db: str = typer.Option(None, "--db", help="Review store; default <out>/store.db."),
        out: Path = typer.Option(Path("oddeye-results/eval-pointcloud"), "--out", help="Folder for result + plots."),
        adapt: bool = typer.Option(True, "--adapt/--no-adapt", help="Use the feature adapter."),
        keep_raw: bool = typer.Option(False, "--keep-raw/--adapted-only",
                                      help="With --adapt: score on FPFH and adapted features side by side."),
        folds: int = typer.Option(5, help="bunny-defects: how many of the 5 folds to run."),
        variants: int = typer.Option(2, help="bunny-defects: resampled variants per held-out scan."),
        seed: int = typer.Option(0, help="Seed of defects, adapter and coreset."),
        surface_weight: float = typer.Option(8.0, help="bunny-defects (registered scans): weight of the deviation "
                                                        "from the training surface (0 = FPFH only)."),
        hole_weight: float = typer.Option(0.3, help="bunny-defects: weight of the area of missing surface (holes); "
                                                     "0 = off (faster)."),
    ) -> None:
        """Evaluate on a data set: object AUROC, point AUROC, AUPRO (organised clouds), points/s; last line JSON.

        bunny-defects = real Stanford bunny scans with OUR seeded synthetic defects (registered with bun.conf,
        5 folds of 8 train / 2 test scans).

        \b
        Example: oddeye eval pointcloud --dataset bunny-defects --root ../shared/data/stanford_bunny --no-adapt
        """
        from oddeye.core.report import eval_line, print_eval
        from oddeye.pointcloud.evaluate import eval_bunny, eval_layout
        from oddeye.pointcloud.head import PointCloudHead

        if dataset not in DATASET_CHOICES:
            raise InputError(f"--dataset {dataset!r} is unknown", f"choose from {', '.join(DATASET_CHOICES)}")
        t0 = time.perf_counter()
        if dataset == "bunny-defects":
            def make() -> PointCloudHead:
                return PointCloudHead(adapt=adapt, keep_raw=keep_raw, position_weight=4.0, smooth_k=3,
                                      bank_max=100000, surface_weight=surface_weight, hole_weight=hole_weight, seed=seed,
                                      progress=False)

            metrics, result = eval_bunny(root, make, folds=folds, variants=variants, seed=seed, out=out)
        else:
            def make() -> PointCloudHead:
                return PointCloudHead(adapt=adapt, keep_raw=keep_raw, seed=seed, progress=False)

            metrics, result = eval_layout(dataset, root, make, out=out)
        result.metrics = {k: v for k, v in metrics.items() if isinstance(v, float)}
        out.mkdir(parents=True, exist_ok=True)
        result.save(out)
        run = _save(db, out, result, "pointcloud-eval", None, f"{dataset}:{root}", {"adapt": adapt, "keep_raw": keep_raw, "seed": seed})
        line = eval_line(metrics, dataset, len(result.scores), time.perf_counter() - t0, adapted=adapt,
                         keep_raw=keep_raw, store_run=run)
        print_eval(line, title=f"pointcloud on {dataset}", json_path=json_path)
