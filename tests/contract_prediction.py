"""Contract cases of the video-prediction head (see tests/test_contract.py)."""

from __future__ import annotations

from pathlib import Path

from contract_support import ContractCase
from oddeye.core.synth import make_video, write_frames, write_video_file
from oddeye.video.prediction.config import PredictionConfig, PredictorConfig, ScoreConfig, TrainConfig
from oddeye.video.prediction.head import PredictionHead

TINY = PredictionConfig(model=PredictorConfig(size=32, past=3, channels=(4, 8, 8), heads=2, d_channels=2),
                        train=TrainConfig(minutes=1.0, max_steps=3, batch_size=2), score=ScoreConfig(smooth_sigma=2.0))


def _make() -> PredictionHead:
    return PredictionHead(TINY, device="cpu")


def _train(folder: Path) -> list[Path]:
    """Three short normal clips (frame folders); one is held out for the threshold."""
    return [write_frames(make_video(seed=s, anomaly=None, n_frames=24, size=(48, 64)).frames, folder / f"normal{s}")
            for s in (1, 2, 3)]


def _test(folder: Path) -> list[Path]:
    """A frame folder and an mp4 file, each with a fast runner in its second half."""
    a = make_video(seed=8, anomaly="fast", n_frames=30, anomaly_span=(15, 28), size=(48, 64)).frames
    b = make_video(seed=9, anomaly="fast", n_frames=30, anomaly_span=(15, 28), size=(48, 64)).frames
    return [write_frames(a, folder / "test_frames"), write_video_file(b, folder / "test.mp4", fps=25)]


CASES: list[ContractCase] = [
    ContractCase(head="video-prediction", make=_make, train=_train, test=_test, bad=("score", {"norm": "rank"})),
]
