"""`oddeye fit image`, `oddeye score image`, `oddeye eval image`: industrial image anomaly detection."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from oddeye.core.errors import InputError


# options that fit image and eval image share
BORDER_HELP = "Outer ring of patches left out of image scores."
SCORE_SIGMA_HELP = "Smooth patch scores over this many patches before the image max."
POSITION_HELP = ("PatchCore: compare each patch with normal patches near the same place (weight of its position, in "
                 "patches; for parts aligned in the image, e.g. 8; 0: anywhere).")
GAINS_HELP = ("PatchCore/Gaussian: also learn from every normal image with its intensities times each of these gains, "
              "e.g. 0.8,1.3,1.6 where shots differ in exposure (costs fit time and memory, not scoring time).")
RETRIEVE_HELP = ("PatchCore: compare each image only with the patches of its K nearest normal images (0: one global "
                 "coreset bank); e.g. 30 with --exposure-gains, where normal images differ as a whole.")
RETRIEVE_PATCHES_HELP = ("PatchCore with --retrieve: patches kept per normal image (a coreset of each); more is "
                         "slower to score (0: every 2nd row and column).")

def _extractor_cfg(backbone: str, image_size: int, layers: str | None, target_dim: int | None,
                   bf16: bool | None, intensity: str = "raw") -> dict[str, Any]:
    """Extractor options from command-line strings."""
    from oddeye.retrieval.features import LITE0_NAMES

    cfg: dict[str, Any] = {"name": backbone, "image_size": image_size, "target_dim": target_dim,
                           "intensity": intensity}
    if layers:
        try:
            cfg["layers"] = [int(x) for x in layers.split(",") if x.strip()]
        except ValueError:
            raise InputError(f"--layers {layers!r}: give comma-separated integers, e.g. 4,10") from None
    if backbone in LITE0_NAMES:
        if bf16 is not None:
            cfg["bf16"] = bf16
    else:  # options only the Lite0 backbone understands
        cfg["bf16"] = None
        cfg["channels_last"] = None
    return {k: v for k, v in cfg.items() if v is not None}


def _save_to_store(db: str, result: Any, model: str | None, data: str, params: dict[str, Any]) -> int:
    from oddeye.store.api import save_result

    return save_result(db, result, kind="image", model=model, data=data, params=params)


def register(cli: Any) -> None:
    """Add the image commands to the fit, score and eval groups."""

    @cli.fit.command("image")
    def fit_image(
        train: Path = typer.Option(..., "--train", help="Folder of NORMAL training images (or an image file)."),
        out: Path = typer.Option(..., "--out", help="Model folder to write."),
        head: str = typer.Option("patchcore", "--head", help="patchcore | gaussian | zero-shot."),
        coreset: float = typer.Option(0.1, "--coreset", help="PatchCore: share of patches kept in the memory bank."),
        max_bank: int = typer.Option(0, "--max-bank", help="PatchCore: cap on the memory bank size (0: none)."),
        mode: str = typer.Option("local", "--mode", help="Gaussian: local (per location) or global."),
        backbone: str = typer.Option("efficientnet-lite0", "--backbone",
                                     help="efficientnet-lite0 | hf:<folder or hub id> | torchscript:<file.pt>."),
        image_size: int = typer.Option(256, "--image-size", help="Images are resized to this square size."),
        layers: str = typer.Option("", "--layers", help="Backbone blocks to use, e.g. 4,10 (default per backbone)."),
        target_dim: int = typer.Option(0, "--target-dim", help="Pool features to this many channels (0: keep)."),
        seed: int = typer.Option(0, "--seed", help="Seed of the coreset and the calibration split."),
        intensity: str = typer.Option("raw", "--intensity",
                                      help="raw | standardize (per-image mean/std: ignore exposure differences)."),
        border: int = typer.Option(0, "--border", help=BORDER_HELP),
        score_sigma: float = typer.Option(1.0, "--score-sigma", help=SCORE_SIGMA_HELP),
        position_weight: float = typer.Option(0.0, "--position-weight", help=POSITION_HELP),
        exposure_gains: str = typer.Option("", "--exposure-gains", help=GAINS_HELP),
        retrieve: int = typer.Option(0, "--retrieve", help=RETRIEVE_HELP),
        retrieve_patches: int = typer.Option(64, "--retrieve-patches", help=RETRIEVE_PATCHES_HELP),
    ) -> None:
        """Learn what normal images look like; writes a model folder.

        Example: oddeye fit image --train data/bottle/train/good --out models/bottle --head patchcore --coreset 0.1
        """
        from oddeye.image.common import check_gains
        from oddeye.image.evaluate import make_head

        ext = _extractor_cfg(backbone, image_size, layers or None, target_dim or None, None, intensity)
        model = make_head(head, coreset=coreset, max_bank=max_bank or None, mode=mode, extractor=ext, seed=seed,
                          border=border, score_sigma=score_sigma, position_weight=position_weight,
                          exposure_gains=check_gains(exposure_gains), retrieve=retrieve,
                          retrieve_patches=retrieve_patches)
        t0 = time.perf_counter()
        model.fit([train])
        model.save(out)
        thr = getattr(model, "threshold", None)
        typer.echo(f"fitted {head} in {time.perf_counter() - t0:.1f} s -> {out}"
                   + (f" (threshold {thr:.4g} from held-out normal images)" if thr is not None else ""))

    @cli.score.command("image")
    def score_image(
        model_dir: Path = typer.Argument(..., help="Model folder written by `oddeye fit image`."),
        inputs: list[Path] = typer.Argument(..., help="Image files or folders to score."),
        out: Path = typer.Option(Path("oddeye-results/image"), "--out", help="Folder for result.json and overlays."),
        db: str = typer.Option("", "--db", help="Review store (SQLite path or URL); default <out>/store.db."),
        compile_backbone: bool = typer.Option(False, "--compile", help=(
            "Run the Lite0 backbone through torch.compile (10-40 s once, needs a C++ compiler) instead of the "
            "default ONNX Runtime on CPU, which is faster where onnxruntime is installed; for GPUs and bf16 CPUs.")),
    ) -> None:
        """Score images with a fitted model: writes heatmap overlays, result.json and a run in the review store.

        Example: oddeye score image models/bottle data/bottle/test/broken_large --out results/bottle
        """
        from oddeye.image.evaluate import load_head
        from oddeye.retrieval.features import LITE0_NAMES

        model = load_head(model_dir)
        if compile_backbone:
            if model.extractor_cfg.get("name", LITE0_NAMES[0]) not in LITE0_NAMES:
                raise InputError(f"--compile works with the efficientnet-lite0 backbone; {model_dir} uses "
                                 f"{model.extractor_cfg.get('name')}", "leave --compile out")
            model.extractor_cfg["compile"] = True
        t0 = time.perf_counter()
        result = model.score(inputs, out=out)
        dt = time.perf_counter() - t0
        result.save(out)
        run = _save_to_store(db or str(out / "store.db"), result, str(model_dir), ", ".join(map(str, inputs)),
                             {"model": str(model_dir)})
        for s in sorted(result.scores, key=lambda s: -s.score)[:10]:
            flag = "ANOMALY" if result.threshold is not None and s.score > result.threshold else ""
            typer.echo(f"{s.score:10.4f}  {s.sample_id}  {flag}")
        typer.echo(f"scored {len(result.scores)} images in {dt:.1f} s; {len(result.events)} above the threshold; "
                   f"overlays in {out / 'overlays'}; result {out / 'result.json'}; store run {run}")

    @cli.eval.command("image")
    def eval_image(
        dataset: str = typer.Option(..., "--dataset", help="mvtec | mvtec3d-rgb | magnetic-tile."),
        root: Path = typer.Option(..., "--root", help="Data set folder in its public layout."),
        head: str = typer.Option("patchcore", "--head", help="patchcore | gaussian | zero-shot."),
        category: str = typer.Option("", "--category", help="MVTec category (when --root holds several)."),
        json_path: Path = typer.Option(None, "--json", help="Also write the JSON line to this file."),
        db: str = typer.Option("", "--db", help="Review store (SQLite path or URL); default <out>/store.db."),
        out: Path = typer.Option(Path("oddeye-results/eval-image"), "--out", help="Folder for the result."),
        seed: int = typer.Option(0, "--seed", help="Seed of the magnetic-tile split, coreset and groups."),
        coreset: float = typer.Option(0.1, "--coreset", help="PatchCore: share of patches kept."),
        max_bank: int = typer.Option(6000, "--max-bank", help="PatchCore: cap on the memory bank (0: none)."),
        image_size: int = typer.Option(256, "--image-size", help="Model input size."),
        layers: str = typer.Option("", "--layers", help="Backbone blocks, e.g. 4,10."),
        overlays: bool = typer.Option(False, "--overlays", help="Write a heatmap overlay per test image."),
        no_pixel: bool = typer.Option(False, "--no-pixel", help="Skip pixel metrics (faster)."),
        border: int = typer.Option(0, "--border", help=BORDER_HELP),
        max_pool: int = typer.Option(100000, "--max-pool", help="PatchCore: random patch pool for the coreset."),
        intensity: str = typer.Option("raw", "--intensity", help="raw | standardize (per-image mean/std)."),
        score_sigma: float = typer.Option(1.0, "--score-sigma", help=SCORE_SIGMA_HELP),
        position_weight: float = typer.Option(0.0, "--position-weight", help=POSITION_HELP),
        exposure_gains: str = typer.Option("", "--exposure-gains", help=GAINS_HELP),
        retrieve: int = typer.Option(0, "--retrieve", help=RETRIEVE_HELP),
        retrieve_patches: int = typer.Option(64, "--retrieve-patches", help=RETRIEVE_PATCHES_HELP),
    ) -> None:
        """Evaluate an image head on a public data set; prints a table, then ONE JSON line.

        Magnetic tile: a seeded half of MT_Free trains, the rest of MT_Free and all defects test.
        Pixel metrics are computed on maps and masks resized to --image-size.

        Example: oddeye eval image --dataset magnetic-tile --root ../shared/data/magnetic_tile --head patchcore
        """
        from oddeye.core.report import eval_line, print_eval
        from oddeye.image.common import check_gains
        from oddeye.image.datasets import load_image_dataset
        from oddeye.image.evaluate import evaluate

        t0 = time.perf_counter()
        ds = load_image_dataset(dataset, root, category=category or None, seed=seed)
        ext = _extractor_cfg("efficientnet-lite0", image_size, layers or None, None, None, intensity)
        m, result, _ = evaluate(ds, head=head, pixel=not no_pixel, out=out if overlays else None, coreset=coreset,
                             max_bank=max_bank or None, extractor=ext, seed=seed, border=border,
                             max_pool=max_pool or None, score_sigma=score_sigma, position_weight=position_weight,
                             exposure_gains=check_gains(exposure_gains), retrieve=retrieve,
                             retrieve_patches=retrieve_patches)
        per_type = m.pop("image_auroc_per_type")
        result.meta.update({"dataset": dataset, "root": str(root), "seed": seed, "split": ds.meta})
        result.save(out)
        _save_to_store(db or str(out / "store.db"), result, f"{head} (eval)", f"{dataset}:{root}",
                       {"head": head, "seed": seed, "coreset": coreset, "max_bank": max_bank, "image_size": image_size})
        doc = eval_line(m, dataset, len(ds.test), time.perf_counter() - t0, head=head, category=category or None,
                        seed=seed, image_auroc_per_type=per_type)
        print_eval(doc, title=f"oddeye eval image: {head} on {dataset}", json_path=json_path)
