"""UCSD Ped2: train the video-prediction head on CPU under a wall-clock budget; AUROC vs training minutes.

Data: ../shared/data/ucsd_ped2 (UCSD Anomaly Detection Ped2, Mahadevan et al., CVPR 2010): trains on the
16 training clips (two held out for the threshold), evaluates on the 12 test clips (2,010 frames).
Run: .venv/bin/python benchmarks/bench_video_prediction.py [--minutes 30] [--eval-every 5] [--no-record]
Writes benchmarks/out/video_prediction/{auroc_vs_minutes.png, curve.json, model/} and appends RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from oddeye.core.config import set_threads
from oddeye.core.head import RunContext
from oddeye.core.report import machine_line, record_benchmark
from oddeye.video.datasets import VideoDataset, load_video_dataset
from oddeye.video.prediction.config import PredictionConfig, PredictorConfig, ScoreConfig, TrainConfig
from oddeye.video.prediction.evaluate import HALVES, score_dataset, series_metrics
from oddeye.video.prediction.head import PredictionHead, split_validation
from oddeye.video.prediction.train import Trainer

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO.parent / "shared" / "data" / "ucsd_ped2"


def plot_curve(points: list[dict], path: Path, title: str) -> Path:
    """AUROC (micro, macro) against training minutes -> PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    m = [p["train_minutes"] for p in points]
    ax.plot(m, [p["frame_auroc_micro"] for p in points], "o-", label="frame AUROC micro")
    ax.plot(m, [p["frame_auroc_macro"] for p in points], "s--", label="frame AUROC macro")
    ax.axhline(0.95, color="gray", ls=":", lw=1, label="target 0.95")
    ax.set_xlabel("training minutes (wall clock, shared 2-core CPU)")
    ax.set_ylabel("AUROC")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def rescored(model: Path, ds: VideoDataset, score_cfg: ScoreConfig) -> PredictionHead:
    """A trained model with `score_cfg`, re-calibrated on the validation clips it held out."""
    head = PredictionHead.load(model)
    head.config = head.config.replace(score=score_cfg)
    vids = head.read_frames([v.source for v in ds.train], progress=False)
    tc = head.config.train
    lead = max(head.config.lead, head.config.model.past * tc.stride)
    _, val = split_validation(vids, tc.val_fraction, lead, tc.seed)
    if [n for n, _ in val] != head.train_info.get("val_videos", [n for n, _ in val]):
        raise SystemExit(f"{model}: its validation clips {head.train_info.get('val_videos')} differ from this split")
    head.calibrate([v for _, v in val])
    return head


