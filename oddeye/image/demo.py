"""`oddeye demo` part for industrial images: PatchCore, its settings chosen by --auto, on generated textures with
synthetic defects, through the same functions as `oddeye fit image` and `oddeye score image`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from oddeye.core.head import read_manifest
from oddeye.core.imageio import write_image
from oddeye.core.metrics import auroc, pixel_auroc
from oddeye.core.synth import make_image_set
from oddeye.core.types import Result


AUTO_MINUTES = 2.0  # the demo's --auto budget


def run_demo(out: Path, db: str) -> list[str]:
    """Fit PatchCore with --auto on generated normal images, score normal + defective ones; write overlays, result, store run."""
    from oddeye.image.cli import fit_image, score_image
    from oddeye.store.api import open_store

    out = Path(out)
    t0 = time.perf_counter()
    train = make_image_set(seed=1, n_normal=64, n_defect=0)
    test = make_image_set(seed=2, n_normal=12, n_defect=12)
    for i, s in enumerate(train):
        write_image(out / "train_images" / f"{i:03d}.png", s.image)
    truth = {}
    for i, s in enumerate(test):
        name = f"{i:03d}_{'defect' if s.label else 'good'}"
        write_image(out / "test_images" / f"{name}.png", s.image)
        truth[name] = s
    fit_image(train=out / "train_images", out=out / "model", coreset=0.25, image_size=128, auto=True,
              auto_minutes=AUTO_MINUTES)
    auto = read_manifest(out / "model")["auto"]
    written = score_image(out / "model", [out / "test_images"], out=out, db=db)
    result = Result.load(written.result_json)
    labels = np.array([truth[sc.sample_id].label for sc in result.scores])
    img_auc = auroc(labels, result.sample_scores())
    pix_auc = pixel_auroc([truth[sc.sample_id].mask for sc in result.scores],
                          [sc.maps["anomaly"].values for sc in result.scores])
    with open_store(db) as store:
        store.update_run_metrics(written.run_id, {"image_auroc": img_auc, "pixel_auroc": pix_auc})
    flagged = {e.sample_id for e in result.events}
    true_flags = sum(truth[name].label == 1 for name in flagged)
    chosen = json.dumps(auto["chosen_settings"], sort_keys=True) if auto["chosen_settings"] else "the defaults"
    return [f"--auto chose {chosen} of {len(auto['trials'])} candidates (validation AUROC "
            f"{auto['trials'][auto['chosen']]['auroc']:.3f} on held-out normals + synthetic anomalies); "
            f"`oddeye model info {out / 'model'}` prints the table",
            f"PatchCore on {len(test)} generated images: image AUROC {img_auc:.3f}, pixel AUROC {pix_auc:.3f}, "
            f"{len(flagged)} flagged, {true_flags} of {int(labels.sum())} defective among them "
            f"({time.perf_counter() - t0:.0f} s)",
            f"heatmap overlays: {out / 'overlays'}", f"result: {written.result_json}; model: {out / 'model'}",
            f"review store run {written.run_id}: {written.db}"]
