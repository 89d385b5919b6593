"""Image heads on generated data: separation, save/load round trips, bad inputs, CLI contract."""

from __future__ import annotations

import json

import numpy as np
import torch
import pytest

from contract_image import legacy_manifest
from image_support import EXT, image_data
from oddeye.core.errors import ConfigError, EmptyDataError, InputError, ModelError
from oddeye.core.head import RunContext, write_manifest
from oddeye.core.imageio import write_image
from oddeye.core.metrics import auroc
from oddeye.core.synth import make_image_set
from oddeye.image.common import ImageItem, as_items
from oddeye.image.gaussian import GaussianHead, ledoit_wolf
from oddeye.image.patchcore import PatchCoreHead
from oddeye.image.zeroshot import ZeroShotHead

@pytest.fixture(scope="module")
def data():
    return image_data()


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
    res = patchcore.score([tmp_path / "in"], ctx=RunContext(out=tmp_path / "out"))
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
    loaded.config = loaded.config.replace(extractor=loaded.config.extractor.replace(target_dim=64))
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
    assert doc["config"]["exposure_gains"] == [0.8, 1.2] and doc["config"]["retrieve"] == 3
    assert doc["config"]["extractor"]["image_size"] == 96
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


def test_cli_fit_no_bf16_fits_in_float32_on_any_cpu(tmp_path, monkeypatch):
    import oddeye.retrieval.features as features
    from oddeye.cli import main

    monkeypatch.setattr(features, "bf16_is_fast", lambda device="cpu": True)  # a CPU with native bf16
    cat = _mvtec_tree(tmp_path / "mvtec", np.random.default_rng(2))
    for i, (flag, want, stored) in enumerate((([], False, "auto"), (["--bf16"], True, True),
                                               (["--no-bf16"], False, False))):
        out = tmp_path / f"model{i}"
        assert main(["fit", "image", "--train", str(cat / "train" / "good"), "--out", str(out),
                     "--image-size", "64", "--coreset", "0.2", *flag]) == 0
        doc = json.loads((out / "oddeye_model.json").read_text())
        assert doc["fit_bf16"] is want and doc["config"]["extractor"]["bf16"] == stored


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


def test_load_scores_in_the_precision_the_model_was_fitted_with(data, tmp_path, monkeypatch):
    import oddeye.retrieval.features as features

    # fitted where bf16 is not native (whatever this machine is): the features are float32
    monkeypatch.setattr(features, "bf16_is_fast", lambda device="cpu": False)
    head = PatchCoreHead(coreset=0.2, extractor=EXT).fit(data[0][:8])
    head.save(tmp_path / "m")
    doc = json.loads((tmp_path / "m" / "oddeye_model.json").read_text())
    assert doc["fit_bf16"] is False and doc["config"]["extractor"]["bf16"] == "auto"
    # on a device with native bf16, asked-for bf16 is on; the model keeps the float32 it was fitted in
    monkeypatch.setattr(features, "bf16_is_fast", lambda device="cpu": True)
    assert features.build_extractor(**{**EXT, "bf16": True}).backbone.bf16 is True
    assert PatchCoreHead.load(tmp_path / "m").extractor.backbone.bf16 is False
    # a bf16-fitted model on a device without bf16 runs float32 and says what that costs
    monkeypatch.setattr(features, "bf16_is_fast", lambda device="cpu": False)
    doc["fit_bf16"] = True
    (tmp_path / "m" / "oddeye_model.json").write_text(json.dumps(doc))
    with pytest.warns(RuntimeWarning, match="fitted with bfloat16"):
        assert PatchCoreHead.load(tmp_path / "m").extractor.backbone.bf16 is False
    # ... and where it is native, in bf16; also from a manifest of the old layout (inside the extractor's settings)
    monkeypatch.setattr(features, "bf16_is_fast", lambda device="cpu": True)
    legacy_manifest(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "oddeye_model.json").read_text())["extractor"]["fit_bf16"] is True
    assert PatchCoreHead.load(tmp_path / "m").extractor.backbone.bf16 is True


@pytest.mark.parametrize("kind", ["patchcore", "gaussian", "zero-shot"])
def test_model_folder_of_the_old_layout_loads_and_scores_the_same(kind, data, patchcore, gaussian, tmp_path):
    """Folders written before the config (settings at the manifest's top level) load with the same settings."""
    head = {"patchcore": lambda: patchcore, "gaussian": lambda: gaussian,
            "zero-shot": lambda: ZeroShotHead(group_size=6, extractor=EXT).fit(data[0][:2])}[kind]()
    imgs = [s.image for s in data[1][:6]]
    head.save(tmp_path / "m")
    legacy_manifest(tmp_path / "m")
    doc = json.loads((tmp_path / "m" / "oddeye_model.json").read_text())
    assert "config" not in doc and doc["format_version"] == 1 and "image_size" in doc["extractor"]
    old = type(head).load(tmp_path / "m")
    want = head.config
    if kind == "patchcore":  # the old manifest kept the kind of the index it built ('auto' resolved)
        want = want.replace(index_kind=head.bank_kind)
    assert old.config == want and old.fit_bf16 == (None if kind == "zero-shot" else head.features_bf16())
    a, b = head.score(imgs), old.score(imgs)
    assert np.array_equal(a.sample_scores(), b.sample_scores())
    assert all(np.array_equal(x.maps["anomaly"].values, y.maps["anomaly"].values) for x, y in zip(a.scores, b.scores))


def test_old_model_without_score_sigma_keeps_the_raw_max(patchcore, tmp_path):
    patchcore.save(tmp_path / "m")
    legacy_manifest(tmp_path / "m", drop=("score_sigma",))  # written before --score-sigma: no smoothing
    assert PatchCoreHead.load(tmp_path / "m").config.score_sigma == 0.0