def main() -> int:
    """Train with periodic evaluation, then a full evaluation (pixel AUROC, frames/s); record the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    ap.add_argument("--minutes", type=float, default=30.0, help="training budget (wall clock)")
    ap.add_argument("--eval-every", type=float, default=5.0, help="training minutes between AUROC checkpoints")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "video_prediction")
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument("--perspective", type=float, default=1.0,
                    help="score: top-row / bottom-row weight of the error (1: off; see ScoreConfig)")
    ap.add_argument("--motion", type=float, default=None,
                    help="score: weight of the motion term (default: ScoreConfig's, 0.6; with --perspective 32: 0.5)")
    ap.add_argument("--model", type=Path, default=None,
                    help="no training: re-score a model folder this benchmark wrote with the current score defaults "
                         "(and --perspective, --motion), re-calibrated on the model's own validation clips")
    args = ap.parse_args()
    args.out = args.out.resolve()
    if not args.root.is_dir():
        print(f"UCSD Ped2 not found at {args.root}; this benchmark needs it (see ../shared/data/README.md)",
              file=sys.stderr)
        return 2
    threads = set_threads(args.threads)
    ds = load_video_dataset("ucsd-ped2", args.root)
    score_cfg = ScoreConfig(perspective=args.perspective, **({} if args.motion is None else {"motion": args.motion}))
    head = PredictionHead(PredictionConfig(model=PredictorConfig(size=args.size),
                                           train=TrainConfig(minutes=args.minutes), score=score_cfg))
    points: list[dict] = []

    def checkpoint(tr: Trainer) -> None:
        series, speed = score_dataset(head, ds, keep_maps=False, progress=False)
        m = series_metrics(ds, series, pixel=False)
        points.append({"train_minutes": round(tr.train_seconds / 60, 2), "step": tr.step, **m, **speed})
        print(json.dumps(points[-1]), flush=True)
        (args.out / "curve.json").write_text(json.dumps(points, indent=1))

    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if args.model is not None:
        head = rescored(args.model, ds, score_cfg)
        args.size = head.config.model.size
    else:
        head.fit([v.source for v in ds.train], ctx=RunContext(out=args.out / "model", callback=checkpoint,
                                                              callback_every_s=args.eval_every * 60))
        head.save(args.out / "model")
    series, speed = score_dataset(head, ds, keep_maps=True)
    final = series_metrics(ds, series, pixel=True, halves=True)
    points.append({"train_minutes": round(head.train_info["train_minutes"], 2), "step": head.train_info["steps"],
                   **{k: final[k] for k in ("frame_auroc_micro", "frame_auroc_macro")}, **speed,
                   "score": head.config.score.describe()})
    png = None
    if args.model is None:  # a re-scored model keeps the curve of its training run
        (args.out / "curve.json").write_text(json.dumps(points, indent=1))
        png = plot_curve(points, args.out / "auroc_vs_minutes.png",
                         f"UCSD Ped2, video-prediction {args.size}x{args.size} gray, {threads} thread(s)")
    figures = {"frame_auroc_micro": final["frame_auroc_micro"], "frame_auroc_macro": final["frame_auroc_macro"],
               **{f"frame_auroc_{a}_{h}": round(final[f"frame_auroc_{a}_{h}"], 4) for h in HALVES
                  for a in ("micro", "macro")},
               "score": head.config.score.describe(), "pixel_auroc": final["pixel_auroc"], "train_minutes": round(head.train_info["train_minutes"], 2),
               "train_steps": head.train_info["steps"], "frames_per_s": round(speed["frames_per_s"], 1),
               "frames_per_cpu_s": round(speed["frames_per_cpu_s"], 1),
               "resolution": f"{args.size}x{args.size} gray", "threshold": round(head.calibration.threshold, 3),
               "torch_threads": threads, "wall_minutes": round((time.perf_counter() - t0) / 60, 1)}
    curve = ", ".join(f"{p['train_minutes']:.1f} min: {p['frame_auroc_micro']:.3f}" for p in points)
    shown = "none (re-scored model)" if png is None else png.relative_to(REPO) if png.is_relative_to(REPO) else png
    notes = (("Re-scored with the current score defaults, re-calibrated on its own validation clips; no training. "
              if args.model is not None else "") +
             f"AUROC (micro) vs training minutes: {curve}. Curve: {shown} (not committed). "
             f"_dev / _held: odd- / even-numbered test videos (score options chosen on dev only). "
             f"frames/s = scoring of all 2,010 test frames, JPEG decode + resize included (wall clock on the shared "
             f"machine; frames_per_cpu_s divides by the CPU time the process got). Pixel AUROC: blurred "
             f"error maps vs the UCSD masks at 180x120. Training clock counts optimisation steps only (the "
             f"periodic evaluations are excluded). Shared machine: 8 engineers on 2 cores; machine when recorded: "
             f"{machine_line()}. Published (GPU, full resolution): future-frame prediction 0.954, CT-D2GAN 0.972.")
    print(json.dumps(figures))
    if not args.no_record:
        minutes = round(head.train_info["train_minutes"]) if args.model is not None else args.minutes
        record_benchmark(f"video-prediction: UCSD Ped2 frame AUROC after {minutes:g} min CPU training"
                         + (" (saved model re-scored)" if args.model is not None else ""),
                         "UCSD Ped2 (ucsd_ped2; train 16 clips, 2 held out for the threshold; test 12 clips, "
                         "2,010 frames; Mahadevan et al. CVPR 2010)",
                         "nice -n 10 .venv/bin/python benchmarks/bench_video_prediction.py " + " ".join(sys.argv[1:]),
                         figures, notes)
    torch.set_num_threads(threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
