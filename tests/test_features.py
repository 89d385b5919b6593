"""Backbones: strict Lite0 weight loading, output shapes, determinism, other backbones, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from oddeye.core.errors import InputError, MissingWeightsError, ModelError
from oddeye.retrieval.features import build_extractor
from oddeye.retrieval.features_lite import EfficientNetLite, fold_batchnorm, load_lite, weights_path


@pytest.fixture(scope="module")
def ext():
    return build_extractor(image_size=96)


def test_lite0_weights_load_strictly():
    sd = torch.load(weights_path("lite0"), map_location="cpu", weights_only=True)
    model = load_lite("lite0")
    assert set(model.state_dict()) == set(sd)
    assert torch.equal(model._blocks[3]._depthwise_conv.weight, sd["_blocks.3._depthwise_conv.weight"])
    assert model._blocks[3]._depthwise_conv.kernel_size == (5, 5)
    logits = model(torch.zeros(1, 3, 64, 64))
    assert logits.shape == (1, 1000) and torch.isfinite(logits).all()


@pytest.mark.parametrize("variant,blocks", [("lite0", (4, 10)), ("lite2", (6, 14))])
def test_batchnorm_folding_is_exact(variant, blocks):
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        ref = load_lite(variant).features(x, blocks)
        fused = fold_batchnorm(load_lite(variant)).features(x, blocks)
    for a, b in zip(ref, fused):
        assert torch.allclose(a, b, atol=1e-4 * float(a.abs().max()))


def test_lite0_bad_weight_files(tmp_path):
    with pytest.raises(MissingWeightsError, match="not found"):
        load_lite("lite0", tmp_path / "nope.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="bad.pth"):
        load_lite("lite0", bad)
    partial = tmp_path / "partial.pth"
    sd = EfficientNetLite("lite0").state_dict()
    sd.pop("_fc.bias")
    torch.save(sd, partial)
    with pytest.raises(ModelError, match="not an EfficientNet-Lite0"):
        load_lite("lite0", partial)


def test_extract_shapes_and_attributes(ext):
    imgs = np.random.default_rng(0).integers(0, 255, (3, 96, 96, 3), dtype=np.uint8)
    f = ext.extract(imgs)
    assert ext.stride == 8 and ext.image_size == 96 and ext.dim == 40 + 112
    assert f.shape == (3, ext.dim, 12, 12) and f.dtype == torch.float32


def test_extract_mixed_inputs(ext):
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 255, (50, 70), dtype=np.uint8)
    rgba = rng.integers(0, 255, (81, 33, 4), dtype=np.uint8)
    deep = rng.integers(0, 65535, (64, 64, 3), dtype=np.uint16)
    f = ext.extract([gray, rgba, deep])
    assert f.shape == (3, ext.dim, 12, 12) and torch.isfinite(f).all()
    with pytest.raises(InputError, match="no images"):
        ext.extract([])
    with pytest.raises(InputError, match="shape"):
        ext.extract([np.zeros((4, 4, 4, 4), np.uint8)])


def test_extract_is_deterministic_and_batch_independent(ext):
    imgs = np.random.default_rng(2).integers(0, 255, (4, 96, 96, 3), dtype=np.uint8)
    a, b = ext.extract(imgs), ext.extract(imgs)
    assert torch.equal(a, b)
    single = ext.extract(imgs[:1])
    assert torch.allclose(single[0], a[0], atol=0.05 * float(a.abs().max()))


def test_global_descriptor_is_unit_norm(ext):
    imgs = np.random.default_rng(3).integers(0, 255, (2, 96, 96, 3), dtype=np.uint8)
    g = ext.global_descriptor(imgs)
    assert g.shape == (2, 1280) and np.allclose(np.linalg.norm(g, axis=1), 1.0, atol=1e-4)


def test_target_dim_and_layers():
    e = build_extractor(image_size=64, layers=[2, 4], target_dim=32, bf16=False)
    assert e.dim == 32 and e.stride == 4
    assert e.extract(np.zeros((1, 64, 64, 3), np.uint8)).shape == (1, 32, 16, 16)
    with pytest.raises(InputError, match="layers"):
        build_extractor(layers=[99])


def test_bf16_close_to_fp32():
    imgs = np.random.default_rng(4).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    a = build_extractor(image_size=64, bf16=False).extract(imgs)
    ext = build_extractor(image_size=64, bf16=False, runtime="torch")
    ext.backbone.bf16 = True  # the autocast path itself, even where "auto" would not pick it
    b = ext.extract(imgs)
    assert float((a - b).norm() / a.norm()) < 0.1


def test_bf16_auto_only_where_native():
    from oddeye.retrieval.features import bf16_is_fast, resolve_bf16

    assert resolve_bf16(False) is False and resolve_bf16(None) is False
    assert resolve_bf16("auto") is False, "on CPU, auto is float32 (ONNX Runtime), even where bf16 is native"
    assert resolve_bf16("auto", "cuda") is bf16_is_fast("cuda")
    if not bf16_is_fast("cpu"):
        with pytest.warns(RuntimeWarning, match="no native bfloat16"):
            assert resolve_bf16(True) is False
    else:
        assert resolve_bf16(True) is True


def test_other_backbones(tmp_path):
    with pytest.raises(InputError, match="unknown backbone"):
        build_extractor("resnet-9000")
    with pytest.raises(MissingWeightsError, match="HF cache|local folder"):
        build_extractor("hf:" + str(tmp_path / "no-such-model"))
    with pytest.raises(MissingWeightsError, match="offline"):
        build_extractor("hf:nobody/definitely-not-a-cached-model")
    with pytest.raises(MissingWeightsError, match="TorchScript file not found"):
        build_extractor("torchscript:" + str(tmp_path / "none.pt"))

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = torch.nn.Conv2d(3, 8, 3, stride=4, padding=1)
            self.b = torch.nn.Conv2d(8, 16, 3, stride=2, padding=1)

        def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
            y = self.a(x)
            return [y, self.b(y)]

    path = tmp_path / "tiny.pt"
    torch.jit.save(torch.jit.script(Tiny()), str(path))
    e = build_extractor(f"torchscript:{path}", image_size=64)
    assert e.dim == 24 and e.stride == 4
    assert e.extract(np.zeros((2, 64, 64, 3), np.uint8)).shape == (2, 24, 16, 16)


def test_compile_matches_eager_pads_small_batches_and_falls_back(monkeypatch):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
    eager = build_extractor(image_size=64, layers=(2, 4), batch_size=2, runtime="torch")
    comp = build_extractor(image_size=64, layers=(2, 4), batch_size=2, compile=True)
    ref = eager.extract(imgs)  # batches of 2 then 1: the compiled path pads the last one to 2
    got = comp.extract(imgs)
    assert comp.backbone._compiled is not None and comp.backbone._compiled.batch == 2
    assert torch.allclose(got, ref, atol=1e-4, rtol=1e-4)
    assert comp.config()["compile"] is True

    def broken(*a, **k):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", broken)
    failing = build_extractor(image_size=64, layers=(2, 4), batch_size=2, compile=True)
    with pytest.warns(RuntimeWarning, match="torch.compile of the backbone failed"):
        out = failing.extract(imgs)
    assert torch.allclose(out, ref, atol=1e-5) and failing.backbone.compile is False
