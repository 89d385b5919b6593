"""`oddeye fit image`, `oddeye score image`, `oddeye eval image`: thin commands over the image heads and the one
writer. Each is a plain function (the demo calls them too); options left out (None) take the head config's default."""

from __future__ import annotations

import time
from dataclasses import fields
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer

from oddeye.core.auto import DEFAULT_MINUTES
from oddeye.core.autoopts import Auto, AutoMinutes
from oddeye.core.errors import InputError, ModelError
from oddeye.core.headconfig import given
from oddeye.image.config import ExtractorConfig, FeatureMapConfig, GaussianConfig, ImageConfig, PatchCoreConfig
from oddeye.scale.batch import WorkersOpt
from oddeye.scale.runtime import RayOpt, check_store
from oddeye.store.writer import Written, write_result

# eval image's own settings: the benchmark's (benchmarks/RESULTS.md), not the config defaults
EVAL_MAX_BANK = 6000
EVAL_MAX_POOL = 100_000

Head = Annotated[str, typer.Option("--head", help="patchcore | gaussian | zero-shot.")]
Coreset = Annotated[float | None, typer.Option(
    "--coreset", help=f"PatchCore: share of patches kept in the memory bank (default {PatchCoreConfig.coreset:g}).")]
ImageSize = Annotated[int | None, typer.Option(
    "--image-size", help=f"Images are resized to this square size (default {ExtractorConfig.image_size}).")]
Layers = Annotated[str | None, typer.Option(
    "--layers", help="Backbone blocks to use, e.g. 4,10 (default per backbone).")]
Seed = Annotated[int | None, typer.Option(
    "--seed", help=f"Seed of the coreset, the calibration split and zero-shot groups (default {ImageConfig.seed}).")]
Intensity = Annotated[str | None, typer.Option(
    "--intensity", help="raw | standardize (per-image mean/std: ignore exposure differences); "
                        f"default {ExtractorConfig.intensity}.")]
Border = Annotated[int | None, typer.Option(
    "--border", help=f"Outer ring of patches left out of image scores (default {ImageConfig.border}).")]
ScoreSigma = Annotated[float | None, typer.Option(
    "--score-sigma", help="Smooth patch scores over this many patches before the image max "
                          f"(default {FeatureMapConfig.score_sigma:g}).")]
PositionWeight = Annotated[float | None, typer.Option(
    "--position-weight", help="PatchCore: compare each patch with normal patches near the same place (weight of its "
                              "position, in patches; for parts aligned in the image, e.g. 8; 0: anywhere; default "
                              f"{PatchCoreConfig.position_weight:g}).")]
Gains = Annotated[str | None, typer.Option(
    "--exposure-gains", help="PatchCore/Gaussian: also learn from every normal image with its intensities times each "
                             "of these gains, e.g. 0.8,1.3,1.6 where shots differ in exposure (costs fit time and "
                             "memory, not scoring time).")]
Retrieve = Annotated[int | None, typer.Option(
    "--retrieve", help="PatchCore: compare each image only with the patches of its K nearest normal images (0: one "
                       f"global coreset bank; default {PatchCoreConfig.retrieve}); e.g. 30 with --exposure-gains, "
                       "where normal images differ as a whole.")]
RetrievePatches = Annotated[int | None, typer.Option(
    "--retrieve-patches", help="PatchCore with --retrieve: patches kept per normal image (a coreset of each; default "
                               f"{PatchCoreConfig.retrieve_patches}); more is slower to score (0: every 2nd row and "
                               "column).")]
Db = Annotated[str | None, typer.Option("--db", help="Review store (SQLite path or URL); default <out>/store.db.")]


def _extractor(backbone: str | None, image_size: int | None, layers: str | None, target_dim: int | None,
               intensity: str | None, bf16: bool | None = None) -> dict[str, Any]:
    """The extractor settings given on the command line (the rest take ExtractorConfig's defaults)."""
    cfg: dict[str, Any] = {"name": backbone, "image_size": image_size, "target_dim": target_dim or None,
                           "intensity": intensity, "bf16": bf16}
    if layers:
        try:
            cfg["layers"] = [int(x) for x in layers.split(",") if x.strip()]
        except ValueError:
            raise InputError(f"--layers {layers!r}: give comma-separated integers, e.g. 4,10") from None
    return given(**cfg)


def _gains(exposure_gains: str | None) -> tuple[float, ...] | None:
    """--exposure-gains parsed and checked (None: not given)."""
    from oddeye.image.common import check_gains

    return None if exposure_gains is None else check_gains(exposure_gains)


