"""Exported image heads on magnetic tile (../shared/data/magnetic_tile): `oddeye bench export` figures for PatchCore
and Gaussian (max diff against `oddeye score image`, AUROC both ways, images/s both ways), and the PatchCore design
choice: memory bank inside the graph vs backbone graph + FAISS index (speed and size).

Run: .venv/bin/python benchmarks/bench_export.py [--heads patchcore,gaussian] [--format onnx] [--root DIR]
Split: a seeded half of MT_Free trains (seed 0), the other half and all five defect classes test (bench_image.py's).
Models are fitted with float32 features (extractor bf16 False): the export computes float32, and on a CPU with native
bf16 the heads would otherwise fit and score in bf16. Data: Huang et al., The Visual Computer 2018.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO.parent / "shared" / "data" / "magnetic_tile"
CITE = "magnetic tile (Huang et al., The Visual Computer 2018)"
# bench_image.py's settings, with an exact (flat) bank index and float32 features
SETTINGS = {"extractor": {"image_size": 256, "layers": [4, 10], "bf16": False}, "seed": 0, "max_bank": 6000,
            "index_kind": "flat", "max_pool": 100_000, "border": 2, "coreset": 0.1}


def fit(head: str, ds, model_dir: Path) -> None:
    """Fit `head` on the data set's training images with SETTINGS and save it to `model_dir` (skipped if there)."""
    from oddeye.core.head import RunContext
    from oddeye.image.evaluate import make_head

    if (model_dir / "oddeye_model.json").is_file():
        return
    t0 = time.perf_counter()
    make_head(head, **SETTINGS).fit(ds.train, ctx=RunContext(progress=False)).save(model_dir)
    print(f"fitted {head} in {time.perf_counter() - t0:.0f} s -> {model_dir}", file=sys.stderr, flush=True)


def faiss_alternative(model_dir: Path, export_dir: Path, paths: list[Path]) -> dict[str, float]:
    """PatchCore as backbone graph + FAISS: images/s of the exported graph's features plus the head's own FAISS
    search and scoring in numpy, and the sizes of the two layouts (graph with bank vs backbone graph + index)."""
    import torch

    from oddeye.core.head import load_head
    from oddeye.core.imageio import read_image
    from oddeye.export.graph import Features, float32_extractor, to_onnx
    from oddeye.image.common import to_pixel_map
    from oddeye.runtime.image import resize_square
    from oddeye.runtime.session import Session

    head = load_head(model_dir)
    ext = float32_extractor(head)
    feat_path = to_onnx(Features(ext), [torch.zeros(2, ext.image_size, ext.image_size, 3, dtype=torch.uint8)],
                        export_dir.parent / "features_only" / "model.onnx", ["images"], ["features"])
    spec = {"inputs": [{"name": "images", "shape": ["batch", ext.image_size, ext.image_size, 3], "dtype": "uint8"}],
            "outputs": [{"name": "features"}], "files": {"model": "model.onnx"}}
    sess = Session(feat_path.parent, spec)
    t0 = time.perf_counter()
    for s in range(0, len(paths), 16):
        imgs = [read_image(p, "rgb") for p in paths[s:s + 16]]
        f = sess.run(images=np.stack([resize_square(im, ext.image_size) for im in imgs]))["features"]
        pmaps, _ = head._patch_scores(torch.from_numpy(f))
        [to_pixel_map(m, ext.image_size, im.shape[:2], head.config.sigma) for m, im in zip(pmaps, imgs)]
    dt = time.perf_counter() - t0
    index_bytes = sum(f.stat().st_size for f in (model_dir / "index").iterdir())
    return {"faiss_images_per_s": len(paths) / dt, "faiss_backbone_graph_bytes": feat_path.stat().st_size,
            "faiss_index_bytes": index_bytes}


