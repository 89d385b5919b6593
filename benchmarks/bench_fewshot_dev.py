"""Few-shot PatchCore variants measured on training data only: how far can settings take 8 shots on magnetic tile?

Run: .venv/bin/python benchmarks/bench_fewshot_dev.py [--shots 8] [--draws 3] [--root DIR]
Each draw: K shots from the seed-0 training split (bench_fewshot.py's draws), validation = 96 OTHER training
normals and two synthetic anomalies of each (oddeye.image.auto.validation_set). No test image is read, so this
can choose settings; it reports, per variant, the validation image AUROC of PatchCore's image score and of the
plain maximum of the smoothed interior patch map (no re-weighting).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO.parent / "shared" / "data" / "magnetic_tile"
CITE = "magnetic tile (Huang et al., The Visual Computer 2018)"
BASE: dict[str, Any] = {"extractor": {"image_size": 256}, "border": 2, "augment": "auto"}


def variants() -> dict[str, dict[str, Any]]:
    """The few-shot settings compared (bench_fewshot.py's is `dihedral`)."""
    from oddeye.image.search import GAINS

    return {
        "dihedral": {},
        "dihedral_all_patches": {"coreset": 1.0},
        "dihedral_lite1": {"extractor": {"image_size": 256, "name": "efficientnet-lite1"}},
        "dihedral_all_patches_gains": {"coreset": 1.0, "exposure_gains": list(GAINS)},
        "dihedral_all_patches_position": {"coreset": 1.0, "position_weight": 8.0},
        "dihedral_all_patches_lite1": {"coreset": 1.0, "extractor": {"image_size": 256, "name": "efficientnet-lite1"}},
        "dihedral_all_patches_lite2": {"coreset": 1.0, "extractor": {"image_size": 256, "name": "efficientnet-lite2"}},
        "dihedral_all_patches_lite1_gains_position": {
            "coreset": 1.0, "extractor": {"image_size": 256, "name": "efficientnet-lite1"},
            "exposure_gains": list(GAINS), "position_weight": 8.0},
    }


def main(argv: list[str] | None = None) -> int:
    """Fit each variant on each draw's shots, score the validation set two ways; record and print the JSON line."""
    from oddeye.core.head import RunContext
    from oddeye.core.metrics import auroc
    from oddeye.core.report import finish_benchmark
    from oddeye.image.auto import loaded, validation_set
    from oddeye.image.common import as_items
    from oddeye.image.datasets import load_image_dataset
    from oddeye.image.evaluate import make_head

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    ap.add_argument("--shots", type=int, default=8)
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated variant names (default: all)")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args(argv)
    chosen = {k: v for k, v in variants().items() if not args.only or k in args.only.split(",")}
    ds = load_image_dataset("magnetic-tile", args.root, seed=0)
    runs: dict[str, dict[str, list[float]]] = {}
    for d in range(args.draws):
        pick = np.random.default_rng(100 + d).choice(len(ds.train), size=args.shots, replace=False)
        shots = [ds.train[i].path for i in pick]
        rest = [it.path for i, it in enumerate(ds.train) if i not in set(pick.tolist())]
        vi = np.random.default_rng([d, 7]).choice(len(rest), size=96, replace=False)
        val, labels = validation_set(loaded(as_items([rest[i] for i in sorted(vi)])), seed=d)
        images = [it.image for it in val]
        for name, extra in chosen.items():
            t0 = time.perf_counter()
            head = make_head("patchcore", **{**BASE, **extra}).fit(shots, ctx=RunContext(shots=args.shots,
                                                                                         progress=False))
            fit_s = time.perf_counter() - t0
            parts = [head._patch_scores(head.extractor.extract(images[i:i + 16])) for i in range(0, len(images), 16)]
            scores = np.concatenate([s for _, s in parts])
            pmaps = np.concatenate([p for p, _ in parts])
            plain_max = head.smoothed(head.interior(pmaps)).reshape(len(pmaps), -1).max(axis=1)
            r = runs.setdefault(name, {"score": [], "max": [], "fit_s": []})
            r["score"].append(float(auroc(labels, scores)))
            r["max"].append(float(auroc(labels, plain_max)))
            r["fit_s"].append(fit_s)
            print(f"draw {d} {name}: val AUROC {r['score'][-1]:.4f} (plain max {r['max'][-1]:.4f}), fit {fit_s:.1f} s",
                  file=sys.stderr, flush=True)
    figures: dict[str, Any] = {}
    for name, r in runs.items():
        figures[f"{name}_val_auroc_mean"] = round(float(np.mean(r["score"])), 4)
        figures[f"{name}_val_auroc_plain_max_mean"] = round(float(np.mean(r["max"])), 4)
        figures[f"{name}_fit_s"] = round(float(np.mean(r["fit_s"])), 1)
    figures.update(shots=args.shots, draws=args.draws, n_val=len(labels), n_val_anomalous=int(sum(labels)))
    return finish_benchmark(f"image: few-shot variants on magnetic tile, {args.shots} shots, validation only",
                            f"{CITE}; seed-0 training split only: K shots, 96 other training normals and 2 synthetic "
                            "anomalies each per draw; no test image read", figures,
                            notes=f"PatchCore {BASE} plus each variant's settings. plain_max = the maximum of the "
                                  "smoothed interior patch map, without PatchCore's re-weighting.",
                            record=not args.no_record)


if __name__ == "__main__":
    sys.exit(main())