def fit_image(
    train: Annotated[Path, typer.Option("--train", help="Folder of NORMAL training images (or an image file).")],
    out: Annotated[Path, typer.Option("--out", help="Model folder to write.")],
    head: Head = "patchcore",
    coreset: Coreset = None,
    max_bank: Annotated[int | None, typer.Option("--max-bank", help="PatchCore: cap on the memory bank size "
                                                                    "(0 or left out: none).")] = None,
    mode: Annotated[str | None, typer.Option("--mode", help="Gaussian: local (per location) or global (default "
                                                            f"{GaussianConfig.mode}).")] = None,
    backbone: Annotated[str | None, typer.Option(
        "--backbone", help="efficientnet-lite0 | efficientnet-lite1 | efficientnet-lite2 | hf:<folder or hub id> "
                           f"| torchscript:<file.pt> (default {ExtractorConfig.name}).")] = None,
    image_size: ImageSize = None,
    layers: Layers = None,
    target_dim: Annotated[int | None, typer.Option("--target-dim", help="Pool features to this many channels "
                                                                        "(0 or left out: keep).")] = None,
    seed: Seed = None,
    intensity: Intensity = None,
    border: Border = None,
    score_sigma: ScoreSigma = None,
    position_weight: PositionWeight = None,
    exposure_gains: Gains = None,
    retrieve: Retrieve = None,
    retrieve_patches: RetrievePatches = None,
    bf16: Annotated[bool | None, typer.Option("--bf16/--no-bf16", help=(
        "bfloat16 features (default: on CUDA GPUs that compute bf16 natively; float32 in ONNX Runtime on CPUs, "
        "faster there even where bf16 is native); --no-bf16 fits in float32 everywhere."))] = None,
    shots: Annotated[int | None, typer.Option("--shots", min=1, help=(
        "Fit on the first K normal images only (few-shot); with K <= 16 the image heads also learn each shot's "
        "flipped and turned views (see --augment). With --auto half of the K shots validate the settings (K >= 2)."
    ))] = None,
    augment: Annotated[str | None, typer.Option("--augment", help=(
        "Also learn from flipped / turned copies of the normal images: auto (the 8 views with --shots <= 16, "
        "else none) | none | flips | dihedral (default auto)."))] = None,
    auto: Auto = False,
    auto_minutes: AutoMinutes = DEFAULT_MINUTES,
) -> Path:
    """Learn what normal images look like; writes a model folder.

    Example: oddeye fit image --train data/bottle/train/good --out models/bottle --head patchcore --coreset 0.1
    Settings chosen from the normal images: oddeye fit image --train data/bottle/train/good --out models/bottle --auto
    Few shots: oddeye fit image --train data/bottle/train/good --out models/bottle-4shot --shots 4
    Few shots, settings chosen from them: ... --shots 8 --auto
    """
    from oddeye.core.head import RunContext
    from oddeye.image.evaluate import head_class

    if not train.exists():
        raise InputError(f"--train {train} not found", "pass a folder of normal images (or one image file)")
    cls = head_class(head)
    options = {"coreset": coreset, "max_bank": max_bank or None, "mode": mode, "seed": seed, "border": border,
               "score_sigma": score_sigma, "position_weight": position_weight,
               "exposure_gains": _gains(exposure_gains), "retrieve": retrieve, "retrieve_patches": retrieve_patches,
               "augment": augment}
    settings = given(**options)
    known = {f.name for f in fields(cls.config_class)}
    for k in settings:
        if k not in known:
            raise InputError(f"--{k.replace('_', '-')} does not apply to the {head} head", "leave it out")
    extractor = _extractor(backbone, image_size, layers, target_dim, intensity, bf16)
    model = cls(extractor=extractor, **settings)
    t0 = time.perf_counter()
    if auto:
        from oddeye.image.auto import auto_search

        search = auto_search(cls, model.config, train, given={**settings, **({"extractor": extractor} if extractor
                                                                             else {})},
                             minutes=auto_minutes, log=typer.echo, shots=shots)
        for line in search.found.lines():
            typer.echo(line)
        model = search.fit()
        search.save(model, out)
    else:
        model.fit([train], ctx=RunContext(shots=shots))
        model.save(out)
    thr = model.threshold
    typer.echo(f"fitted {head} in {time.perf_counter() - t0:.1f} s -> {out}"
               + (f" (threshold {thr:.4g} from held-out normal images)" if thr is not None else ""))
    return out


def use_compiled_backbone(model: Any, model_dir: Path) -> None:
    """--compile: run the model's Lite backbone through torch.compile; another backbone is an InputError."""
    from oddeye.retrieval.features import LITE_NAMES

    ext = model.config.extractor
    if ext.name not in LITE_NAMES:
        raise InputError(f"--compile works with the efficientnet-lite backbones; {model_dir} uses {ext.name}",
                         "leave --compile out")
    model.config = model.config.replace(extractor=ext.replace(compile=True))


