"""Patrol change detection on DeepPCB (test split): aligned and --warp, with and without patch features.

Run: .venv/bin/python benchmarks/bench_patrol.py [--root ../shared/data/deeppcb] [--limit N] [--threads 1]
Appends the figures to benchmarks/RESULTS.md via record_benchmark. Exit 2 if the data is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    """Run the four configurations, print one JSON line each, record them."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--root", default=str(REPO.parent / "shared" / "data" / "deeppcb"))
    ap.add_argument("--limit", type=int, default=None, help="first N test pairs only")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (1 is fastest on a shared, loaded machine)")
    ap.add_argument("--configs", default="aligned,warp,aligned+features,warp+features")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    root = Path(args.root)
    if not (root / "PCBData" / "test.txt").is_file() and not (root / "test.txt").is_file():
        print(f"DeepPCB not found under {root} (expected PCBData/test.txt); see ../shared/data/README.md",
              file=sys.stderr)
        return 2
    from oddeye.core.report import record_benchmark
    from oddeye.patrol.evaluate import evaluate_deeppcb
    from oddeye.patrol.head import PatrolHead

    rows = {}
    for cfg in args.configs.split(","):
        warp, feats = cfg.startswith("warp"), cfg.endswith("+features")
        head = PatrolHead(threads=args.threads, use_features=feats)
        t0 = time.perf_counter()
        metrics, result = evaluate_deeppcb(head, root, warp=warp, seed=0, limit=args.limit)
        metrics = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()}
        metrics.update(config=cfg, n_pairs=len(result.scores), wall_s=round(time.perf_counter() - t0, 1))
        rows[cfg] = metrics
        print(json.dumps(metrics), flush=True)
    if not args.no_record:
        figures = {}
        for cfg, m in rows.items():
            for k in ("box_recall", "box_recall_centre", "pixel_auroc", "pixel_f1", "pixel_iou", "pairs_per_s",
                      "pairs_per_cpu_s", "align_failed"):
                figures[f"{cfg}: {k}"] = m[k]
        n = next(iter(rows.values()))["n_pairs"]
        cmd = ".venv/bin/python benchmarks/bench_patrol.py" + (f" --limit {args.limit}" if args.limit else "")
        record_benchmark(
            "patrol: DeepPCB change detection (oddeye eval patrol)",
            f"DeepPCB test split ({n} pairs, 640x640; Tang et al. 2019), --warp: seeded random homography "
            "(seed 0; rot <= 5 deg, scale 0.95-1.05, shift <= 5 %, corner jitter <= 1 %) on each template",
            cmd, figures,
            notes=(f"threads={args.threads}. pairs_per_s is wall clock on the shared 2-core machine (8 engineers "
                   "running jobs; see the load in the machine line); pairs_per_cpu_s is pairs per CPU-second of "
                   "this process. box_recall: IoU >= 0.5 with the annotated boxes; box_recall_centre also counts a "
                   "predicted box centre inside. Pixel metrics rasterise the boxes as masks. With --warp, pixels "
                   "the warped template does not cover and boxes centred there are left out. Box padding, "
                   "smoothing and window sizes were chosen on the trainval split, not on test."))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("ODDEYE_THREADS", "1")
    sys.exit(main())