def main(argv: list[str] | None = None) -> int:
    """Fit (once), export and bench each head; append the figures to benchmarks/RESULTS.md."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    ap.add_argument("--heads", default="patchcore,gaussian")
    ap.add_argument("--format", default="onnx", help="onnx | openvino")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "export")
    ap.add_argument("--fit-only", action="store_true", help="only fit the models")
    ap.add_argument("--no-record", action="store_true", help="print, do not append to RESULTS.md")
    ap.add_argument("--ped2-model", type=Path, default=None,
                    help="also bench this video-prediction model folder on the UCSD Ped2 test clips")
    ap.add_argument("--ped2-root", type=Path, default=REPO.parent / "shared" / "data" / "ucsd_ped2")
    args = ap.parse_args(argv)
    if not (args.root / "MT_Free").is_dir():
        print(f"magnetic-tile data not found at {args.root}; see ../shared/data/README.md", file=sys.stderr)
        return 2
    os.nice(10)
    from oddeye.core.config import set_threads
    from oddeye.core.report import machine_line, record_benchmark
    from oddeye.export.api import export_model
    from oddeye.export.bench import bench_export
    from oddeye.image.datasets import load_image_dataset

    set_threads()
    ds = load_image_dataset("magnetic-tile", args.root, seed=0)
    cmd = ".venv/bin/python benchmarks/bench_export.py " + " ".join(argv if argv is not None else sys.argv[1:])
    for head in [h for h in args.heads.split(",") if h]:
        model_dir = args.out / head
        fit(head, ds, model_dir)
        if args.fit_only:
            continue
        load0 = machine_line()
        export_dir = args.out / f"{head}_{args.format}"
        export_model(model_dir, export_dir, args.format)
        figs = bench_export(model_dir, export_dir, args.root, dataset="magnetic-tile", seed=0)
        figs["export_bytes"] = json.loads((export_dir / "oddeye_export.json").read_text())["size_bytes"]
        if head == "patchcore" and args.format == "onnx":
            figs.update(faiss_alternative(model_dir, export_dir, [Path(it.path) for it in ds.test]))
        print(json.dumps({"head": head, **figs}), flush=True)
        if not args.no_record:
            record_benchmark(f"export: {head} on magnetic tile, {args.format} vs `oddeye score image`",
                             f"{CITE}; seed 0: {len(ds.train)} MT_Free train, {len(ds.test)} test", cmd, figs,
                             notes=f"Shared 2-core machine; load at start: {load0}. Model settings {SETTINGS}. "
                                   "Both sides read and decode every test file; images/s over the whole test set "
                                   "after a warm-up batch.")
    if args.ped2_model:
        bench_ped2(args, cmd)
    return 0


def trained(model_dir: Path) -> str:
    """How a video-prediction model folder was trained, from its manifest."""
    doc = json.loads((model_dir / "oddeye_model.json").read_text())
    info, m = doc.get("train_info", {}), doc["config"]["model"]
    return (f"model {model_dir}: `oddeye fit video-prediction --frames ../shared/data/ucsd_ped2/training/frames "
            f"--minutes {info.get('train_minutes', 0):.0f}` ({info.get('steps')} steps, {m['size']}x{m['size']} gray, "
            f"validation clips {', '.join(info.get('val_videos', []))})")


def bench_ped2(args: argparse.Namespace, cmd: str) -> None:
    """`oddeye bench export` of a video-prediction model on the 12 Ped2 test clips; recorded."""
    from oddeye.core.report import machine_line, record_benchmark
    from oddeye.export.api import export_model
    from oddeye.export.bench import bench_export

    load0 = machine_line()
    export_dir = args.out / f"ped2_{args.format}"
    export_model(args.ped2_model, export_dir, args.format)
    figs = bench_export(args.ped2_model, export_dir, args.ped2_root, dataset="ucsd-ped2")
    figs["export_bytes"] = json.loads((export_dir / "oddeye_export.json").read_text())["size_bytes"]
    print(json.dumps({"head": "video-prediction", **figs}), flush=True)
    if not args.no_record:
        record_benchmark(f"export: video-prediction on UCSD Ped2, {args.format} vs `oddeye score video`",
                         "UCSD Ped2 (Mahadevan et al., CVPR 2010): the 12 test clips, 2,010 frames; "
                         f"{trained(args.ped2_model)}", cmd, figs,
                         notes=f"Shared 2-core machine; load at start: {load0}. Differences over the per-frame "
                               "z-scores and every frame's error map; AUROC: frame-level micro with per-video "
                               "min-max normalisation; speeds in frames/s, decoding included.")


if __name__ == "__main__":
    sys.exit(main())
