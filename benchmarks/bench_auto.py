"""Benchmark `--auto` on the real data sets: `oddeye eval <kind> ... --auto` with no other setting, its figures,
the choice the search made (from the training split only) and its time, appended to benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/bench_auto.py --head image [--seed 0]
    .venv/bin/python benchmarks/bench_auto.py --head rules | prediction [--minutes 30] | pointcloud | patrol

Reads the data sets in place under ../shared/data (never copies them); exit 2 when one is missing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
# head -> (eval arguments, data set folder, citation, keys of the targets)
CASES: dict[str, tuple[list[str], str, str, tuple[str, ...]]] = {
    "image": (["image", "--dataset", "magnetic-tile"], "magnetic_tile",
              "magnetic tile (Huang et al., The Visual Computer 2018)", ("image_auroc",)),
    "rules": (["video", "--dataset", "ucsd-ped2", "--head", "rules"], "ucsd_ped2",
              "UCSD Ped2 (Mahadevan et al., CVPR 2010): 16 training clips, 12 test clips", ("frame_auroc_micro",)),
    "prediction": (["video", "--dataset", "ucsd-ped2", "--head", "prediction"], "ucsd_ped2",
                   "UCSD Ped2 (Mahadevan et al., CVPR 2010): 16 training clips, 12 test clips",
                   ("frame_auroc_micro",)),
    "pointcloud": (["pointcloud", "--dataset", "bunny-defects"], "stanford_bunny",
                   "Stanford bunny range scans (Turk & Levoy 1994) + our seeded synthetic defects, 5 folds",
                   ("object_auroc", "point_auroc")),
    "patrol": (["patrol", "--dataset", "deeppcb", "--warp"], "deeppcb",
               "DeepPCB test split (105 pairs, 640x640; Tang et al. 2019), seeded random homography per template",
               ("pixel_auroc", "box_recall")),
}


def main(argv: list[str] | None = None) -> int:
    """Run one head's `eval --auto`, print its JSON line last, record it; exit 2 when the data set is missing."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--head", required=True, choices=sorted(CASES))
    ap.add_argument("--seed", type=int, default=None, help="image: the split seed (magnetic tile)")
    ap.add_argument("--minutes", type=float, default=None, help="prediction: the training budget (default 30)")
    ap.add_argument("--root", type=Path, default=None, help="the data set folder (default ../shared/data/...)")
    ap.add_argument("--no-record", action="store_true", help="do not append to benchmarks/RESULTS.md")
    args = ap.parse_args(argv)
    cmd, folder, cite, keys = CASES[args.head]
    root = args.root or DATA / folder
    if not root.is_dir():
        print(f"{root} not found: see ../shared/data/README.md", file=sys.stderr)
        return 2
    extra = [*(["--seed", str(args.seed)] if args.seed is not None else []),
             *(["--minutes", str(args.minutes)] if args.minutes is not None else [])]
    with tempfile.TemporaryDirectory(prefix="bench-auto-") as tmp:
        argv_eval = [sys.executable, "-m", "oddeye", "eval", *cmd, "--root", str(root), "--auto", *extra,
                     "--out", str(Path(tmp) / "out"), "--json", str(Path(tmp) / "line.json")]
        t0 = time.perf_counter()
        run = subprocess.run(argv_eval, cwd=REPO, text=True, stdout=subprocess.PIPE)
        wall = time.perf_counter() - t0
        print(run.stdout, file=sys.stderr)  # the eval's own table, the search's table among it
        if run.returncode != 0:
            return run.returncode
        line = json.loads((Path(tmp) / "line.json").read_text())
    figures = {k: line[k] for k in keys if k in line}
    figures.update({k: v for k, v in line.items() if k.startswith("auto") or k in ("wall_s", "seed", "n_samples")})
    figures["bench_wall_s"] = round(wall, 1)
    shown = " ".join(["oddeye eval", *cmd, "--root", str(root), "--auto", *extra])
    from oddeye.core.report import finish_benchmark

    return finish_benchmark(f"{args.head} --auto on {cmd[2]}", cite, figures, command=".venv/bin/python "
                            f"benchmarks/bench_auto.py {' '.join(sys.argv[1:] if argv is None else argv)}",
                            notes=f"It runs `{shown}`. The search saw only the training split (its normal data and "
                                  "synthetic anomalies made from it); no setting given. auto = the settings it chose.",
                            record=not args.no_record, table=False)


if __name__ == "__main__":
    sys.exit(main())
