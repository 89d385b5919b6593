"""`oddeye eval patrol --dataset deeppcb`: pair template/test boards, align, compare, score against the boxes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from oddeye.core import metrics as M
from oddeye.core.imageio import read_image
from oddeye.core.types import AnomalyMap, Result, Score
from oddeye.patrol.deeppcb import load_deeppcb, random_homography, warp_reference
from oddeye.patrol.head import PatrolHead
from oddeye.patrol.viz import save_change_overlay

DATASETS = ("deeppcb",)


def evaluate_deeppcb(head: PatrolHead, root: str | Path, warp: bool = False, seed: int = 0, limit: int | None = None,
                     split: str = "test", out: str | Path | None = None, n_overlays: int = 8) -> tuple[dict[str, Any], Result]:
    """Metrics (pixel_auroc, box_recall, box_recall_centre, pixel_f1, pixel_iou, pairs_per_s, ...) and a Result."""
    pairs = load_deeppcb(root, split, limit)
    rng = np.random.default_rng(seed)
    masks, maps, gts, preds = [], [], [], []
    f1s, ious, n_failed, n_outside = [], [], 0, 0
    methods: dict[str, int] = {}
    result = Result(head="patrol", threshold=head.config.change.threshold,
                    meta={"dataset": "deeppcb", "split": split, "warp": warp, "seed": seed})
    busy = cpu = 0.0
    for k, pr in enumerate(tqdm(pairs, desc="deeppcb pairs", unit="pair")):
        ref, qry = read_image(pr.template, "rgb"), read_image(pr.test, "rgb")
        footprint = None
        if warp:  # a known random homography applied to the template; the area it leaves empty is excluded
            H = random_homography(rng, ref.shape[:2])
            ref = warp_reference(ref, H)
            footprint = cv2.warpPerspective(np.ones(ref.shape[:2], np.uint8), H, ref.shape[1::-1],
                                            flags=cv2.INTER_NEAREST) > 0
        t0, c0 = time.perf_counter(), time.process_time()
        al, ch = head.compare(qry, ref, ref_valid=footprint)
        busy += time.perf_counter() - t0
        cpu += time.process_time() - c0
        methods[al.method] = methods.get(al.method, 0) + 1
        gt = M.boxes_to_mask(pr.boxes, qry.shape[:2])
        keep = al.valid if warp else np.ones(gt.shape, bool)
        boxes = pr.boxes
        if warp:  # boxes whose centre the reference does not cover cannot be judged
            cx = ((boxes[:, 0] + boxes[:, 2]) / 2).astype(int).clip(0, gt.shape[1] - 1)
            cy = ((boxes[:, 1] + boxes[:, 3]) / 2).astype(int).clip(0, gt.shape[0] - 1)
            inside = keep[cy, cx]
            n_outside += int((~inside).sum())
            boxes = boxes[inside]
        if ch is None:
            n_failed += 1
            cmap, pboxes = np.zeros(gt.shape, np.float32), np.zeros((0, 4), np.float32)
        else:
            cmap, pboxes = ch.map, ch.boxes
        masks.append(gt[keep])
        maps.append(cmap[keep])
        gts.append(boxes)
        preds.append(pboxes)
        f1, iou = M.change_f1_iou(M.boxes_to_mask(pboxes, gt.shape) & keep, gt & keep)
        f1s.append(f1)
        ious.append(iou)
        sc = Score(pr.name, float(ch.score) if ch is not None else float("nan"), label=1,
                   reason=al.message if ch is None else f"{len(pboxes)} box(es), {al.method}",
                   meta={"path": str(pr.test), "reference": str(pr.template), "boxes": pboxes.tolist(),
                         "gt_boxes": pr.boxes.tolist(), "alignment": al.quality(), "kind": "patrol_pair"})
        small = cv2.resize(cmap, (160, 160), interpolation=cv2.INTER_AREA)
        sc.maps["change"] = AnomalyMap("pixel", small)
        if out is not None and k < n_overlays and ch is not None:
            p = save_change_overlay(Path(out) / "overlays" / f"{pr.name}.png", qry, ch, al.warped, pr.boxes)
            sc.artefacts["change"] = str(p)
        result.scores.append(sc)
    recall = [M.box_recall(g, p) for g, p in zip(gts, preds) if len(g)]
    recall_c = [M.box_recall(g, p, centre_hit=True) for g, p in zip(gts, preds) if len(g)]
    n_gt = sum(len(g) for g in gts)
    hit = sum(r * len(g) for r, g in zip(recall, [g for g in gts if len(g)]))
    hit_c = sum(r * len(g) for r, g in zip(recall_c, [g for g in gts if len(g)]))
    y, s = np.concatenate(masks), np.concatenate(maps)
    metrics = {
        "pixel_auroc": M.auroc(y, s),
        "box_recall": hit / max(n_gt, 1),  # over all ground-truth boxes, IoU >= 0.5
        "box_recall_centre": hit_c / max(n_gt, 1),  # IoU >= 0.5 or a predicted box centre inside
        "pixel_f1": float(np.mean(f1s)),
        "pixel_iou": float(np.mean(ious)),
        "pred_boxes_per_pair": float(np.mean([len(p) for p in preds])),
        "pairs_per_s": len(pairs) / max(busy, 1e-9),  # wall clock, on a machine others share
        "pairs_per_cpu_s": len(pairs) / max(cpu, 1e-9),  # per CPU-second of this process (load-independent)
        "align_failed": n_failed,
        "gt_boxes": n_gt,
    }
    if warp:
        metrics["gt_boxes_outside_reference"] = n_outside
    result.metrics = {k: float(v) for k, v in metrics.items()}
    result.meta["alignment_methods"] = methods
    return metrics, result