def images_per_task(manifest: dict[str, Any], n: int) -> int:
    """Images per Ray task for the model of `manifest` scoring n images: whole feature-extraction batches (each
    image gets the features it gets in one process); all n for zero-shot, whose images are scored against each
    other (groups drawn from the whole batch, the threshold from all their scores)."""
    if manifest["head"] == "zero-shot":
        return max(1, n)
    return int(manifest.get("config", manifest).get("batch_size") or ImageConfig.batch_size)


def score_image(
    model_dir: Annotated[Path, typer.Argument(help="Model folder written by `oddeye fit image`.")],
    inputs: Annotated[list[Path], typer.Argument(help="Image files or folders to score.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for result.json and overlays.")] = Path(
        "oddeye-results/image"),
    db: Db = None,
    compile_backbone: Annotated[bool, typer.Option("--compile", help=(
        "Run the Lite backbone through torch.compile (10-40 s once, needs a C++ compiler) instead of the "
        "default ONNX Runtime on CPU, which is faster where onnxruntime is installed; for GPUs."))
    ] = False,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help=(
        "Record an unreadable image as an error in the result and go on (default: refuse before scoring)."))] = False,
    ray: RayOpt = None,
    workers: WorkersOpt = None,
) -> Written:
    """Score images with a fitted model: writes heatmap overlays, result.json and a run in the review store.

    With --ray, batches of images are scored as Ray tasks (one run in the store, the same result).
    Example: oddeye score image models/bottle data/bottle/test/broken_large --out results/bottle
    """
    from oddeye.core.head import HEADS, RunContext, load_head, read_manifest, score_command
    from oddeye.core.imageio import check_image
    from oddeye.image.common import as_items

    doc = read_manifest(model_dir)
    if HEADS.get(doc["head"], ("",))[0] != "image":
        raise ModelError(f"{model_dir} holds a '{doc['head']}' model, not an image model",
                         f"score it with `{score_command(doc['head'])}`")
    if ray is not None:
        check_store(db, ray)
    items = as_items(inputs)
    if not skip_bad:  # refuse before loading anything: every file there, its header readable and of a sane size
        for it in items:
            if it.path is not None:
                check_image(it.path)
    configure = partial(use_compiled_backbone, model_dir=model_dir) if compile_backbone else None
    ctx = RunContext(out=out, skip_bad=skip_bad)
    if ray is None:
        model = load_head(model_dir)
        if configure is not None:
            configure(model)
        t0 = time.perf_counter()
        result = model.score(items, ctx=ctx)
    else:
        from oddeye.scale.batch import IMAGE_GROUP, score_on_ray

        t0 = time.perf_counter()
        result = score_on_ray(model_dir, items, ctx, address=ray, db=db, per_task=images_per_task(doc, len(items)),
                              group=IMAGE_GROUP,
                              workers=workers, configure=configure, desc="score images", unit="image")
    dt = time.perf_counter() - t0
    for s in result.errors():
        typer.echo(f"skipped {s.meta.get('path', s.sample_id)}: {s.meta['error']}", err=True)
    written = write_result(result, out, kind="image", db=db, model=model_dir, data=",".join(map(str, inputs)),
                           params={"model": str(model_dir), "skip_bad": skip_bad})
    scored = [s for s in result.scores if "error" not in s.meta]
    for s in sorted(scored, key=lambda s: -s.score)[:10]:
        flag = "ANOMALY" if result.threshold is not None and s.score > result.threshold else ""
        typer.echo(f"{s.score:10.4f}  {s.sample_id}  {flag}")
    skipped = f", {len(result.errors())} unreadable skipped" if result.errors() else ""
    typer.echo(f"scored {len(scored)} images in {dt:.1f} s{skipped}; {len(result.events)} above the threshold; "
               f"overlays in {Path(out) / 'overlays'}")
    for line in written.lines:
        typer.echo(line)
    return written


def score_fitted_on_ray(model: Any, samples: list[Any], ctx: Any, *, folder: Path, address: str, db: str | None,
                        workers: int | None) -> Any:
    """`eval image --ray`: the fitted `model` saved to `folder`, the samples scored there on Ray (as `score image
    --ray` would) -> Result."""
    from oddeye.core.head import read_manifest
    from oddeye.image.common import as_items
    from oddeye.scale.batch import IMAGE_GROUP, score_on_ray

    model.save(folder)
    items = as_items(samples)
    return score_on_ray(folder, items, ctx, address=address, db=db, workers=workers,
                        per_task=images_per_task(read_manifest(folder), len(items)), group=IMAGE_GROUP,
                        desc="score test images",
                        unit="image")


