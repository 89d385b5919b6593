"""`oddeye demo` part for point clouds: fit on generated normal boxes, score clean and dented/bulged ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def run_demo(out: Path, db: str) -> list[str]:
    """Fit on 6 generated normal clouds, score 6 test clouds (3 defective), write PLY/PNG maps and the store run."""
    from oddeye.core.metrics import auroc, pixel_auroc
    from oddeye.core.synth import make_point_cloud
    from oddeye.pointcloud.head import PointCloudHead
    from oddeye.pointcloud.io import Cloud
    from oddeye.pointcloud.render import write_review
    from oddeye.store.api import save_result

    out = Path(out)
    shape = "box"
    train = [make_point_cloud(seed=s, n_points=5000, shape=shape).points for s in range(6)]
    tests = []
    for i, defect in enumerate([None, "dent", None, "bulge", None, "dent"]):
        c = make_point_cloud(seed=100 + i, n_points=5000, shape=shape, defect=defect, defect_size=0.08)
        tests.append(Cloud(c.points, c.labels, meta={"name": f"{shape}_{i}_{defect or 'clean'}", "source": "synth"}))
    head = PointCloudHead(adapt=True, target_points=1500, adapt_steps=100, progress=False).fit(train)
    head.save(out / "model")
    result = head.score(tests)
    for c, sc in zip(tests, result.scores):
        sc.artefacts = write_review(out / "clouds", sc.sample_id, c.points, sc.maps["points"].values,
                                    title=f"{sc.sample_id}: score {sc.score:.3g}", labels=c.labels)
    labels = [int(c.labels.max() > 0) for c in tests]
    result.metrics = {"object_auroc": auroc(labels, result.sample_scores()),
                      "point_auroc": pixel_auroc([c.labels for c in tests], [s.maps["points"].values for s in result.scores])}
    result.save(out)
    run = save_result(db, result, kind="pointcloud", model=str(out / "model"), data="oddeye.core.synth boxes",
                      params=head.params)
    hot = result.scores[int(np.argmax(result.sample_scores()))]
    return [f"object AUROC {result.metrics['object_auroc']:.3f}, point AUROC {result.metrics['point_auroc']:.3f} "
            f"on {len(tests)} generated clouds (store run {run})",
            f"most anomalous: {hot.sample_id} -> {hot.artefacts['png']}",
            f"coloured PLY files: {out / 'clouds'}; result: {out / 'result.json'}"]
