"""Image heads on the magnetic-tile data set (../shared/data/magnetic_tile): accuracy per head, throughput, memory.

Run: .venv/bin/python benchmarks/bench_image.py [--heads patchcore,gaussian,zero-shot] [--root DIR]
Split: a seeded half of MT_Free trains (seed 0), the other half and all five defect classes test.
Data: Huang et al., "Surface defect saliency of magnetic tile", The Visual Computer 2018.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO.parent / "shared" / "data" / "magnetic_tile"
CITE = "magnetic tile (Huang et al., The Visual Computer 2018)"


def throughput(head, images: list[np.ndarray], batch: int = 16, repeats: int = 16) -> dict[str, float]:
    """Images/s of head.score_arrays on in-memory 256x256 images in batches of `batch` (model loaded, warmed up).

    Timed without tracemalloc (it traces numpy's allocations and slows them); its peak comes from one more batch.
    """
    head.score_arrays(images[:batch])
    times = []
    for r in range(repeats):
        part = images[(r * batch) % max(1, len(images) - batch):][:batch]
        t0 = time.perf_counter()
        head.score_arrays(part)
        times.append((time.perf_counter() - t0) / len(part))
    tracemalloc.start()
    head.score_arrays(images[:batch])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"images_per_s": 1.0 / float(np.mean(times)), "images_per_s_median_batch": 1.0 / float(np.median(times)),
            "tracemalloc_peak_mb": peak / 2**20,
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def extractor_options(size: int = 256) -> dict[str, float]:
    """Images/s of the Lite0 extractor alone for each channels_last x bf16 combination (batch 16)."""
    from oddeye.retrieval.features import build_extractor, time_extractor

    figs = {}
    for cl in (False, True):
        for bf in (False, True):
            ext = build_extractor(image_size=size, channels_last=cl, bf16=bf)
            figs[f"extract_images_per_s_cl{int(cl)}_bf16{int(bf)}"] = time_extractor(ext, n=64, batch=16, size=size)
    return figs


def main(argv: list[str] | None = None) -> int:
    """Evaluate each head, measure PatchCore throughput, append the figures to benchmarks/RESULTS.md."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    ap.add_argument("--heads", default="patchcore,gaussian,zero-shot")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--layers", default="4,10")
    ap.add_argument("--coreset", type=float, default=0.1)
    ap.add_argument("--max-bank", type=int, default=6000)
    ap.add_argument("--index", default="ivf", help="PatchIndex kind of the PatchCore bank")
    ap.add_argument("--max-pool", type=int, default=100000, help="random patch pool for the coreset")
    ap.add_argument("--border", type=int, default=2, help="outer patch ring left out of image scores")
    ap.add_argument("--intensity", default="raw", help="raw | standardize (per-image mean/std)")
    ap.add_argument("--score-sigma", type=float, default=1.0, help="patch-score smoothing before the image max")
    ap.add_argument("--position-weight", type=float, default=0.0, help="PatchCore: weight of the patch position")
    ap.add_argument("--retrieve", type=int, default=0, help="PatchCore: image-conditioned bank of the K nearest images")
    ap.add_argument("--retrieve-patches", type=int, default=64, help="PatchCore --retrieve: coreset patches per image")
    ap.add_argument("--exposure-gains", default="", help="PatchCore/Gaussian: also fit on normal images x these gains")
    ap.add_argument("--no-pixel", action="store_true", help="skip pixel metrics")
    ap.add_argument("--no-record", action="store_true", help="print, do not append to RESULTS.md")
    ap.add_argument("--options", action="store_true", help="also time channels_last x bf16 for the extractor")
    ap.add_argument("--compile", action="store_true", help="torch.compile the backbone (timed after compiling)")
    ap.add_argument("--runtime", default=None, help="backbone runtime: auto (default) | onnx | torch")
    ap.add_argument("--throughput-only", action="store_true",
                    help="only time PatchCore scoring (bank of --max-bank from the first 96 training images)")
    args = ap.parse_args(argv)
    if not (args.root / "MT_Free").is_dir():
        print(f"magnetic-tile data not found at {args.root} (expected MT_Free/ etc.); see ../shared/data/README.md",
              file=sys.stderr)
        return 2
    os.nice(10)
    from oddeye.core.config import set_threads
    from oddeye.core.report import machine_line, record_benchmark
    from oddeye.image.common import as_items, check_gains
    from oddeye.image.datasets import load_image_dataset
    from oddeye.image.evaluate import evaluate

    set_threads()
    ds = load_image_dataset("magnetic-tile", args.root, seed=args.seed)
    ext = {"image_size": args.image_size, "layers": [int(x) for x in args.layers.split(",")],
           "intensity": args.intensity}
    if args.compile:
        ext["compile"] = True
    if args.runtime:
        ext["runtime"] = args.runtime
    settings = dict(extractor=ext, seed=args.seed, max_bank=args.max_bank, index_kind=args.index,
                    max_pool=args.max_pool, border=args.border, score_sigma=args.score_sigma,
                    position_weight=args.position_weight, exposure_gains=check_gains(args.exposure_gains),
                    retrieve=args.retrieve, retrieve_patches=args.retrieve_patches)
    split = f"seed {args.seed}: {len(ds.train)} MT_Free train, {len(ds.test)} test ({sum(i.label for i in ds.test)} defective)"
    cmd = "nice -n 10 .venv/bin/python benchmarks/bench_image.py " + " ".join(argv if argv is not None else sys.argv[1:])
    out = {}
    if args.options:
        load0 = machine_line()
        figs = extractor_options(args.image_size)
        print(json.dumps(figs), flush=True)
        if not args.no_record:
            record_benchmark("image: Lite0 extractor speed, channels_last x bf16", "random uint8 256x256, batch 16",
                             cmd, figs, notes=f"Shared 2-core machine; load at start: {load0}.")
    if args.throughput_only:
        from oddeye.image.patchcore import PatchCoreHead

        load0 = machine_line()
        model = PatchCoreHead(coreset=1.0, **settings).fit(ds.train[:96])
        imgs = [cv2.resize(it.load(), (256, 256)) for it in as_items(ds.test[:64])]
        figs = {**throughput(model, imgs, repeats=8), "bank_size": model.bank_size, "index": model.bank_kind,
                "backbone_runtime": getattr(model.extractor.backbone, "runtime", "torch")}
        print(json.dumps(figs), flush=True)
        if not args.no_record:
            record_benchmark("image: PatchCore scoring throughput (256x256, batch 16, model loaded)",
                             f"{CITE}; 64 test images resized to 256x256; bank from 96 MT_Free train images",
                             cmd, figs, notes=f"Load at start: {load0}. Includes features, kNN, re-weighting, "
                                              f"upsampled + smoothed maps. Extractor {ext}.")
        return 0
    for head in [h for h in args.heads.split(",") if h]:
        load0 = machine_line()
        m, _, model = evaluate(ds, head=head, pixel=not args.no_pixel, coreset=args.coreset, **settings)
        per_type = m.pop("image_auroc_per_type")
        figs = {**{k: v for k, v in m.items() if isinstance(v, (int, float))},
                **{f"image_auroc_{k}": v for k, v in per_type.items()}}
        if head != "zero-shot":
            imgs = [cv2.resize(it.load(), (256, 256)) for it in as_items(ds.test[:64])]
            figs.update({f"throughput_{k}": v for k, v in throughput(model, imgs).items()})
            figs["backbone_runtime"] = getattr(model.extractor.backbone, "runtime", "torch")
            if head == "patchcore":
                figs["bank_size"] = model.bank_size
        out[head] = figs
        print(json.dumps({"head": head, **figs}), flush=True)
        if not args.no_record:
            record_benchmark(f"image: {head} on magnetic tile", f"{CITE}; {split}", cmd, figs,
                             notes=f"Shared 2-core machine; load at start: {load0}. Timings are slowed by the "
                                   f"other engineers' jobs. Pixel metrics on maps/masks resized to "
                                   f"{args.image_size}x{args.image_size}. Extractor {ext}.")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
