"""`oddeye demo` part for industrial images: PatchCore on generated textures with synthetic defects."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from oddeye.core.imageio import write_image
from oddeye.core.metrics import auroc, pixel_auroc
from oddeye.core.synth import make_image_set


def run_demo(out: Path, db: str) -> list[str]:
    """Fit PatchCore on generated normal images, score normal + defective ones; write overlays, result, store run."""
    from oddeye.image.patchcore import PatchCoreHead
    from oddeye.store.api import save_result

    out = Path(out)
    t0 = time.perf_counter()
    train = make_image_set(seed=1, n_normal=64, n_defect=0)
    test = make_image_set(seed=2, n_normal=12, n_defect=12)
    test_dir = out / "test_images"
    paths = []
    for i, s in enumerate(test):
        paths.append(write_image(test_dir / f"{i:03d}_{'defect' if s.label else 'good'}.png", s.image))
    head = PatchCoreHead(coreset=0.25, extractor={"image_size": 128}).fit([s.image for s in train])
    head.save(out / "model")
    result = head.score(paths, out=out)
    for sc, s in zip(result.scores, test):
        sc.label = int(s.label)
    labels = np.array([s.label for s in test])
    img_auc = auroc(labels, result.sample_scores())
    pix_auc = pixel_auroc([s.mask for s in test], [sc.maps["anomaly"].values for sc in result.scores])
    result.metrics = {"image_auroc": img_auc, "pixel_auroc": pix_auc}
    result.save(out)
    run = save_result(db, result, kind="image", model=str(out / "model"), data="synthetic (oddeye.core.synth)",
                      params={"coreset": 0.25, "image_size": 128})
    flagged = {e.sample_id for e in result.events}
    true_flags = sum(sc.sample_id in flagged and sc.label == 1 for sc in result.scores)
    return [f"PatchCore on {len(test)} generated images: image AUROC {img_auc:.3f}, pixel AUROC {pix_auc:.3f}, "
            f"{len(flagged)} flagged, {true_flags} of {int(labels.sum())} defective among them "
            f"({time.perf_counter() - t0:.0f} s)",
            f"heatmap overlays: {out / 'overlays'}", f"result: {out / 'result.json'}; model: {out / 'model'}",
            f"review store run {run}: {db}"]
