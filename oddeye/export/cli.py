"""`oddeye export MODEL_DIR --format onnx|openvino --out DIR` and `oddeye bench export MODEL_DIR --data DIR`: thin
commands over oddeye.export; plain functions, so scripts and tests call them with plain arguments."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from oddeye.core.errors import require_dir
from oddeye.runtime.session import BACKENDS

ModelDir = Annotated[Path, typer.Argument(help="Model folder written by `oddeye fit ...`.")]
Format = Annotated[str, typer.Option("--format", help=f"{' | '.join(BACKENDS)}.")]


def export_cmd(model_dir: ModelDir, out: Annotated[Path, typer.Option("--out", help="Export folder to write.")],
               format: Format = "onnx") -> Path:
    """Export a fitted model for deployment: one graph plus a manifest (inputs, preprocessing, outputs, threshold).

    Run it without PyTorch: python -m oddeye.runtime OUT INPUT... (on the target: pip install --no-deps oddeye,
    then the runtime extra's packages: onnxruntime numpy opencv-python-headless pillow; docs/export.md).
    Exportable: patchcore (also --retrieve), gaussian, video-prediction, pointcloud (its adapter).

    Example: oddeye export models/tile --out exports/tile --format onnx
    """
    from oddeye.export.api import export_model

    man = export_model(model_dir, out, format, progress=lambda line: typer.echo(line, err=True))
    typer.echo(f"exported {model_dir} -> {man.parent} ({format}); manifest {man}")
    typer.echo(f"run it: python -m oddeye.runtime {man.parent} INPUT...")
    return man


def bench_export_cmd(
    model_dir: ModelDir,
    data: Annotated[Path, typer.Option("--data", help=(
        "Images (a folder, or a folder of class folders: good/ok/normal = normal, others anomalous), a data set root "
        "with --dataset, or, for a video model, a folder of frame folders."))],
    export: Annotated[Path | None, typer.Option("--export", help=(
        "An existing export of MODEL_DIR (default: export to a temporary folder first)."))] = None,
    format: Format = "onnx",
    dataset: Annotated[str | None, typer.Option("--dataset", help=(
        "Read --data as this data set's public layout and score its test split: mvtec | mvtec3d-rgb | "
        "magnetic-tile (image), ucsd-ped2 (video)."))] = None,
    seed: Annotated[int, typer.Option("--seed", help="Split seed of --dataset (the one the model was fitted "
                                                     "with).")] = 0,
    limit: Annotated[int | None, typer.Option("--limit", help="Score at most this many images or videos "
                                                              "(evenly spread).")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the JSON line to this file.")] = None,
) -> dict[str, Any]:
    """Score the same data with the model and its export: differences, AUROC and speed both ways; the last line
    is JSON (max_abs_diff, max_rel_diff, auroc_original, auroc_export, images_per_s_original,
    images_per_s_export, speed_ratio).

    Example: oddeye bench export models/tile --data ../shared/data/magnetic_tile --dataset magnetic-tile
    """
    from oddeye.core.report import print_eval
    from oddeye.export.api import check_exportable, export_model
    from oddeye.export.bench import bench_export

    check_exportable(model_dir)
    require_dir(data, "--data")
    with tempfile.TemporaryDirectory(prefix="oddeye-export-") as tmp:
        target = export or Path(tmp) / "export"
        if export is None:
            export_model(model_dir, target, format, progress=lambda line: typer.echo(line, err=True))
        doc = bench_export(model_dir, target, data, dataset=dataset, seed=seed, limit=limit)
    print_eval(doc, title=f"oddeye bench export: {doc['head']} ({doc['backend']})", json_path=json_path)
    return doc


def register(cli: Any) -> None:
    """Add `oddeye export` and `oddeye bench export`."""
    cli.app.command("export")(export_cmd)
    cli.bench.command("export")(bench_export_cmd)
