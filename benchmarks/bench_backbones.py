"""Throughput of the EfficientNet-Lite0/1/2 patch feature extractors: images/s at 256 px on 2 threads.

Run: .venv/bin/python benchmarks/bench_backbones.py [--size 256] [--batch 16] [--rounds 3] [--no-record]
Each backbone runs as `build_extractor(name).extract` does in PatchCore (resize, normalise, default blocks, 3x3
level pooling) in PyTorch float32, PyTorch bfloat16 autocast (only where the CPU runs it natively: AVX512-BF16 or
AMX) and ONNX Runtime float32. Timings are interleaved round by round (every setting once per round) and the
median round is kept, so a burst of load from another process hits all settings alike.
Data: random uint8 images (speed does not depend on content). Appends to benchmarks/RESULTS.md; the last line
printed is the JSON of the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NAMES = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")


def settings(bf16_native: bool, onnx: bool) -> dict[str, dict[str, object]]:
    """Setting label -> build_extractor keywords: torch float32, torch bf16 where native, ONNX Runtime."""
    out: dict[str, dict[str, object]] = {"torch_fp32": {"runtime": "torch", "bf16": False}}
    if bf16_native:
        out["torch_bf16"] = {"runtime": "torch", "bf16": True}
    if onnx:
        out["onnx_fp32"] = {"runtime": "onnx", "bf16": False}
    return out


def main(argv: list[str] | None = None) -> int:
    """Time every backbone x setting, print the figures (JSON last) and append them to RESULTS.md."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256, help="input size (px)")
    ap.add_argument("--batch", type=int, default=16, help="images per extract call")
    ap.add_argument("--images", type=int, default=32, help="images timed per setting and round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds; the median is kept")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-record", action="store_true", help="print, do not append to RESULTS.md")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from oddeye.core.config import set_threads
    from oddeye.core.report import machine_line, record_benchmark
    from oddeye.retrieval.features import bf16_is_fast, build_extractor, time_extractor
    from oddeye.retrieval.features_lite import EfficientNetLite
    from oddeye.retrieval.features_onnx import onnx_available

    set_threads(args.threads)
    load0 = machine_line()
    modes = settings(bf16_is_fast("cpu"), onnx_available())
    exts = {(name, mode): build_extractor(name, image_size=args.size, batch_size=args.batch, threads=args.threads,
                                          **kw)
            for name in NAMES for mode, kw in modes.items()}
    runs: dict[tuple[str, str], list[float]] = {key: [] for key in exts}
    for _ in range(args.rounds):
        for key, ext in exts.items():  # time_extractor warms up (the first time: exports the ONNX graph)
            runs[key].append(time_extractor(ext, n=args.images, batch=args.batch, size=args.size))
    figs: dict[str, object] = {}
    for name in NAMES:
        short = name.removeprefix("efficientnet-")
        ext = exts[(name, "torch_fp32")]
        figs[f"{short}_params_m"] = sum(p.numel() for p in EfficientNetLite(short).parameters()) / 1e6  # BN unfolded
        figs[f"{short}_blocks"] = ",".join(map(str, ext.backbone.blocks))
        figs[f"{short}_dim"] = ext.dim
        for mode in modes:
            figs[f"{short}_{mode}_images_per_s"] = statistics.median(runs[(name, mode)])
            print(f"{name:20s} {mode:11s} {figs[f'{short}_{mode}_images_per_s']:7.1f} images/s "
                  f"(rounds: {', '.join(f'{v:.1f}' for v in runs[(name, mode)])})", flush=True)
    figs["bf16_native"] = "torch_bf16" in modes
    figs["threads"] = args.threads
    if not args.no_record:
        record_benchmark(
            f"retrieval: EfficientNet-Lite0/1/2 extractor throughput ({args.size} px, batch {args.batch}, "
            f"{args.threads} threads)", f"random uint8 {args.size}x{args.size} images", None, figs,
            notes=f"Load at start: {load0}. Extractor = resize + normalise + default blocks + 3x3 level pooling; "
                  f"median of {args.rounds} interleaved rounds of {args.images} images per setting. torch_bf16 only "
                  "where the CPU has native bfloat16; onnx_fp32 = ONNX Runtime CPU provider.")
    print(json.dumps(figs), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
