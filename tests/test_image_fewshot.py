"""Few-shot image fits: with `--shots K` (K <= 16) the image heads also learn from the flipped and turned views of
the K normal images (config.augment auto -> dihedral), so a normal part seen from another side is not an anomaly."""

from __future__ import annotations

import numpy as np
import pytest

from oddeye.core.head import RunContext
from oddeye.image.common import augment_views, view_of


def _striped(seed: int, size: int = 64) -> np.ndarray:
    """A texture with a direction: diagonal stripes growing brighter to the right, a dark corner, noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size]
    img = 90 + 60 * np.sin((x + 2 * y) / 3.0) + 1.2 * x
    img[: size // 4, : size // 4] = 20
    img = img + rng.normal(0, 4, img.shape)
    return np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def test_views_flip_and_turn_as_named():
    img = np.arange(6 * 4 * 3, dtype=np.uint8).reshape(6, 4, 3)
    assert np.array_equal(view_of(img, "h"), img[:, ::-1]) and np.array_equal(view_of(img, "v"), img[::-1])
    assert view_of(img, "t").shape == (4, 6, 3) and np.array_equal(view_of(img, "t")[1, 2], img[2, 1])
    views = {view_of(img, v).tobytes() + bytes(view_of(img, v).shape) for v in augment_views("dihedral", None)}
    assert len(views) == 8, "the eight views of an asymmetric image all differ"
    assert augment_views("auto", 4) == augment_views("dihedral", None) and augment_views("auto", 16)[0] == ""
    assert augment_views("auto", None) == ("",) and augment_views("auto", 17) == ("",)
    assert augment_views("flips", None) == ("", "h", "v", "hv")


@pytest.mark.parametrize("head", ["patchcore", "gaussian"])
def test_a_few_shot_fit_learns_the_views_of_its_shots(head):
    from oddeye.image.evaluate import make_head

    shots = [_striped(s) for s in range(2)]
    turned = [view_of(_striped(s + 10), "thv") for s in range(2)]  # normal parts, seen from another side
    settings = {"extractor": {"image_size": 64}, "coreset": 1.0} if head == "patchcore" else {
        "extractor": {"image_size": 64}}
    plain = make_head(head, augment="none", **settings).fit(shots, ctx=RunContext(shots=2, progress=False))
    auto = make_head(head, **settings).fit(shots, ctx=RunContext(shots=2, progress=False))
    ctx = RunContext(progress=False, keep_maps=False)
    s_plain = plain.score(turned, ctx=ctx).sample_scores()
    s_auto = auto.score(turned, ctx=ctx).sample_scores()
    assert np.all(s_auto < 0.7 * s_plain), (s_auto, s_plain)
    same = [_striped(s + 20) for s in range(2)]  # the shots' own side still scores as low as before
    assert np.all(auto.score(same, ctx=ctx).sample_scores() <= 1.2 * plain.score(same, ctx=ctx).sample_scores())


def test_fit_image_shots_from_the_command_line(tmp_path):
    from oddeye.cli import main
    from oddeye.core.head import load_head
    from oddeye.core.imageio import write_image

    train = tmp_path / "train"
    for s in range(4):
        write_image(train / f"{s}.png", _striped(s))
    turned = [view_of(_striped(10), "thv")]
    scores = {}
    for name, extra in (("auto", []), ("none", ["--augment", "none"])):
        out = tmp_path / name
        assert main(["fit", "image", "--train", str(train), "--out", str(out), "--shots", "2", "--image-size", "64",
                     "--coreset", "1.0", *extra]) == 0
        model = load_head(out)
        assert model.n_train == 2 and model.config.augment == name
        scores[name] = model.score(turned, ctx=RunContext(progress=False, keep_maps=False)).sample_scores()[0]
    assert scores["auto"] < 0.7 * scores["none"]
    assert main(["fit", "image", "--train", str(train), "--out", str(tmp_path / "x"), "--shots", "1", "--auto"]) == 2
    assert main(["fit", "image", "--head", "zero-shot", "--train", str(train), "--out", str(tmp_path / "z"),
                 "--augment", "flips"]) == 2


def test_fit_image_shots_auto_validates_on_half_the_shots_in_their_views(tmp_path, monkeypatch):
    from oddeye.cli import main
    from oddeye.core.auto import SearchSpace
    from oddeye.core.head import load_head, read_manifest
    from oddeye.core.imageio import write_image
    from oddeye.image.search import SPACES

    train = tmp_path / "train"
    for s in range(6):
        write_image(train / f"{s}.png", _striped(s))
    # without the views a turned normal shot looks anomalous: the validation, made of the views, must say so
    monkeypatch.setitem(SPACES, "patchcore", SearchSpace("patchcore", [{"augment": "none"}, {}]))
    out = tmp_path / "m"
    assert main(["fit", "image", "--train", str(train), "--out", str(out), "--shots", "4", "--image-size", "64",
                 "--coreset", "1.0", "--auto"]) == 0
    auto = read_manifest(out)["auto"]
    assert auto["shots"] == 4 and auto["val_views"] == 8 and auto["n_fit"] == 2 and auto["n_final"] == 4
    assert auto["n_val_normal"] == 2 * 8, "the 2 validation shots in their 8 views"
    assert auto["trials"][0]["auroc"] < auto["trials"][1]["auroc"] and auto["chosen_settings"] == {}
    model = load_head(out)
    assert model.n_train == 4 and model.config.augment == "auto", "the choice fitted on all 4 shots, with views"
