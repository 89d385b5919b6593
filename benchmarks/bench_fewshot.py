"""Few-shot PatchCore on magnetic tile: image AUROC when fitting on K = 1, 2, 4 and 8 normal images, with the
few-shot augmentation (the 8 flipped / turned views of each shot: `augment auto`) and without it (`augment none`).

Run: .venv/bin/python benchmarks/bench_fewshot.py [--shots 1,2,4,8] [--draws 3] [--root DIR]
Split: bench_image.py's (a seeded half of MT_Free trains, seed 0; the other half and the five defect classes test).
The K shots are drawn from the training split only (draw d: a seeded random K); every test image is scored.
Data: Huang et al., "Surface defect saliency of magnetic tile", The Visual Computer 2018.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO.parent / "shared" / "data" / "magnetic_tile"
CITE = "magnetic tile (Huang et al., The Visual Computer 2018)"
SETTINGS = {"extractor": {"image_size": 256}, "border": 2}


def main(argv: list[str] | None = None) -> int:
    """Fit and score each K and draw both ways; print a table, record, print the JSON line."""
    from oddeye.core.head import RunContext
    from oddeye.core.metrics import auroc
    from oddeye.core.report import finish_benchmark
    from oddeye.image.datasets import load_image_dataset
    from oddeye.image.evaluate import make_head

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    ap.add_argument("--shots", default="1,2,4,8")
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args(argv)
    ds = load_image_dataset("magnetic-tile", args.root, seed=0)
    from oddeye.core.imageio import read_image

    test_images = [read_image(it.path) for it in ds.test]
    labels = [it.label for it in ds.test]
    figures: dict[str, float] = {}
    for k in (int(x) for x in args.shots.split(",")):
        for augment in ("auto", "none"):
            aucs, fit_s = [], []
            for d in range(args.draws):
                pick = np.random.default_rng(100 + d).choice(len(ds.train), size=k, replace=False)
                shots = [ds.train[i] for i in pick]
                t0 = time.perf_counter()
                head = make_head("patchcore", augment=augment, **SETTINGS).fit(
                    shots, ctx=RunContext(shots=k, progress=False))
                fit_s.append(time.perf_counter() - t0)
                scores = np.concatenate([head.score_arrays(test_images[i:i + 16])[0]
                                         for i in range(0, len(test_images), 16)])
                aucs.append(float(auroc(labels, scores)))
                print(f"K={k} augment={augment} draw {d}: AUROC {aucs[-1]:.4f}, fit {fit_s[-1]:.1f} s",
                      file=sys.stderr, flush=True)
            name = f"k{k}_{'aug' if augment == 'auto' else 'plain'}"
            figures[f"{name}_auroc_mean"] = round(float(np.mean(aucs)), 4)
            figures[f"{name}_auroc_min"] = round(float(np.min(aucs)), 4)
            figures[f"{name}_fit_s"] = round(float(np.mean(fit_s)), 1)
    figures["draws"] = args.draws
    figures["n_test"] = len(test_images)
    return finish_benchmark("image: few-shot patchcore on magnetic tile", f"{CITE}; seed-0 split, K shots drawn "
                            f"from its {len(ds.train)} training images, {len(test_images)} test images", figures,
                            notes=f"PatchCore {SETTINGS}; aug = augment auto (the 8 dihedral views of each shot), "
                                  "plain = augment none. Mean and min image AUROC over the draws.",
                            record=not args.no_record)


if __name__ == "__main__":
    sys.exit(main())
