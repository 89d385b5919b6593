"""The image-conditioned PatchCore bank (`--retrieve`): retrieval, scores, save/load, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from contract_image import legacy_manifest
from oddeye.core.errors import InputError, ModelError
from oddeye.core.metrics import auroc
from oddeye.core.synth import make_image_set
from oddeye.image.common import apply_gain
from oddeye.image.conditioned import ConditionedBank, image_descriptors
from oddeye.image.patchcore import PatchCoreHead

EXT = {"image_size": 96}


def test_distances_come_from_the_nearest_images_only():
    rng = np.random.default_rng(0)
    kinds = [torch.from_numpy(rng.normal(size=(1, 8, 1, 1)).astype(np.float32)) for _ in range(2)]
    # two kinds of normal image: every patch of an image is its kind's vector plus noise
    train = torch.cat([kinds[i % 2] + 0.01 * torch.randn(1, 8, 6, 6) for i in range(10)])
    bank = ConditionedBank(k=2, stride=1).fit(train)
    assert bank.size == 10 * 36
    # a kind-0 image with one patch of kind 1: only kind-0 images are searched, so that patch stands out
    q = kinds[0] + 0.01 * torch.randn(1, 8, 6, 6)
    q[0, :, 3, 3] = kinds[1][0, :, 0, 0]
    d = bank.distances(q)
    assert d.shape == (1, 6, 6)
    assert d[0, 3, 3] > 10 * np.delete(d[0].ravel(), 3 * 6 + 3).max()
    # with every image in reach the odd patch finds its kind-1 match
    assert ConditionedBank(k=10, stride=1).fit(train).distances(q)[0, 3, 3] < 0.2


def test_image_descriptors_are_unit_mean_of_the_interior():
    f = torch.zeros(1, 3, 6, 6)
    f[0, 0] = 1.0
    f[0, 1, 0, :] = 100.0  # only in the border ring
    g = image_descriptors(f, border=1)
    assert np.allclose(g, [[1.0, 0.0, 0.0]])


def test_retrieval_head_with_exposure_gains(tmp_path):
    train = [s.image for s in make_image_set(seed=1, n_normal=20, n_defect=0)]
    test = make_image_set(seed=2, n_normal=8, n_defect=8)
    head = PatchCoreHead(extractor=EXT, retrieve=5, exposure_gains=(0.6,), border=1).fit(train)
    imgs = [apply_gain(s.image, 0.6) if s.label == 0 else s.image for s in test]  # darker normals, plain defects
    scores = head.score(imgs).sample_scores()
    assert auroc([s.label for s in test], scores) >= 0.9
    head.save(tmp_path / "m")
    loaded = PatchCoreHead.load(tmp_path / "m")
    assert loaded.config.retrieve == 5 and np.array_equal(loaded.score(imgs).sample_scores(), scores)
    (tmp_path / "m" / "patches.npy").write_bytes(b"junk")
    with pytest.raises(ModelError, match="patches.npy"):
        PatchCoreHead.load(tmp_path / "m")


def test_retrieval_errors():
    with pytest.raises(InputError, match="retrieve"):
        PatchCoreHead(retrieve=-1)
    with pytest.raises(InputError, match="retrieve"):
        ConditionedBank(k=0)
    with pytest.raises(ModelError, match="not fitted"):
        ConditionedBank().distances(torch.zeros(1, 4, 3, 3))


def test_positions_steer_patch_matches_not_image_retrieval():
    train = [s.image for s in make_image_set(seed=1, n_normal=12, n_defect=0)]
    plain = PatchCoreHead(extractor=EXT, retrieve=3).fit(train)
    placed = PatchCoreHead(extractor=EXT, retrieve=3, position_weight=8.0).fit(train)
    feats = plain.extractor.extract(train[:2])
    d0 = image_descriptors(feats)
    # the same images are retrieved with and without the position channels
    assert np.array_equal(plain.conditioned.gallery.search(d0, k=3)[1], placed.conditioned.gallery.search(d0, k=3)[1])
    assert placed.conditioned.patches.shape[2] == plain.conditioned.patches.shape[2] + 2


def test_bank_built_pass_by_pass_equals_one_fit():
    a, b = torch.randn(3, 5, 4, 4), torch.randn(2, 5, 4, 4)
    whole = ConditionedBank(k=2).fit(torch.cat([a, b]))
    passes = ConditionedBank(k=2).add(a).add(b)
    assert np.array_equal(whole.patches, passes.patches) and len(passes.gallery) == 5
    q = torch.randn(2, 5, 4, 4)
    assert np.array_equal(whole.distances(q), passes.distances(q))
    with pytest.raises(InputError, match="do not match"):
        passes.add(torch.randn(1, 5, 6, 6))


def test_retrieval_fit_keeps_every_exposure_pass():
    train = [s.image for s in make_image_set(seed=1, n_normal=12, n_defect=0)]
    head = PatchCoreHead(extractor=EXT, retrieve=3, exposure_gains=(0.7, 1.3)).fit(train)
    n_fit = head.n_train
    assert head.conditioned.patches.shape[0] == 3 * n_fit and len(head.conditioned.gallery) == 3 * n_fit


def test_per_image_coreset_keeps_the_odd_patches():
    rng = np.random.default_rng(3)
    train = torch.from_numpy(rng.normal(scale=0.01, size=(4, 6, 8, 8)).astype(np.float32))
    train[:, 0, 5, 2] = 5.0  # one distinct patch per image: a coreset keeps it, a stride-2 grid does not
    cs = ConditionedBank(k=2, per_image=4).fit(train)
    grid = ConditionedBank(k=2, stride=2).fit(train)
    assert cs.patches.shape == (4, 4, 6) and grid.patches.shape == (4, 16, 6)
    q = train[:1].clone()
    assert cs.distances(q)[0, 5, 2] < 0.1 < grid.distances(q)[0, 5, 2]
    with pytest.raises(InputError, match="retrieve_patches"):
        ConditionedBank(per_image=-1)


def test_coreset_bank_head_saves_its_kind_and_old_models_keep_the_grid(tmp_path):
    train = [s.image for s in make_image_set(seed=1, n_normal=12, n_defect=0)]
    head = PatchCoreHead(extractor=EXT, retrieve=3, retrieve_patches=16).fit(train)
    assert head.conditioned.patches.shape[1] == 16
    head.save(tmp_path / "m")
    assert PatchCoreHead.load(tmp_path / "m").conditioned.per_image == 16
    grid = PatchCoreHead(extractor=EXT, retrieve=3, retrieve_patches=0).fit(train)
    assert grid.conditioned.patches.shape[1] == (96 // 8 // 2) ** 2
    grid.save(tmp_path / "g")
    legacy_manifest(tmp_path / "g", drop=("retrieve_patches",))  # written before the option existed
    old = PatchCoreHead.load(tmp_path / "g")
    assert old.config.retrieve_patches == 0 and np.array_equal(old.score(train[:2]).sample_scores(),
                                                        grid.score(train[:2]).sample_scores())
