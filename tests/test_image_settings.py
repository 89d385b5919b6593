"""Image head settings on generated data: border, smoothing, intensity, position weight, exposure gains, fits in
passes, and the threshold from held-out normal images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from image_support import EXT, image_data
from oddeye.core.errors import InputError
from oddeye.core.metrics import auroc
from oddeye.image.common import as_items, calibrate
from oddeye.image.gaussian import GaussianHead, ledoit_wolf
from oddeye.image.patchcore import PatchCoreHead


@pytest.fixture(scope="module")
def data():
    return image_data()


def test_threshold_is_the_prediction_bound_of_held_out_normals_from_five_on():
    from scipy.stats import t

    few = np.array([1.0, 2.0, 1.5, 1.2])
    assert calibrate(few, np.zeros(0)) == (2.0, None)  # below five: their maximum
    six = np.array([10.0, 10.2, 9.9, 10.1, 10.05, 9.95])
    bound = six.mean() + t.ppf(0.99, 5) * six.std(ddof=1) * np.sqrt(1 + 1 / 6)
    thr, pix = calibrate(six, np.arange(1000.0))
    assert thr == pytest.approx(bound) and thr > six.max() + 0.2 and pix == pytest.approx(998.001)
    spread = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 100.0])
    assert calibrate(spread, np.zeros(0))[0] >= 100.0  # never below their maximum
    assert calibrate(np.zeros(0), np.zeros(0)) == (None, None)


def test_border_ring_is_left_out_of_image_scores():
    head = PatchCoreHead(border=2, extractor=EXT)
    pm = np.zeros((1, 12, 12), np.float32)
    pm[0, 0, 0] = 9.0
    assert head.interior(pm).shape == (1, 8, 8) and head.interior(pm).max() == 0.0
    assert PatchCoreHead(extractor=EXT).interior(pm).max() == 9.0
    with pytest.raises(InputError, match="border"):
        GaussianHead(border=-1)


def test_score_sigma_smooths_lone_patches_not_regions():
    head = PatchCoreHead(score_sigma=1.0, extractor=EXT)
    lone = np.zeros((1, 12, 12), np.float32)
    lone[0, 6, 6] = 9.0
    region = np.zeros((1, 12, 12), np.float32)
    region[0, 4:9, 4:9] = 5.0
    assert head.smoothed(region).max() > head.smoothed(lone).max()  # raw max says the opposite
    assert np.array_equal(PatchCoreHead(score_sigma=0, extractor=EXT).smoothed(lone), lone)
    with pytest.raises(InputError, match="score_sigma"):
        GaussianHead(score_sigma=-1)


def test_standardized_intensity_ignores_exposure(data):
    """With intensity='standardize' a uniformly brighter/contrastier copy of an image scores the same."""
    train, test = data
    head = PatchCoreHead(coreset=0.2, extractor={**EXT, "intensity": "standardize"}).fit(train)
    img = test[0].image.astype(np.float32)
    brighter = np.clip(img * 0.8 + 30, 0, 255).astype(np.uint8)
    a, b = head.score_arrays([test[0].image, brighter])[0]
    raw = PatchCoreHead(coreset=0.2, extractor=EXT).fit(train)
    ra, rb = raw.score_arrays([test[0].image, brighter])[0]
    assert abs(a - b) < 0.1 * abs(a) and abs(ra - rb) > abs(a - b)
    with pytest.raises(InputError, match="intensity"):
        PatchCoreHead(extractor={**EXT, "intensity": "bogus"}).extractor


def _blob_tile(rng: np.random.Generator, centre: tuple[int, int]) -> np.ndarray:
    """64x64 grey tile with a dark disc of radius 7 at `centre`, plus noise."""
    yy, xx = np.mgrid[:64, :64]
    img = np.full((64, 64, 3), 180.0)
    img[(yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= 49] = 60.0
    return np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)


def test_patchcore_position_weight_compares_patches_at_their_place(tmp_path):
    """A disc where normal tiles never have it: the patches look normal, the place does not."""
    rng = np.random.default_rng(0)
    near = lambda: tuple(int(v) for v in rng.integers(14, 24, 2))  # noqa: E731 (top-left quarter)
    train = [_blob_tile(rng, near()) for _ in range(16)]
    test = [_blob_tile(rng, near()) for _ in range(6)] + [_blob_tile(rng, (46, 46)) for _ in range(6)]
    y = np.array([0] * 6 + [1] * 6)
    ext = {"image_size": 64, "layers": [2, 4]}
    plain = PatchCoreHead(coreset=1.0, extractor=ext).fit(train)
    placed = PatchCoreHead(coreset=1.0, extractor=ext, position_weight=8.0).fit(train)
    assert placed.bank.shape[1] == plain.bank.shape[1] + 2
    s_plain, s_placed = plain.score_arrays(test)[0], placed.score_arrays(test)[0]
    assert auroc(y, s_placed) == 1.0

    def margin(sc: np.ndarray) -> float:  # lowest misplaced disc over highest normal tile
        return float(sc[y == 1].min() / sc[y == 0].max())

    assert margin(s_placed) > 1.5 * margin(s_plain)  # (CNN features see some of the place by themselves)
    f = placed.extractor.extract(test[:1])
    g = placed.with_position(f)
    rows, cols = np.mgrid[: f.shape[2], : f.shape[3]]
    np.testing.assert_array_equal(g[0, -2].numpy(), 8.0 * rows)
    np.testing.assert_array_equal(g[0, -1].numpy(), 8.0 * cols)
    assert torch.equal(g[:, :-2], f)
    placed.save(tmp_path / "m")
    again = PatchCoreHead.load(tmp_path / "m")
    assert again.config.position_weight == 8.0
    np.testing.assert_allclose(again.score_arrays(test)[0], s_placed, rtol=1e-5)
    with pytest.raises(InputError, match="position_weight"):
        PatchCoreHead(position_weight=-1.0)


def test_exposure_gains_let_normal_images_at_another_exposure_pass(data):
    from oddeye.image.common import apply_gain

    train, test = data[0], [s.image for s in data[1] if s.label == 0]
    defects = [s.image for s in data[1] if s.label == 1]
    plain = PatchCoreHead(extractor=EXT).fit(train)
    with_gains = PatchCoreHead(extractor=EXT, exposure_gains=(0.6,)).fit(train)
    darker = [apply_gain(im, 0.6) for im in test]
    assert plain.score(darker).sample_scores().min() > plain.threshold  # every darker normal tile is a false alarm
    assert with_gains.score(darker).sample_scores().max() < with_gains.threshold  # none is, with the gain learnt
    s = with_gains.score(test + defects).sample_scores()
    assert auroc([0] * len(test) + [1] * len(defects), s) >= 0.9  # defects still stand out


def test_apply_gain_and_check_gains():
    from oddeye.image.common import apply_gain, check_gains

    img = np.array([[0, 100, 200]], np.uint8)
    assert apply_gain(img, 1.5).tolist() == [[0, 150, 255]]
    assert apply_gain(img, 1.0) is img
    assert check_gains("0.8, 1.3,1.3,1") == (0.8, 1.3) and check_gains(None) == () and check_gains([2]) == (2.0,)
    for bad in ("0", "-1", "x", "nan", "11"):
        with pytest.raises(InputError, match="gain"):
            check_gains(bad)


def test_patchcore_coreset_fit_pools_each_pass_and_drops_it():
    import gc
    import weakref

    head = PatchCoreHead(extractor=EXT, coreset=1.0, max_pool=300, exposure_gains=(0.7, 1.3))
    alive = []

    def passes():
        for i in range(3):
            gc.collect()
            alive.append(sum(r() is not None for r in refs))
            t = torch.full((4, 5, 6, 6), float(i)) + 0.01 * torch.randn(4, 5, 6, 6)
            refs.append(weakref.ref(t))
            yield t

    refs: list = []
    head._fit_passes(passes())
    # 3 passes of 144 patches, a pool share of 100 each; every pass is in the bank
    assert head.bank.shape == (300, 5)
    assert sorted({round(float(v)) for v in head.bank[:, 0]}) == [0, 1, 2]
    assert alive[2] <= 1  # when the third pass is made, the first one is gone
    # one pass: the pool is the seeded draw it always was
    single = PatchCoreHead(extractor=EXT, coreset=1.0, max_pool=100)
    feats = torch.randn(4, 5, 6, 6)
    single._fit_features(feats)
    x = feats.permute(0, 2, 3, 1).reshape(-1, 5).numpy()
    expect = x[np.sort(np.random.default_rng(0).choice(144, size=100, replace=False))]
    assert np.array_equal(single.bank, expect)


def test_moment_sums_in_passes_equal_ledoit_wolf_of_all_samples():
    from oddeye.image.gaussian import MomentSums

    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.standard_normal((3, 90, 5)) @ rng.standard_normal((5, 5)) + 40.0)  # far from 0
    whole = ledoit_wolf(x)
    parts = MomentSums().add(x[:, :30]).add(x[:, 30:70]).add(x[:, 70:]).ledoit_wolf()
    for a, b in zip(whole, parts):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-9)
    with pytest.raises(InputError, match="do not match"):
        MomentSums().add(x).add(x[:2])


def test_gaussian_fit_streams_exposure_passes_like_one_fit(data):
    train = data[0][:12]
    head = GaussianHead(extractor=EXT, exposure_gains=(0.8,))
    items = as_items(train)
    passes = list(head.training_passes(items))
    head._fit_passes(iter(passes))
    ref = GaussianHead(extractor=EXT)
    ref._fit_features(torch.cat(passes))  # one pass of the same features
    assert torch.allclose(head.mean, ref.mean, atol=1e-5) and torch.allclose(head.prec, ref.prec, rtol=1e-3, atol=1e-3)
    with pytest.raises(InputError, match="at least 2"):
        GaussianHead(extractor=EXT)._fit_features(passes[0][:1])
