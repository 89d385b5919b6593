"""`oddeye demo` part for video frame prediction: a tiny model on generated footage, in well under a minute."""

from __future__ import annotations

import json
from pathlib import Path

from oddeye.core.head import read_manifest
from oddeye.core.metrics import auroc
from oddeye.core.synth import make_video, write_frames
from oddeye.core.types import Result
from oddeye.store.api import open_store
from oddeye.video.cli import fit_video_prediction, score_video
from oddeye.video.prediction.config import PredictionConfig, PredictorConfig, ScoreConfig, TrainConfig

DEMO_CONFIG = PredictionConfig(model=PredictorConfig(size=32, past=3, channels=(8, 16, 16), heads=2, d_channels=4),
                               train=TrainConfig(minutes=0.35, max_steps=400, batch_size=8), score=ScoreConfig(patch=0))


def run_demo(out: Path, db: str) -> list[str]:
    """Train a TINY predictor ~20 s on normal synthetic walkers, score a video with a fast runner; store it."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train = [write_frames(make_video(seed=s, anomaly=None, n_frames=100).frames, out / "data" / f"normal_{s}")
             for s in (1, 2, 3)]
    test = make_video(seed=7, anomaly="fast")
    test_dir = write_frames(test.frames, out / "data" / "test_fast_runner")
    settings = out / "demo_config.json"
    settings.write_text(json.dumps(DEMO_CONFIG.to_dict(), indent=1))
    model = fit_video_prediction(out / "model", frames=train, config=settings)
    written = score_video(model, str(test_dir), out=out / "result", db=db)
    frame_scores = Result.load(written.result_json.parent).scores[0].frame_scores
    a = auroc(test.labels, frame_scores)
    with open_store(written.db) as store:
        store.update_run_metrics(written.run_id, {"frame_auroc": a})
    info = read_manifest(model)["train_info"]
    return [f"the demo model is TINY (32x32 gray, {info['steps']} steps, {info['train_minutes'] * 60:.0f} s of "
            f"training; settings {settings}): a smoke test, not the real model",
            f"frame AUROC on the generated video with a fast runner: {a:.3f}", *written.lines]
