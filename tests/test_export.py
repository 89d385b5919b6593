"""oddeye export: image heads (PatchCore, --retrieve, Gaussian) match `oddeye score image` through the torch-free
runtime; the manifest; `oddeye bench export`; refusals (head not exportable, wrong input, corrupted file)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from oddeye.cli import main as cli_main
from oddeye.core.errors import InputError, ModelError
from oddeye.core.head import MANIFEST, RunContext, load_head
from oddeye.core.imageio import write_image
from oddeye.core.synth import make_image_set
from oddeye.export.api import export_model
from oddeye.image.gaussian import GaussianHead
from oddeye.image.patchcore import PatchCoreHead
from oddeye.image.zeroshot import ZeroShotHead
from oddeye.runtime.image import ImageModel
from oddeye.runtime.manifest import MANIFEST as EXPORT_MANIFEST
from oddeye.runtime.manifest import read_export

TOL = 1e-3
EXT = {"image_size": 64, "bf16": False}  # exports compute float32 features: fit in float32 to compare
HEADS = {
    "patchcore": lambda: PatchCoreHead(coreset=0.2, border=1, position_weight=1.0, extractor=EXT),
    "retrieve": lambda: PatchCoreHead(retrieve=3, retrieve_patches=8, border=1, extractor=EXT),
    "gaussian": lambda: GaussianHead(border=1, extractor={**EXT, "intensity": "standardize", "target_dim": 50}),
}


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> tuple[list[np.ndarray], Path]:
    """12 normal training arrays; a folder of 2 normal and 2 defective test PNGs (good/ and bad/), of odd sizes."""
    root = tmp_path_factory.mktemp("images")
    train = [s.image for s in make_image_set(seed=1, n_normal=12, n_defect=0)]
    for i, s in enumerate(make_image_set(seed=2, n_normal=2, n_defect=2, size=(72, 90))):
        write_image(root / ("good" if s.label == 0 else "bad") / f"{i}.png", s.image)
    return train, root


@pytest.fixture(scope="module")
def exported(images, tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """(model folder, ONNX export folder) per head."""
    train, _ = images
    root = tmp_path_factory.mktemp("models")
    out = {}
    for name, make in HEADS.items():
        make().fit(train, ctx=RunContext(progress=False)).save(root / name)
        export_model(root / name, root / f"{name}_onnx")
        out[name] = (root / name, root / f"{name}_onnx")
    return out


@pytest.mark.parametrize("name", list(HEADS))
def test_export_matches_score_image(exported, images, name):
    model_dir, export_dir = exported[name]
    files = sorted(images[1].rglob("*.png"))
    want = load_head(model_dir).score(files, ctx=RunContext(progress=False))
    got = list(ImageModel(export_dir).score_files(files))
    a, b = np.array([s.score for s in want.scores]), np.array([g[1] for g in got])
    assert np.abs(a - b).max() <= TOL * np.abs(a).max()
    for s, (_, _, amap) in zip(want.scores, got):
        ref = s.maps["anomaly"].values
        assert amap.shape == ref.shape == (72, 90)
        assert np.abs(ref - amap).max() <= TOL * np.abs(ref).max()


def test_manifest_spells_out_inputs_outputs_threshold(exported):
    model_dir, export_dir = exported["patchcore"]
    _, doc = read_export(export_dir)
    head = load_head(model_dir)
    from oddeye import __version__

    assert doc["head"] == "patchcore" and doc["backend"] == "onnx" and doc["oddeye_version"] == __version__
    assert doc["inputs"] == [{"name": "images", "shape": ["batch", 64, 64, 3], "dtype": "uint8", "layout": "NHWC, RGB",
                              "preprocessing_hint": doc["inputs"][0]["preprocessing_hint"]}]
    assert "INTER_AREA" in doc["preprocessing"]["resize"]["interpolation"]
    assert "(x - 255 * [" in doc["preprocessing"]["in_graph"]
    assert [o["name"] for o in doc["outputs"]] == ["image_score", "pixel_map"]
    assert doc["outputs"][1]["shape"] == ["batch", 64, 64]
    assert doc["threshold"] == pytest.approx(head.threshold) and doc["files"] == {"model": "model.onnx"}
    assert doc["size_bytes"] == (export_dir / "model.onnx").stat().st_size


def test_bench_export_cli(exported, images, capsys):
    model_dir, export_dir = exported["gaussian"]
    assert cli_main(["bench", "export", str(model_dir), "--data", str(images[1]), "--export", str(export_dir)]) == 0
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"max_abs_diff", "max_rel_diff", "auroc_original", "auroc_export", "images_per_s_original",
            "images_per_s_export", "speed_ratio"} <= set(doc)
    assert doc["max_rel_diff"] <= TOL and doc["n_images"] == 4
    assert doc["auroc_export"] == pytest.approx(doc["auroc_original"])  # good/ = 0, bad/ = 1
    assert doc["speed_ratio"] == pytest.approx(doc["images_per_s_export"] / doc["images_per_s_original"])


def test_export_cli_and_runtime_without_torch(exported, images, tmp_path):
    """`oddeye export` writes the folder; `python -m oddeye.runtime` scores in a process that never imports torch."""
    model_dir, _ = exported["patchcore"]
    assert cli_main(["export", str(model_dir), "--out", str(tmp_path / "x"), "--format", "onnx"]) == 0
    probe = ("import runpy, sys\n"
             f"sys.argv = ['oddeye.runtime', {str(tmp_path / 'x' / 'model.onnx')!r}, {str(images[1])!r} + '/bad', "
             f"'--out', {str(tmp_path / 'run')!r}]\n"
             "try:\n    runpy.run_module('oddeye.runtime', run_name='__main__')\nexcept SystemExit as e:\n"
             "    assert not e.code, e.code\n"
             "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
             "assert not bad, bad[:5]\nprint('torch-free')\n")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().endswith("torch-free")
    doc = json.loads((tmp_path / "run" / "scores.json").read_text())
    assert len(doc["results"]) == 2 and all(Path(r["map"]).is_file() for r in doc["results"])
    want = load_head(model_dir).score(sorted((images[1] / "bad").glob("*.png")), ctx=RunContext(progress=False))
    assert [r["score"] for r in doc["results"]] == pytest.approx([s.score for s in want.scores], rel=TOL)


def test_not_exportable_head_is_named(images, tmp_path):
    ZeroShotHead(group_size=2, max_refs=1, extractor=EXT).fit(images[0][:4]).save(tmp_path / "zs")
    with pytest.raises(ModelError, match=r"'zero-shot' model, which cannot be exported") as e:
        export_model(tmp_path / "zs", tmp_path / "out")
    assert "patchcore, gaussian, video-prediction, pointcloud" in e.value.hint
    assert cli_main(["export", str(tmp_path / "zs"), "--out", str(tmp_path / "out")]) == 2
    with pytest.raises(InputError, match="--format 'tensorrt'"):
        export_model(tmp_path / "zs", tmp_path / "out", "tensorrt")


def test_wrong_input_names_the_expected_one(exported):
    model = ImageModel(exported["patchcore"][1])
    with pytest.raises(InputError, match=r"got float32 \(1, 64, 64, 3\), expected images: uint8 \(batch, 64, 64, 3\)"):
        model.run(np.zeros((1, 64, 64, 3), np.float32))
    with pytest.raises(InputError, match=r"got uint8 \(1, 32, 32, 3\), expected images: uint8 \(batch, 64, 64, 3\)"):
        model.run(np.zeros((1, 32, 32, 3), np.uint8))
    with pytest.raises(InputError, match=r"image of shape \(5,\)"):
        model.score_arrays([np.zeros(5, np.uint8)])


def test_corrupted_export_is_refused_naming_the_file(exported, tmp_path):
    import shutil

    src = exported["gaussian"][1]
    bad = shutil.copytree(src, tmp_path / "bad")
    blob = bytearray((bad / "model.onnx").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (bad / "model.onnx").write_bytes(bytes(blob))
    with pytest.raises(ModelError, match=r"model\.onnx is corrupt: its checksum differs"):
        ImageModel(bad)
    (bad / "model.onnx").write_bytes(b"not an onnx file")  # a file that no checksum vouches for: the parser refuses
    doc = json.loads((bad / EXPORT_MANIFEST).read_text())
    doc["sha256"] = {}
    (bad / EXPORT_MANIFEST).write_text(json.dumps(doc))
    with pytest.raises(ModelError, match=r"model\.onnx is corrupt or not an ONNX model"):
        ImageModel(bad)
    (bad / EXPORT_MANIFEST).write_text("{not json")
    with pytest.raises(ModelError, match=r"oddeye_export\.json is corrupt"):
        ImageModel(bad / "model.onnx")
    assert subprocess.run([sys.executable, "-m", "oddeye.runtime", str(bad), str(tmp_path)], capture_output=True,
                          text=True, timeout=60).stderr.startswith(f"error: export manifest {bad / EXPORT_MANIFEST}")


def test_bf16_model_is_exported_with_a_warning(exported, tmp_path):
    import shutil

    model = shutil.copytree(exported["gaussian"][0], tmp_path / "bf16")
    doc = json.loads((model / MANIFEST).read_text())
    doc["fit_bf16"] = True
    (model / MANIFEST).write_text(json.dumps(doc))
    with pytest.warns(RuntimeWarning, match="fitted with bfloat16 features"):
        man = export_model(model, tmp_path / "x")
    assert "bfloat16" in json.loads(man.read_text())["notes"][0]


def test_bank_nearest_is_the_exact_search_over_blocks():
    import torch

    from oddeye.export.graph import Bank

    rng = np.random.default_rng(3)
    bank, q = rng.standard_normal((1000, 16)).astype(np.float32), rng.standard_normal((50, 16)).astype(np.float32)
    d2 = ((q[:, None, :] - bank[None]) ** 2).sum(-1)
    b = Bank(bank, chunk=300)  # 4 blocks, the last one short
    np.testing.assert_allclose(b.nearest(torch.from_numpy(q)).numpy(), d2.min(1), rtol=1e-4, atol=1e-4)
    near = b.nearest_k(torch.from_numpy(q), 3).numpy()
    np.testing.assert_array_equal(near, np.argsort(d2, 1)[:, :3])
    np.testing.assert_allclose(b.rows(torch.from_numpy(near[:, 0])).numpy(), bank[near[:, 0]])


def test_streams_keep_the_order_and_the_numbers(exported, images):
    _, export_dir = exported["patchcore"]
    files = sorted(images[1].rglob("*.png")) * 3  # 12 images in 6 batches of 2: several in flight at once
    one, three = ImageModel(export_dir, threads=1, streams=1), ImageModel(export_dir, threads=3)
    one.batch_size = three.batch_size = 2
    assert three.session.streams == 3
    want, got = list(one.score_files(files)), list(three.score_files(files))
    assert [p for p, _, _ in got] == files
    for (_, s1, m1), (_, s3, m3) in zip(want, got):
        assert s1 == s3 and np.array_equal(m1, m3)