def eval_image(
    dataset: Annotated[str, typer.Option("--dataset", help="mvtec | mvtec3d-rgb | magnetic-tile.")],
    root: Annotated[Path, typer.Option("--root", help="Data set folder in its public layout.")],
    head: Head = "patchcore",
    category: Annotated[str | None, typer.Option("--category", help="MVTec category (when --root holds "
                                                                    "several).")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the JSON line to this file.")] = None,
    db: Db = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for the result.")] = Path("oddeye-results/eval-image"),
    seed: Seed = None,
    coreset: Coreset = None,
    max_bank: Annotated[int, typer.Option("--max-bank", help="PatchCore: cap on the memory bank (0: none).")
                        ] = EVAL_MAX_BANK,
    image_size: ImageSize = None,
    layers: Layers = None,
    overlays: Annotated[bool, typer.Option("--overlays", help="Write a heatmap overlay per test image.")] = False,
    no_pixel: Annotated[bool, typer.Option("--no-pixel", help="Skip pixel metrics (faster).")] = False,
    border: Border = None,
    max_pool: Annotated[int, typer.Option("--max-pool", help="PatchCore: random patch pool for the coreset "
                                                             "(0: all patches).")] = EVAL_MAX_POOL,
    intensity: Intensity = None,
    score_sigma: ScoreSigma = None,
    position_weight: PositionWeight = None,
    exposure_gains: Gains = None,
    retrieve: Retrieve = None,
    retrieve_patches: RetrievePatches = None,
    auto: Auto = False,
    auto_minutes: AutoMinutes = DEFAULT_MINUTES,
    ray: RayOpt = None,
    workers: WorkersOpt = None,
) -> Written:
    """Evaluate an image head on a public data set; prints a table, then ONE JSON line.

    Magnetic tile: a seeded half of MT_Free trains, the rest of MT_Free and all defects test.
    Pixel metrics are computed on maps and masks resized to --image-size. With --auto the settings are searched on
    the training split alone (never a test label), then fitted on all of it and evaluated. With --ray the fitted
    model is saved to OUT/model and the test images are scored as Ray tasks (the same result).

    Example: oddeye eval image --dataset magnetic-tile --root ../shared/data/magnetic_tile --head patchcore
    """
    from oddeye.core.report import eval_line, print_eval
    from oddeye.image.datasets import load_image_dataset
    from oddeye.image.evaluate import evaluate, head_class

    head_class(head)
    if ray is not None:
        check_store(db, ray)
    seed = ImageConfig.seed if seed is None else seed
    options = {"coreset": coreset, "border": border, "score_sigma": score_sigma, "position_weight": position_weight,
               "exposure_gains": _gains(exposure_gains), "retrieve": retrieve, "retrieve_patches": retrieve_patches}
    settings = given(**options)
    t0 = time.perf_counter()
    ds = load_image_dataset(dataset, root, category=category, seed=seed)
    extractor = _extractor(None, image_size, layers, None, intensity)
    found, auto_line = None, {}
    if auto:
        from oddeye.image.auto import search_for_eval

        settings, extractor, found = search_for_eval(head, ds.train, settings, extractor, seed=seed,
                                                     minutes=auto_minutes, log=typer.echo, max_bank=max_bank or None,
                                                     max_pool=max_pool or None)
        for line in found.lines():
            typer.echo(line)
        auto_line = {"auto": found.chosen_settings, "auto_val_auroc": found.trials[found.chosen].auroc,
                     "auto_s": round(found.elapsed_s, 1)}
    score = None if ray is None else partial(score_fitted_on_ray, folder=out / "model", address=ray, db=db,
                                             workers=workers)
    m, result, _ = evaluate(ds, head=head, pixel=not no_pixel, out=out if overlays else None, seed=seed,
                            extractor=extractor, max_bank=max_bank or None, max_pool=max_pool or None, score=score,
                            **settings)
    per_type = m.pop("image_auroc_per_type")
    result.meta.update({"dataset": dataset, "root": str(root), "seed": seed, "split": ds.meta})
    if found is not None:
        result.meta["auto"] = found.to_dict()
    written = write_result(result, out, kind="image", db=db, model=f"{head} (eval)", data=f"{dataset}:{root}",
                           params={"head": head, "seed": seed, "max_bank": max_bank, "max_pool": max_pool,
                                   "image_size": image_size, **settings})
    for line in written.lines:
        typer.echo(line)
    doc = eval_line(m, dataset, len(ds.test), time.perf_counter() - t0, head=head, category=category,
                    seed=seed, image_auroc_per_type=per_type, **auto_line)
    print_eval(doc, title=f"oddeye eval image: {head} on {dataset}", json_path=json_path)
    return written


def register(cli: Any) -> None:
    """Add the image commands to the fit, score and eval groups."""
    cli.fit.command("image")(fit_image)
    cli.score.command("image")(score_image)
    cli.eval.command("image")(eval_image)
