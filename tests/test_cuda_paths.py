"""CUDA paths agree with the CPU ones: video-prediction training and scoring, the Lite0 extractor, PatchCore.

Skipped without a CUDA device (CI has none); run on a GPU machine with `pytest tests/test_cuda_paths.py`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from oddeye.core.metrics import auroc
from oddeye.core.synth.images import make_image_set
from oddeye.core.synth.video import make_video, write_frames

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")]


def test_video_prediction_trains_on_cuda_and_scores_like_cpu(tmp_path):
    from oddeye.video.prediction.head import PredictionHead
    from oddeye.video.prediction.model import PredictorConfig
    from oddeye.video.prediction.train import TrainConfig

    folders = [write_frames(make_video(seed=s, n_frames=60, size=(64, 64), anomaly=None).frames, tmp_path / f"v{s}")
               for s in range(3)]
    test = make_video(seed=9, n_frames=60, size=(64, 64), anomaly="fast", anomaly_span=(30, 50)).frames
    from oddeye.core.head import RunContext

    head = PredictionHead(model=PredictorConfig(size=64), train=TrainConfig(minutes=5, max_steps=30))
    assert head.device == "cuda"  # CUDA when present, without asking
    head.fit(folders, ctx=RunContext(out=tmp_path / "m", progress=False))
    head.save(tmp_path / "m")
    assert next(head.g.parameters()).is_cuda
    s_gpu = head._series_from_array(test).score
    cpu = PredictionHead.load(tmp_path / "m", device="cpu")
    s_cpu = cpu._series_from_array(test).score
    assert np.abs(s_gpu - s_cpu).max() < 1e-3 * max(1.0, np.ptp(s_cpu))


def test_lite0_extractor_on_cuda_matches_cpu():
    from oddeye.retrieval.features import build_extractor

    imgs = np.random.default_rng(0).integers(0, 255, (4, 128, 128, 3), dtype=np.uint8)
    cpu = build_extractor(image_size=128, runtime="torch").extract(imgs)
    gpu = build_extractor(image_size=128, device="cuda", bf16=False)
    assert gpu.backbone.runtime == "torch"  # ONNX Runtime is the CPU path only
    out = gpu.extract(imgs)
    assert out.device.type == "cpu" and out.shape == cpu.shape
    assert float((out - cpu).norm() / cpu.norm()) < 1e-2  # TF32 convolutions


def test_patchcore_on_cuda_scores_like_cpu():
    from oddeye.image.patchcore import PatchCoreHead

    s = make_image_set(seed=0, n_normal=24, n_defect=8)
    train, test = [x.image for x in s[:16]], s[16:]
    y = np.array([x.label for x in test])
    scores = {}
    for dev in ("cpu", "cuda"):
        head = PatchCoreHead(device=dev, extractor={"bf16": False}).fit(train)
        scores[dev], _ = head.score_arrays([x.image for x in test])
    assert auroc(y, scores["cuda"]) == pytest.approx(auroc(y, scores["cpu"]), abs=0.05)
    assert np.abs(scores["cuda"] - scores["cpu"]).max() < 0.02 * np.ptp(scores["cpu"])
