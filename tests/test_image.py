"""Image heads on generated data: separation, save/load round trips, bad inputs, CLI contract."""

from __future__ import annotations

import json

import numpy as np
import torch
import pytest

from oddeye.core.errors import EmptyDataError, InputError, ModelError
from oddeye.core.imageio import write_image
from oddeye.core.metrics import auroc
from oddeye.core.synth import make_image_set
from oddeye.image.common import ImageItem, as_items
from oddeye.image.gaussian import GaussianHead, ledoit_wolf
from oddeye.image.patchcore import PatchCoreHead
from oddeye.image.zeroshot import ZeroShotHead

EXT = {"image_size": 96}


@pytest.fixture(scope="module")
def data():
    train = [s.image for s in make_image_set(seed=1, n_normal=20, n_defect=0)]
    test = make_image_set(seed=2, n_normal=8, n_defect=8)
    return train, test


@pytest.fixture(scope="module")
def patchcore(data):
    return PatchCoreHead(coreset=0.2, extractor=EXT).fit(data[0])


@pytest.fixture(scope="module")
def gaussian(data):
    return GaussianHead(extractor=EXT).fit(data[0])


def _auc(result, test) -> float:
    return auroc([s.label for s in test], result.sample_scores())


def test_patchcore_separates_defects(patchcore, data):
    res = patchcore.score([s.image for s in data[1]])
    assert _auc(res, data[1]) >= 0.9
    assert patchcore.threshold is not None and len(patchcore.bank) < 20 * 12 * 12
    amap = res.scores[0].maps["anomaly"].values
    assert amap.shape == data[1][0].image.shape[:2]
    defect = next(i for i, s in enumerate(data[1]) if s.label and s.mask.sum() > 20)
    m = res.scores[defect].maps["anomaly"].values
    assert m[data[1][defect].mask].mean() > m[~data[1][defect].mask].mean()


def test_gaussian_separates_defects(data, gaussian):
    assert _auc(gaussian.score([s.image for s in data[1]]), data[1]) >= 0.85
    glob = GaussianHead(mode="global", extractor=EXT).fit(data[0])
    assert _auc(glob.score([s.image for s in data[1]]), data[1]) >= 0.8


def test_zero_shot_separates_defects(data):
    imgs = [s.image for s in data[1]]
    res = ZeroShotHead(group_size=16, extractor=EXT).score(imgs)
    assert _auc(res, data[1]) >= 0.8
    with pytest.raises(InputError, match="at least 2 images"):
        ZeroShotHead(extractor=EXT).score(imgs[:1])


def test_ledoit_wolf_matches_reference():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 6)) @ rng.standard_normal((6, 6))
    import torch

    _, cov, shrink = ledoit_wolf(torch.from_numpy(x)[None])
    xc = x - x.mean(0)
    emp = xc.T @ xc / len(x)
    mu = np.trace(emp) / 6
    assert 0.0 < float(shrink[0]) < 1.0
    expect = (1 - float(shrink[0])) * emp + float(shrink[0]) * mu * np.eye(6)
    assert np.allclose(cov[0].numpy(), expect)
    sk = pytest.importorskip("sklearn.covariance", reason="scikit-learn (dev extra) gives the reference values")
    ref_cov, ref_shrink = sk.ledoit_wolf(x)
    assert abs(float(shrink[0]) - ref_shrink) < 1e-9 and np.allclose(cov[0].numpy(), ref_cov)


@pytest.mark.parametrize("kind", ["patchcore", "gaussian", "zero-shot"])
def test_save_load_round_trip(kind, data, patchcore, gaussian, tmp_path):
    imgs = [s.image for s in data[1][:6]]
    head = {"patchcore": lambda: patchcore, "gaussian": lambda: gaussian,
            "zero-shot": lambda: ZeroShotHead(group_size=6, extractor=EXT).fit(data[0][:2])}[kind]()
    before = head.score(imgs).sample_scores()
    head.save(tmp_path / kind)
    loaded = type(head).load(tmp_path / kind)
    assert np.array_equal(before, loaded.score(imgs).sample_scores())
    other = PatchCoreHead if kind != "patchcore" else GaussianHead
    with pytest.raises(ModelError, match=f"'{kind}' model"):
        other.load(tmp_path / kind)


