"""`oddeye demo` part for point clouds: generated normal boxes and dented/bulged ones written as PLY files, fitted
and scored through the same functions as `oddeye fit pointcloud` and `oddeye score pointcloud`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SHAPE = "box"


def run_demo(out: Path, db: str) -> list[str]:
    """Fit on 6 generated normal clouds, score 6 test clouds (3 defective) from their files; PLY/PNG maps, store run."""
    from oddeye.core.metrics import auroc, pixel_auroc
    from oddeye.core.synth import make_point_cloud
    from oddeye.core.types import Result
    from oddeye.pointcloud.cli import fit_pointcloud, score_pointcloud
    from oddeye.pointcloud.plyfile import write_ply
    from oddeye.store.api import open_store

    out = Path(out).resolve()
    for s in range(6):
        normal = make_point_cloud(seed=s, n_points=5000, shape=SHAPE)
        write_ply(out / "data" / "train" / f"{SHAPE}_normal_{s}.ply", normal.points)
    truth = {}
    for i, defect in enumerate([None, "dent", None, "bulge", None, "dent"]):
        c = make_point_cloud(seed=100 + i, n_points=5000, shape=SHAPE, defect=defect, defect_size=0.08)
        name = f"{SHAPE}_{i}_{defect or 'clean'}"
        write_ply(out / "data" / "test" / f"{name}.ply", c.points, c.labels)
        truth[name] = c.labels
    model = fit_pointcloud(train=[out / "data" / "train"], out=out / "model", target_points=1500, adapt_steps=100,
                           progress=False)
    written = score_pointcloud(model, [out / "data" / "test"], out=out, db=db, progress=False)
    result = Result.load(written.result_json)
    metrics = {"object_auroc": auroc([int(truth[s.sample_id].max() > 0) for s in result.scores], result.sample_scores()),
               "point_auroc": pixel_auroc([truth[s.sample_id] for s in result.scores],
                                          [s.maps["points"].values for s in result.scores])}
    with open_store(db) as store:
        store.update_run_metrics(written.run_id, metrics)
    hot = result.scores[int(np.argmax(result.sample_scores()))]
    return [f"object AUROC {metrics['object_auroc']:.3f}, point AUROC {metrics['point_auroc']:.3f} "
            f"on {len(result.scores)} generated clouds (PLY files under {out / 'data'})",
            f"most anomalous: {hot.sample_id} -> {hot.artefacts['png']}",
            f"coloured PLY files: {out / 'clouds'}", *written.lines]
