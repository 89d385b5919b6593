"""Evaluation of the point-cloud head: scan-defects and bunny-defects (our defects on real scans) and the public
3D-AD layouts."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np

from oddeye.core.head import Mapper, RunContext
from oddeye.core.metrics import aupro, auroc, pixel_auroc
from oddeye.core.types import AnomalyMap, Result, Score
from oddeye.pointcloud.bunny import FOLDS, bunny_scans
from oddeye.pointcloud.scans import ScanSet, TestCloud, load_scans, make_scan_defects
from oddeye.pointcloud.datasets import load_pc_dataset
from oddeye.pointcloud.defects import KINDS
from oddeye.pointcloud.head import PointCloudHead
from oddeye.pointcloud.render import write_review

HeadFactory = Callable[[], PointCloudHead]
# per fold, from its training scans {name: (N, 3)} alone: the head to fit and what chose it (`--auto`: auto.fold_search)
FoldSearch = Callable[[dict[str, np.ndarray]], tuple[PointCloudHead, dict[str, Any]]]
SIZE_BINS = ((0.01, 0.02), (0.02, 0.03), (0.03, 0.04), (0.04, 0.05))  # defect radius / the scan's extent
QUIET = RunContext(progress=False)  # the folds / classes carry the progress bar


def _safe(fn: Callable[..., float], *a: Any) -> float:
    """A metric, or NaN where it is undefined (one class only)."""
    try:
        return float(fn(*a))
    except Exception:  # noqa: BLE001 - metrics raise on single-class input; report NaN then
        return float("nan")


def eval_bunny(root: str | Path, make_head: HeadFactory, *, folds: int = len(FOLDS), variants: int = 2, seed: int = 0,
               out: Path | None = None, progress: bool = True, validation: bool = False,
               mapper: Mapper = map, search: FoldSearch | None = None) -> tuple[dict[str, Any], Result]:
    """bunny-defects: per fold fit on 8 registered scans, score 2 held-out scans clean + each defect kind
    (validation=True: each fold's validation split, 6 of its training scans vs 2 others, no test scan).
    The metrics and Result of eval_scans."""
    return eval_scans(bunny_scans(root), make_head, folds=folds, variants=variants, seed=seed, out=out,
                      progress=progress, validation=validation, dataset="bunny-defects", mapper=mapper, search=search)


def scan_fold(f: int, *, scan_set: ScanSet, make_head: HeadFactory, seed: int, variants: int, scans: Any,
              validation: bool, out: Path | None, search: FoldSearch | None = None
              ) -> tuple[list[TestCloud], list[Any], list[Score], float, float, dict[str, Any] | None]:
    """One fold of scan-defects: fit a head on the scans it does not hold out (`search`: the head it picks from
    those scans alone), score its test clouds -> (test clouds, their CloudScores, their Scores, fit seconds,
    scoring seconds, the search's summary or None)."""
    train, fold_tests = make_scan_defects(scan_set, fold=f, seed=seed, variants=variants, scans=scans,
                                          validation=validation)
    head, found = search(dict(train)) if search is not None else (make_head(), None)
    t0 = time.perf_counter()
    head = head.fit(list(train.values()), ctx=QUIET)
    t_fit, t_score = time.perf_counter() - t0, 0.0
    clouds, scores = [], []
    for tc in fold_tests:
        t0 = time.perf_counter()
        cs = head.score_points(tc.points)
        t_score += time.perf_counter() - t0
        clouds.append(cs)
        scores.append(Score(tc.name, cs.score, tc.label, maps={"points": AnomalyMap("point", cs.points)},
                            meta={"kind": tc.kind, "fold": f, "n_points": len(tc.points), "size": tc.size}))
        if out is not None and tc.name.endswith("_v0_" + tc.kind) and tc.kind in ("clean", "dent", "hole"):
            scores[-1].artefacts = write_review(out / "clouds", tc.name, tc.points, cs.points, labels=tc.labels)
    return fold_tests, clouds, scores, t_fit, t_score, found


def eval_scans(scan_set: ScanSet, make_head: HeadFactory, *, folds: int | None = None, variants: int = 2,
               seed: int = 0, out: Path | None = None, progress: bool = True, validation: bool = False,
               dataset: str = "scan-defects", mapper: Mapper = map,
               search: FoldSearch | None = None) -> tuple[dict[str, Any], Result]:
    """scan-defects on any scanned object: per fold fit on the registered scans it does not hold out, score the
    held-out ones clean + each defect kind (the first `folds` folds; None: all); the folds are mapped by `mapper`
    (e.g. on Ray; default: one after the other).

    Returns metrics (object/point AUROC per kind and their means over kinds; object AUROC of the clean clouds
    against the defects of each size bin, all kinds together: `object_auroc_size_0.01_0.02` ...; points/s of
    scoring) and the Result (with `search`: its meta["auto"] lists each fold's search table and choice).
    """
    from tqdm.auto import tqdm

    folds = len(scan_set.folds) if folds is None else min(folds, len(scan_set.folds))
    scans = load_scans(scan_set)
    tests: list[TestCloud] = []
    scored: dict[str, Any] = {}
    result = Result(head="pointcloud", meta={"dataset": dataset, "folds": folds, "variants": variants,
                                             "scans": list(scan_set.names), "held_out": [list(f) for f in scan_set.folds]})
    n_pts, t_score, t_fit = 0, 0.0, 0.0
    fold = partial(scan_fold, scan_set=scan_set, make_head=make_head, seed=seed, variants=variants, scans=scans,
                   validation=validation, out=out, search=search)
    bar = tqdm(range(folds), desc=f"{dataset} folds", disable=not progress or mapper is not map)
    for f, (fold_tests, clouds, scores, fit_s, score_s, found) in enumerate(mapper(fold, bar)):
        t_fit, t_score = t_fit + fit_s, t_score + score_s
        if found is not None:  # the fold's search table and choice
            result.meta.setdefault("auto", []).append({"fold": f, **found})
        n_pts += sum(len(tc.points) for tc in fold_tests)
        scored.update({tc.name: cs for tc, cs in zip(fold_tests, clouds)})
        result.scores += scores
        tests += fold_tests
    m: dict[str, Any] = {}
    clean = [t for t in tests if t.kind == "clean"]
    for k in KINDS:
        sub = clean + [t for t in tests if t.kind == k]
        m[f"object_auroc_{k}"] = _safe(auroc, [t.label for t in sub], [scored[t.name].score for t in sub])
        m[f"point_auroc_{k}"] = _safe(pixel_auroc, [t.labels for t in sub], [scored[t.name].points for t in sub])
    m["object_auroc"] = float(np.nanmean([m[f"object_auroc_{k}"] for k in KINDS]))
    m["point_auroc"] = float(np.nanmean([m[f"point_auroc_{k}"] for k in KINDS]))
    m["object_auroc_all"] = _safe(auroc, [t.label for t in tests], [scored[t.name].score for t in tests])
    for lo, hi in SIZE_BINS:
        sub = clean + [t for t in tests if t.size is not None and lo <= t.size < hi]
        m[f"object_auroc_size_{lo:.2f}_{hi:.2f}"] = _safe(auroc, [t.label for t in sub], [scored[t.name].score for t in sub])
    m["aupro"] = None  # scans are not organised (H, W) grids here
    m["points_per_s"] = n_pts / max(t_score, 1e-9)
    m["fit_s_per_fold"] = t_fit / max(folds, 1)
    m["n_clean"], m["n_defective"] = len(clean), len(tests) - len(clean)
    return m, result


def layout_category(cat: Any, make_head: HeadFactory) -> tuple[list[tuple[Any, Any, Any]], float]:
    """One category of a 3D-AD layout: fit a head on its training clouds, score its test clouds -> ([(test item,
    its cloud, its CloudScores)], scoring seconds)."""
    head = make_head().fit(cat.train, ctx=QUIET)
    scored, t_score = [], 0.0
    for item in cat.test:
        cloud = item.load()
        t0 = time.perf_counter()
        scored.append((item, cloud, head.score_points(cloud.points)))
        t_score += time.perf_counter() - t0
    return scored, t_score


def eval_layout(name: str, root: str | Path, make_head: HeadFactory, *, out: Path | None = None,
                progress: bool = True, mapper: Mapper = map) -> tuple[dict[str, Any], Result]:
    """Real3D-AD / Anomaly-ShapeNet / MVTec 3D-AD: per category fit on train, score test (the categories mapped by
    `mapper`, e.g. on Ray; default: one after the other); means over categories."""
    from tqdm.auto import tqdm

    cats = load_pc_dataset(name, root)
    result = Result(head="pointcloud", meta={"dataset": name})
    per: dict[str, dict[str, float]] = {}
    n_pts, t_score = 0, 0.0
    bar = tqdm(cats, desc=f"{name} classes", disable=not progress or mapper is not map)
    for cat, (scored, seconds) in zip(cats, mapper(partial(layout_category, make_head=make_head), bar)):
        t_score += seconds
        labels, scores, pl, ps, masks, maps = [], [], [], [], [], []
        for item, cloud, cs in scored:
            n_pts += len(cloud)
            labels.append(item.label)
            scores.append(cs.score)
            if cloud.labels is not None:
                pl.append(cloud.labels)
                ps.append(cs.points)
            if cloud.grid_shape is not None and cloud.labels is not None:
                h, w = cloud.grid_shape
                mk, mp = np.zeros(h * w, bool), np.full(h * w, float(cs.points.min()), np.float32)
                mk[cloud.grid_index], mp[cloud.grid_index] = cloud.labels > 0, cs.points
                masks.append(mk.reshape(h, w))
                maps.append(mp.reshape(h, w))
            sid = f"{cat.name}/{item.path.stem}"
            sc = Score(sid, cs.score, item.label, maps={"points": AnomalyMap("point", cs.points)},
                       meta={"category": cat.name, "defect": item.defect, "n_points": len(cloud)})
            if out is not None and item.label and len([s for s in result.scores if s.label]) < 6:
                sc.artefacts = write_review(out / "clouds", sid.replace("/", "_"), cloud.points, cs.points,
                                            labels=cloud.labels)
            result.scores.append(sc)
        per[cat.name] = {"object_auroc": _safe(auroc, labels, scores),
                         "point_auroc": _safe(pixel_auroc, pl, ps) if pl else float("nan"),
                         "aupro": _safe(aupro, masks, maps) if masks else float("nan")}
    m: dict[str, Any] = {k: float(np.nanmean([v[k] for v in per.values()])) if any(np.isfinite(v[k]) for v in per.values())
                         else None for k in ("object_auroc", "point_auroc", "aupro")}
    m["points_per_s"] = n_pts / max(t_score, 1e-9)
    m["per_category"] = per
    return m, result
