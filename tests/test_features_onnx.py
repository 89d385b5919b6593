"""ONNX Runtime execution of the Lite0 extractor: same features as PyTorch, fallbacks, option checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from oddeye.core.errors import InputError
from oddeye.retrieval.features import build_extractor
from oddeye.retrieval.features_onnx import onnx_available

pytestmark = pytest.mark.skipif(not onnx_available(), reason="onnxruntime/onnx not installed")


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (5, 80, 64, 3), dtype=np.uint8)


@pytest.mark.parametrize("kw", [{}, {"target_dim": 50}, {"layers": (2, 4), "patch_size": 1}])
def test_onnx_matches_torch(images, kw):
    ref = build_extractor(image_size=64, bf16=False, batch_size=2, runtime="torch", **kw)
    ort = build_extractor(image_size=64, bf16=False, batch_size=2, **kw)  # 'auto': ONNX Runtime on this CPU
    assert ref.backbone.runtime == "torch" and ort.backbone.runtime == "onnx"
    a, b = ref.extract(images), ort.extract(images)  # batches of 2, 2, 1: the batch axis is dynamic
    assert ort.backbone.runtime == "onnx" and ort._onnx is not None and ort._onnx.hw == (64, 64)
    assert b.shape == a.shape == (5, ref.dim, *ref.grid)
    assert float((a - b).norm() / a.norm()) < 1e-5
    if not kw.get("target_dim"):  # rows of (B*h*w, D) come without a copy
        assert b.permute(0, 2, 3, 1).is_contiguous()


def test_onnx_failure_falls_back_to_torch(images, monkeypatch):
    ref = build_extractor(image_size=64, bf16=False, runtime="torch").extract(images)

    def broken(*a, **k):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(torch.onnx, "export", broken)
    ext = build_extractor(image_size=64, bf16=False, runtime="onnx")
    with pytest.warns(RuntimeWarning, match="ONNX Runtime could not run the backbone.*exporter exploded"):
        out = ext.extract(images)
    assert ext.backbone.runtime == "torch"
    assert torch.allclose(out, ref, atol=1e-6)


def test_runtime_option_checks():
    with pytest.raises(InputError, match="runtime='tensorrt'"):
        build_extractor(image_size=64, bf16=False, runtime="tensorrt")
    assert build_extractor(image_size=64, bf16=False, compile=True).backbone.runtime == "torch"  # compile asks for PyTorch
    ext = build_extractor(image_size=64, bf16=False, runtime="onnx")
    assert ext.config()["runtime"] == "onnx"
    with pytest.warns(RuntimeWarning, match="runtime='onnx' needs a CPU device"):
        ext.backbone.to("meta")
    assert ext.backbone.runtime == "torch"