def test_odd_images_from_files(patchcore, tmp_path):
    rng = np.random.default_rng(5)
    files = {"gray.png": rng.integers(0, 255, (77, 55), dtype=np.uint8),
             "rgba.png": rng.integers(0, 255, (40, 91, 4), dtype=np.uint8),
             "deep.png": rng.integers(0, 65535, (64, 64), dtype=np.uint16),
             "odd.jpg": rng.integers(0, 255, (33, 129, 3), dtype=np.uint8)}
    for name, img in files.items():
        p = tmp_path / "in" / name
        p.parent.mkdir(exist_ok=True)
        if img.dtype == np.uint16:
            import cv2

            cv2.imwrite(str(p), img)
        else:
            write_image(p, img)
    res = patchcore.score([tmp_path / "in"], out=tmp_path / "out")
    assert len(res.scores) == 4 and np.isfinite(res.sample_scores()).all()
    shapes = {s.sample_id: s.maps["anomaly"].values.shape for s in res.scores}
    assert shapes["gray"] == (77, 55) and shapes["odd"] == (33, 129)
    assert all((tmp_path / "out" / "overlays" / f"{k}.png").is_file() for k in shapes)


def test_bad_inputs(patchcore, tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty.png"):
        patchcore.score([empty])
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"definitely not an image")
    with pytest.raises(InputError, match="junk.png"):
        patchcore.score([junk])
    (tmp_path / "nothing").mkdir()
    with pytest.raises(EmptyDataError, match="nothing"):
        PatchCoreHead(extractor=EXT).fit([tmp_path / "nothing"])
    with pytest.raises(EmptyDataError, match="training set"):
        GaussianHead(extractor=EXT).fit([])
    with pytest.raises(InputError, match="coreset"):
        PatchCoreHead(coreset=0.0)


def test_mask_of_another_size(tmp_path):
    img = tmp_path / "a.png"
    write_image(img, np.zeros((40, 50, 3), np.uint8))
    mask = tmp_path / "a_mask.png"
    write_image(mask, np.zeros((41, 50), np.uint8))
    item = ImageItem(id="a", path=str(img), label=1, mask_path=str(mask))
    with pytest.raises(InputError, match="a_mask.png"):
        item.load_mask(item.load().shape[:2])


def test_feature_dim_mismatch(patchcore, tmp_path):
    patchcore.save(tmp_path / "m")
    loaded = PatchCoreHead.load(tmp_path / "m")
    loaded.extractor_cfg = {**loaded.extractor_cfg, "target_dim": 64}
    with pytest.raises(InputError, match="dimension 64"):
        loaded.score([np.zeros((96, 96, 3), np.uint8)])


def test_items_from_samples_dedupe(tmp_path):
    for d in ("x", "y"):
        write_image(tmp_path / d / "000.png", np.zeros((8, 8, 3), np.uint8))
    items = as_items([tmp_path / "x", tmp_path / "y"])
    assert len({it.id for it in items}) == 2


def _mvtec_tree(root, rng):
    cat = root / "thing"
    for i in range(12):
        write_image(cat / "train" / "good" / f"{i:03d}.png", make_image_set(seed=10 + i, n_normal=1, n_defect=0)[0].image)
    defects = make_image_set(seed=30, n_normal=4, n_defect=4)
    for i, s in enumerate(defects):
        sub = "crack" if s.label else "good"
        write_image(cat / "test" / sub / f"{i:03d}.png", s.image)
        if s.label:
            write_image(cat / "ground_truth" / sub / f"{i:03d}_mask.png", s.mask.astype(np.uint8) * 255)
    return cat


