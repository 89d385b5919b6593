"""Few-shot PatchCore on magnetic tile: image AUROC when fitting on K = 1, 2, 4 and 8 normal images, with the
few-shot augmentation (the 8 flipped / turned views of each shot: `augment auto`) and without it (`augment none`);
with --auto, instead, the settings each draw's `fit image --shots K --auto` chooses from its K shots alone.

Run: .venv/bin/python benchmarks/bench_fewshot.py [--shots 1,2,4,8] [--draws 3] [--root DIR] [--auto [--minutes M]]
Split: bench_image.py's (a seeded half of MT_Free trains, seed 0; the other half and the five defect classes test).
The K shots are drawn from the training split only (draw d: a seeded random K); every test image is scored.
Data: Huang et al., "Surface defect saliency of magnetic tile", The Visual Computer 2018.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO.parent / "shared" / "data" / "magnetic_tile"
CITE = "magnetic tile (Huang et al., The Visual Computer 2018)"
SETTINGS = {"extractor": {"image_size": 256}, "border": 2}


def fit_shots(mode: str, shots: list[Any], minutes: float) -> tuple[Any, dict[str, Any] | None]:
    """(head fitted on the shots, the settings --auto chose or None): mode aug / plain (SETTINGS with augment auto
    / none) or auto (`fit image --shots K --auto` from the defaults, `minutes` of search)."""
    from oddeye.core.head import RunContext
    from oddeye.image.auto import auto_search
    from oddeye.image.evaluate import head_class, make_head

    if mode == "auto":
        found = auto_search(head_class("patchcore"), make_head("patchcore").config, shots, minutes=minutes,
                            shots=len(shots))
        return found.fit(), found.found.chosen_settings
    head = make_head("patchcore", augment="auto" if mode == "aug" else "none", **SETTINGS)
    return head.fit(shots, ctx=RunContext(shots=len(shots), progress=False)), None


def main(argv: list[str] | None = None) -> int:
    """Fit and score each K, draw and mode; print a table, record, print the JSON line."""
    from oddeye.core.imageio import read_image
    from oddeye.core.metrics import auroc
    from oddeye.core.report import finish_benchmark
    from oddeye.image.datasets import load_image_dataset

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    ap.add_argument("--shots", default="1,2,4,8")
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--auto", action="store_true", help="fit with --shots K --auto (K >= 2) instead of SETTINGS")
    ap.add_argument("--minutes", type=float, default=3.0, help="--auto: the search's budget per fit")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args(argv)
    ds = load_image_dataset("magnetic-tile", args.root, seed=0)
    test_images = [read_image(it.path) for it in ds.test]
    labels = [it.label for it in ds.test]
    figures: dict[str, Any] = {}
    for k in (int(x) for x in args.shots.split(",")):
        for mode in ("auto",) if args.auto else ("aug", "plain"):
            aucs, fit_s, chosen = [], [], []
            for d in range(args.draws):
                pick = np.random.default_rng(100 + d).choice(len(ds.train), size=k, replace=False)
                t0 = time.perf_counter()
                head, settings = fit_shots(mode, [ds.train[i] for i in pick], args.minutes)
                fit_s.append(time.perf_counter() - t0)
                scores = np.concatenate([head.score_arrays(test_images[i:i + 16])[0]
                                         for i in range(0, len(test_images), 16)])
                aucs.append(float(auroc(labels, scores)))
                chosen.append(settings)
                said = f", chose {json.dumps(settings)}" if settings is not None else ""
                print(f"K={k} {mode} draw {d}: AUROC {aucs[-1]:.4f}, fit {fit_s[-1]:.1f} s{said}", file=sys.stderr,
                      flush=True)
            figures[f"k{k}_{mode}_auroc_mean"] = round(float(np.mean(aucs)), 4)
            figures[f"k{k}_{mode}_auroc_min"] = round(float(np.min(aucs)), 4)
            figures[f"k{k}_{mode}_fit_s"] = round(float(np.mean(fit_s)), 1)
            if mode == "auto":
                figures[f"k{k}_auto_chosen"] = chosen
    figures["draws"] = args.draws
    figures["n_test"] = len(test_images)
    how = (f"auto = `fit image --shots K --auto` from the defaults ({args.minutes:g} min search on half the shots in "
           "their 8 views; the choice fitted on all K), fit_s includes the search" if args.auto else
           f"PatchCore {SETTINGS}; aug = augment auto (the 8 dihedral views of each shot), plain = augment none")
    return finish_benchmark("image: few-shot patchcore on magnetic tile", f"{CITE}; seed-0 split, K shots drawn "
                            f"from its {len(ds.train)} training images, {len(test_images)} test images", figures,
                            notes=f"{how}. Mean and min image AUROC over the draws.", record=not args.no_record)


if __name__ == "__main__":
    sys.exit(main())
