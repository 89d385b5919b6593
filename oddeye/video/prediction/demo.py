"""`oddeye demo` part for video frame prediction: a tiny model on generated footage, in well under a minute."""

from __future__ import annotations

from pathlib import Path

import torch

from oddeye.core.metrics import auroc
from oddeye.core.synth import make_video, write_frames
from oddeye.video.prediction.head import PredictionHead, ScoreConfig
from oddeye.video.prediction.model import PredictorConfig
from oddeye.video.prediction.train import TrainConfig

DEMO_MODEL = PredictorConfig(size=32, past=3, channels=(8, 16, 16), heads=2, d_channels=4)


def run_demo(out: Path, db: str) -> list[str]:
    """Train a TINY predictor ~20 s on normal synthetic walkers, score a video with a fast runner; store it."""
    from oddeye.video.cli import write_outputs  # entry point: writes the store via oddeye.ui

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    train = [write_frames(make_video(seed=s, anomaly=None, n_frames=100).frames, out / "data" / f"normal_{s}")
             for s in (1, 2, 3)]
    test = make_video(seed=7, anomaly="fast")
    test_dir = write_frames(test.frames, out / "data" / "test_fast_runner")
    head = PredictionHead(DEMO_MODEL, TrainConfig(minutes=0.35, max_steps=400, batch_size=8), ScoreConfig(patch=0))
    head.fit(train, out=out / "model", progress=True)
    result = head.score([test_dir], progress=False)
    sc = result.scores[0]
    sc.label = 1
    a = auroc(test.labels, sc.frame_scores)
    result.metrics["frame_auroc"] = a
    lines = write_outputs(result, out / "result", db, str(out / "model"), str(test_dir))
    return [f"the demo model is TINY (32x32 gray, {head.train_info['steps']} steps, "
            f"{head.train_info['train_minutes'] * 60:.0f} s of training): a smoke test, not the real model",
            f"frame AUROC on the generated video with a fast runner: {a:.3f}; "
            f"{len(result.events)} event(s) above threshold {result.threshold:.2f}",
            *lines]