def test_cli_fit_score_eval(tmp_path, capsys):
    from oddeye.cli import main

    cat = _mvtec_tree(tmp_path / "mvtec", np.random.default_rng(0))
    assert main(["fit", "image", "--train", str(cat / "train" / "good"), "--out", str(tmp_path / "model"),
                 "--image-size", "96", "--coreset", "0.2", "--exposure-gains", "0.8,1.2", "--retrieve", "3"]) == 0
    doc = json.loads((tmp_path / "model" / "oddeye_model.json").read_text())
    assert doc["exposure_gains"] == [0.8, 1.2] and doc["retrieve"] == 3
    assert main(["fit", "image", "--train", str(cat / "train" / "good"), "--out", str(tmp_path / "bad"),
                 "--exposure-gains", "0.8,x"]) == 2
    assert main(["score", "image", str(tmp_path / "model"), str(cat / "test" / "crack"), "--out",
                 str(tmp_path / "res")]) == 0
    assert (tmp_path / "res" / "result.json").is_file() and (tmp_path / "res" / "store.db").is_file()
    capsys.readouterr()
    assert main(["eval", "image", "--dataset", "mvtec", "--root", str(tmp_path / "mvtec"), "--category", "thing",
                 "--head", "patchcore", "--image-size", "96", "--out", str(tmp_path / "ev")]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    doc = json.loads(last)
    for key in ("image_auroc", "pixel_auroc", "aupro", "aupimo", "f1_max", "images_per_s", "dataset", "n_samples"):
        assert key in doc
    assert doc["n_samples"] == 8 and doc["image_auroc"] >= 0.75
    assert main(["score", "image", str(tmp_path / "nope"), str(cat)]) == 2


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


def test_cli_score_compile_flag(tmp_path, monkeypatch):
    from oddeye.cli import main

    cat = _mvtec_tree(tmp_path / "mvtec", np.random.default_rng(1))
    assert main(["fit", "image", "--train", str(cat / "train" / "good"), "--out", str(tmp_path / "model"),
                 "--image-size", "64", "--coreset", "0.2"]) == 0
    calls = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: calls.append(kw) or fn)  # the real one is tested in test_features
    runs = {}
    for name, extra in (("plain", []), ("compiled", ["--compile"])):
        assert main(["score", "image", str(tmp_path / "model"), str(cat / "test" / "crack"), str(cat / "test" / "good"),
                     "--out", str(tmp_path / name),
                     *extra]) == 0
        doc = json.loads((tmp_path / name / "result.json").read_text())
        runs[name] = sorted((s["sample_id"], s["score"]) for s in doc["scores"])
    assert calls and calls[0]["dynamic"] is False
    assert [a for a, _ in runs["plain"]] == [a for a, _ in runs["compiled"]]
    assert np.allclose([b for _, b in runs["plain"]], [b for _, b in runs["compiled"]], atol=1e-5)


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
    assert again.position_weight == 8.0
    np.testing.assert_allclose(again.score_arrays(test)[0], s_placed, rtol=1e-5)
    with pytest.raises(InputError, match="position_weight"):
        PatchCoreHead(position_weight=-1.0)


def test_load_scores_in_the_precision_the_model_was_fitted_with(patchcore, tmp_path, monkeypatch):
    import oddeye.retrieval.features as features

    patchcore.save(tmp_path / "m")
    doc = json.loads((tmp_path / "m" / "oddeye_model.json").read_text())
    assert doc["extractor"]["fit_bf16"] is False  # fitted on this float32 CPU
    # on a device with native bf16, 'auto' would switch bf16 on; the model keeps the float32 it was fitted in
    monkeypatch.setattr(features, "bf16_is_fast", lambda device="cpu": True)
    assert features.build_extractor(**EXT).backbone.bf16 is True
    assert PatchCoreHead.load(tmp_path / "m").extractor.backbone.bf16 is False
    # a bf16-fitted model on a device without bf16 runs float32 and says what that costs
    monkeypatch.setattr(features, "bf16_is_fast", lambda device="cpu": False)
    doc["extractor"]["fit_bf16"] = True
    (tmp_path / "m" / "oddeye_model.json").write_text(json.dumps(doc))
    with pytest.warns(RuntimeWarning, match="fitted with bfloat16"):
        assert PatchCoreHead.load(tmp_path / "m").extractor.backbone.bf16 is False


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