def test_config_and_constructor(patchcore):
    from oddeye.image.config import PatchCoreConfig

    cfg = PatchCoreConfig(coreset=0.3, extractor={"image_size": 64})
    assert cfg.extractor.image_size == 64 and cfg.extractor.name == "efficientnet-lite0"
    head = PatchCoreHead(cfg, border=2)
    assert head.config == cfg.replace(border=2) and PatchCoreHead(coreset=0.3).config.coreset == 0.3
    with pytest.raises(ConfigError, match="PatchCoreConfig.no_such"):
        PatchCoreHead(no_such=1)
    with pytest.raises(ConfigError, match="PatchCoreConfig.extractor.image_size"):
        PatchCoreHead(extractor={"image_size": 8})
    with pytest.raises(ConfigError, match="expected a GaussianConfig"):
        GaussianHead(cfg)
    assert patchcore.config.exposure_gains == ()
    assert PatchCoreConfig(exposure_gains=[1, 0.8, 0.8]).exposure_gains == (0.8,)


def test_run_context_shots_keep_maps_and_skip_bad(data, patchcore, tmp_path):
    few = PatchCoreHead(coreset=0.2, extractor=EXT).fit(data[0], ctx=RunContext(shots=5, progress=False))
    assert few.n_train == 5 and few.threshold is None  # 5 images: none held out
    imgs = [write_image(tmp_path / f"{i}.png", s.image) for i, s in enumerate(data[1][:4])]
    (tmp_path / "junk.png").write_bytes(b"not an image")
    inputs = [imgs[0], imgs[1], tmp_path / "junk.png", imgs[2], imgs[3]]
    with pytest.raises(InputError, match="junk.png"):
        patchcore.score(inputs)
    res = patchcore.score(inputs, ctx=RunContext(skip_bad=True, keep_maps=False, progress=False))
    assert [s.sample_id for s in res.errors()] == ["junk"] and "junk.png" in res.errors()[0].meta["path"]
    good = [s for s in res.scores if "error" not in s.meta]
    assert len(good) == 4 and all(not s.maps for s in good)
    assert np.array_equal([s.score for s in good], patchcore.score(imgs).sample_scores())
    zs = ZeroShotHead(group_size=3, extractor=EXT).score(inputs, ctx=RunContext(skip_bad=True, progress=False))
    assert [s.sample_id for s in zs.errors()] == ["junk"] and np.isfinite([s.score for s in zs.scores[:4]]).all()
    with pytest.raises(InputError, match="junk.png"):
        ZeroShotHead(group_size=3, extractor=EXT).score(inputs)


def _forged_png(path, width: int = 100_000, height: int = 100_000):
    """A tiny PNG whose header (IHDR) claims width x height pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


def test_image_header_claiming_a_huge_size_is_a_clear_error(tmp_path):
    from oddeye.core.imageio import MAX_PIXELS, check_image, read_image

    huge = _forged_png(tmp_path / "huge.png")
    for fn in (read_image, check_image):
        with pytest.raises(InputError, match=r"huge\.png.*header claims"):
            fn(huge)
    side = int(MAX_PIXELS ** 0.5) + 10  # above oddeye's limit, below Pillow's: the size is named
    with pytest.raises(InputError, match=f"{side}x{side} pixels"):
        read_image(_forged_png(tmp_path / "big.png", side, side))
    assert check_image(write_image(tmp_path / "ok.png", np.zeros((7, 9, 3), np.uint8))) == (7, 9)


def test_cli_score_huge_header_refused_or_skipped(patchcore, data, tmp_path, capsys):
    from oddeye.cli import main

    patchcore.save(tmp_path / "model")
    for i, s in enumerate(data[1][:3]):
        write_image(tmp_path / "in" / f"{i}.png", s.image)
    _forged_png(tmp_path / "in" / "huge.png")
    capsys.readouterr()
    assert main(["score", "image", str(tmp_path / "model"), str(tmp_path / "in"), "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "huge.png" in err and "header claims" in err and "Traceback" not in err
    assert not (tmp_path / "a" / "result.json").exists()  # refused before scoring: nothing written
    assert main(["score", "image", str(tmp_path / "model"), str(tmp_path / "in"), "--out", str(tmp_path / "b"),
                 "--skip-bad"]) == 0
    assert "skipped" in capsys.readouterr().err
    doc = json.loads((tmp_path / "b" / "result.json").read_text())
    bad = [s for s in doc["scores"] if "error" in s["meta"]]
    assert [s["sample_id"] for s in bad] == ["huge"] and "header claims" in bad[0]["meta"]["error"]
    assert sum(s["score"] is not None for s in doc["scores"]) == 3


def test_cli_refuses_other_heads_models_and_options(patchcore, tmp_path, capsys):
    from oddeye.cli import main

    write_manifest(tmp_path / "video", "video-prediction")
    img = write_image(tmp_path / "a.png", np.zeros((32, 32, 3), np.uint8))
    capsys.readouterr()
    assert main(["score", "image", str(tmp_path / "video"), str(img)]) == 2
    assert "`oddeye score video`" in capsys.readouterr().err
    assert main(["fit", "image", "--train", str(img), "--out", str(tmp_path / "m"), "--head", "gaussian",
                 "--coreset", "0.2"]) == 2
    assert "--coreset does not apply to the gaussian head" in capsys.readouterr().err
    assert main(["fit", "image", "--train", str(tmp_path / "nope"), "--out", str(tmp_path / "m")]) == 2
