"""Benchmark PatchIndex (1M x 256, 10k queries, k=1 vs exact torch.cdist) and the greedy coreset (1M x 512).

Run: nice -n 10 .venv/bin/python benchmarks/bench_index.py [--quick] [--data normal|clustered] [--skip-coreset]
The data are generated (seeded random vectors), so /work/shared/data is not needed. Figures are appended to
benchmarks/RESULTS.md with the machine load (the machine is shared: timings are slowed by other work).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch/faiss load OpenMP: no spinning on a busy box

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from oddeye.core.config import set_threads  # noqa: E402
from oddeye.core.report import machine_line, record_benchmark  # noqa: E402
from oddeye.retrieval.cli import bench_coreset, bench_index  # noqa: E402


def main() -> int:
    """Run the index bench and the coreset timing; record both; print one JSON line last."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run, recorded nowhere: 100k x 256, 1k queries; 100k x 512 coreset")
    ap.add_argument("--data", default="normal", choices=["normal", "clustered"])
    ap.add_argument("--kinds", default="flat,ivf,hnsw,ivfpq")
    ap.add_argument("--nprobe", default="250,1000", help="ivf nprobe sweep (nlist is 4000 at 1M)")
    ap.add_argument("--ef-search", default="256,1024", help="hnsw efSearch sweep")
    ap.add_argument("--n", type=int, default=1_000_000, help="indexed vectors")
    ap.add_argument("--queries", type=int, default=10_000, help="query vectors")
    ap.add_argument("--coreset-n", type=int, default=1_000_000, help="vectors for the coreset timing (dim 512)")
    ap.add_argument("--skip-coreset", action="store_true")
    ap.add_argument("--skip-index", action="store_true")
    args = ap.parse_args()
    set_threads()
    record = record_benchmark if not args.quick else (lambda *a, **k: None)  # a smoke run records nothing
    n, q, cn = (100_000, 1_000, 100_000) if args.quick else (args.n, args.queries, args.coreset_n)
    cmd = "nice -n 10 .venv/bin/python " + " ".join(["benchmarks/bench_index.py"] + sys.argv[1:])
    load = f"Load before the run: {machine_line()}. 2 shared cores: other engineers' jobs slow every timing."
    out: dict = {}
    if not args.skip_index:
        t0 = time.perf_counter()
        doc = bench_index(n, 256, q, 1, args.kinds.split(","), data=args.data, seed=0,
                          nprobe=[int(v) for v in args.nprobe.split(",") if v],
                          ef_search=[int(v) for v in args.ef_search.split(",") if v], log=lambda s: print(s, flush=True))
        figures = {"cdist_s": doc["cdist_s"], "flat_speedup_vs_cdist": doc["flat_speedup"],
                   "best_approx": doc["best_kind"], "best_recall_at_1": doc["recall"], "best_speedup": doc["speedup"],
                   "target_met": doc["target_met"]}
        for r in doc["rows"]:
            tag = r["kind"] + "".join(f" {k}={v}" for k, v in r["params"].items() if k in ("nprobe", "ef_search"))
            figures[f"{tag}: build_s / search_s"] = f"{r['build_s']:.1f} / {r['search_s']:.2f}"
            figures[f"{tag}: recall@1 / speedup / bytes per vector"] = \
                f"{r['recall_at_1']:.4f} / {r['speedup']:.1f}x / {r['bytes_per_vector']:.0f}"
        record(f"PatchIndex: {n} x 256 {args.data} vectors, {q} queries, k=1 vs torch.cdist+min",
                         f"seeded random vectors (oddeye.retrieval.cli.make_vectors, data={args.data}, seed 0/1)",
                         cmd, figures, notes=load + f" Whole index bench: {time.perf_counter() - t0:.0f} s.")
        out["index"] = doc
    if not args.skip_coreset:
        load = f"Load before the coreset run: {machine_line()}."
        doc = bench_coreset(cn, 512, 0.01, 128, seed=0, data=args.data)
        record(f"Greedy coreset: {cn} x 512 {args.data} vectors, ratio 0.01, proj_dim 128",
                         f"seeded random vectors (data={args.data}, seed 0)", cmd,
                         {k: v for k, v in doc.items() if k not in ("n", "dim")}, notes=load)
        out["coreset"] = doc
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
