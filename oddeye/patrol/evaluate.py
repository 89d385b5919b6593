"""`oddeye eval patrol --dataset deeppcb`: pair template/test boards, align, compare, score against the boxes."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from oddeye.core import metrics as M
from oddeye.core.head import Mapper
from oddeye.core.imageio import read_image
from oddeye.core.types import AnomalyMap, Result, Score
from oddeye.patrol.deeppcb import load_deeppcb, random_homography, warp_reference
from oddeye.patrol.head import PatrolHead
from oddeye.patrol.viz import save_change_overlay

DATASETS = ("deeppcb",)


@dataclass
class PairOutcome:
    """What one DeepPCB pair gives the metrics: its judged pixels (truth, change map), boxes, F1/IoU, its Score."""

    mask: np.ndarray  # (P,) bool: changed pixels of the truth, over the pixels judged
    change: np.ndarray  # (P,) float32: the change map there
    gt_boxes: np.ndarray  # (B, 4) boxes whose centre the reference covers
    pred_boxes: np.ndarray  # (Q, 4)
    f1: float
    iou: float
    method: str
    failed: bool  # alignment failed
    outside: int  # truth boxes the warped reference does not cover
    score: Score
    busy_s: float
    cpu_s: float


def pair_outcome(head: PatrolHead, job: tuple[int, Any, dict | None], warp: bool,
                 out: str | Path | None, n_overlays: int) -> PairOutcome:
    """Compare one pair (k, pair, the random generator state of its homography with --warp) -> its outcome."""
    k, pr, state = job
    ref, qry = read_image(pr.template, "rgb"), read_image(pr.test, "rgb")
    footprint = None
    if warp:  # a known random homography applied to the template; the area it leaves empty is excluded
        rng = np.random.default_rng()
        rng.bit_generator.state = state
        H = random_homography(rng, ref.shape[:2])
        ref = warp_reference(ref, H)
        footprint = cv2.warpPerspective(np.ones(ref.shape[:2], np.uint8), H, ref.shape[1::-1],
                                        flags=cv2.INTER_NEAREST) > 0
    t0, c0 = time.perf_counter(), time.process_time()
    al, ch = head.compare(qry, ref, ref_valid=footprint)
    busy, cpu = time.perf_counter() - t0, time.process_time() - c0
    gt = M.boxes_to_mask(pr.boxes, qry.shape[:2])
    keep = al.valid if warp else np.ones(gt.shape, bool)
    boxes, outside = pr.boxes, 0
    if warp:  # boxes whose centre the reference does not cover cannot be judged
        cx = ((boxes[:, 0] + boxes[:, 2]) / 2).astype(int).clip(0, gt.shape[1] - 1)
        cy = ((boxes[:, 1] + boxes[:, 3]) / 2).astype(int).clip(0, gt.shape[0] - 1)
        inside = keep[cy, cx]
        outside = int((~inside).sum())
        boxes = boxes[inside]
    if ch is None:
        cmap, pboxes = np.zeros(gt.shape, np.float32), np.zeros((0, 4), np.float32)
    else:
        cmap, pboxes = ch.map, ch.boxes
    f1, iou = M.change_f1_iou(M.boxes_to_mask(pboxes, gt.shape) & keep, gt & keep)
    sc = Score(pr.name, float(ch.score) if ch is not None else float("nan"), label=1,
               reason=al.message if ch is None else f"{len(pboxes)} box(es), {al.method}",
               meta={"path": str(pr.test), "reference": str(pr.template), "boxes": pboxes.tolist(),
                     "gt_boxes": pr.boxes.tolist(), "alignment": al.quality(), "kind": "patrol_pair"})
    sc.maps["change"] = AnomalyMap("pixel", cv2.resize(cmap, (160, 160), interpolation=cv2.INTER_AREA))
    if out is not None and k < n_overlays and ch is not None:
        sc.artefacts["change"] = str(save_change_overlay(Path(out) / "overlays" / f"{pr.name}.png", qry, ch,
                                                         al.warped, pr.boxes))
    return PairOutcome(gt[keep], cmap[keep], boxes, pboxes, f1, iou, al.method, ch is None, outside, sc, busy, cpu)


def homography_states(seed: int, n: int) -> list[dict]:
    """The random generator state before each of n homographies drawn in turn from `seed` (how many numbers a
    homography draws does not depend on the image size, so each pair can draw its own later, anywhere)."""
    rng = np.random.default_rng(seed)
    states = []
    for _ in range(n):
        states.append(copy.deepcopy(rng.bit_generator.state))
        random_homography(rng, (1, 1))
    return states


def evaluate_deeppcb(head: PatrolHead, root: str | Path, warp: bool = False, seed: int = 0, limit: int | None = None,
                     split: str = "test", out: str | Path | None = None, n_overlays: int = 8,
                     mapper: Mapper = map) -> tuple[dict[str, Any], Result]:
    """Metrics (pixel_auroc, box_recall, box_recall_centre, pixel_f1, pixel_iou, pairs_per_s, ...) and a Result; the
    pairs are mapped by `mapper` (e.g. on Ray; default: one after the other)."""
    pairs = load_deeppcb(root, split, limit)
    states = homography_states(seed, len(pairs)) if warp else [None] * len(pairs)
    result = Result(head="patrol", threshold=head.config.change.threshold,
                    meta={"dataset": "deeppcb", "split": split, "warp": warp, "seed": seed})
    jobs = tqdm(list(zip(range(len(pairs)), pairs, states)), desc="deeppcb pairs", unit="pair",
                disable=mapper is not map)
    done = list(mapper(partial(pair_outcome, head, warp=warp, out=out, n_overlays=n_overlays), jobs))
    masks, maps = [o.mask for o in done], [o.change for o in done]
    gts, preds = [o.gt_boxes for o in done], [o.pred_boxes for o in done]
    f1s, ious = [o.f1 for o in done], [o.iou for o in done]
    n_failed, n_outside = sum(o.failed for o in done), sum(o.outside for o in done)
    busy, cpu = sum(o.busy_s for o in done), sum(o.cpu_s for o in done)
    methods: dict[str, int] = {}
    for o in done:
        methods[o.method] = methods.get(o.method, 0) + 1
        result.scores.append(o.score)
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
