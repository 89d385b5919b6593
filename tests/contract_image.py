"""Contract cases of the image heads (see tests/test_contract.py): 64 px images from oddeye.core.synth; and
`legacy_manifest`, which turns a model folder into the layout of the oddeye before the config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from contract_support import ContractCase
from oddeye.core.head import MANIFEST
from oddeye.core.imageio import write_image
from oddeye.core.synth import make_image_set
from oddeye.image.gaussian import GaussianHead
from oddeye.image.patchcore import PatchCoreHead
from oddeye.image.zeroshot import ZeroShotHead

EXT = {"image_size": 64}


def _train(folder: Path) -> list[Any]:
    """12 normal images as arrays (one is held out for the threshold)."""
    return [s.image for s in make_image_set(seed=1, n_normal=12, n_defect=0)]


def _test(folder: Path) -> list[Any]:
    """3 normal and 3 defective images, written as PNG files (scored from paths, as the CLI does)."""
    paths = []
    for i, s in enumerate(make_image_set(seed=2, n_normal=3, n_defect=3)):
        paths.append(write_image(folder / "test" / f"{i:02d}_{s.label}.png", s.image))
    return paths


CASES: list[ContractCase] = [
    ContractCase(head="patchcore", make=lambda: PatchCoreHead(coreset=0.2, border=1, extractor=EXT),
                 train=_train, test=_test, bad=("coreset", 1.5)),
    ContractCase(head="gaussian", make=lambda: GaussianHead(exposure_gains=(0.8,), extractor=EXT),
                 train=_train, test=_test, bad=("mode", "diagonal")),
    ContractCase(head="zero-shot", make=lambda: ZeroShotHead(group_size=4, max_refs=2, extractor=EXT),
                 train=_train, test=_test, bad=("group_size", 1)),
]


def legacy_manifest(model: Path, drop: tuple[str, ...] = ()) -> None:
    """Rewrite the manifest of the image model folder `model` as oddeye wrote it before the config (format 1):
    settings at the top level, the fitted precision inside the extractor's; `drop`: settings it did not write yet."""
    path = model / MANIFEST
    doc = json.loads(path.read_text())
    cfg, fit_bf16 = doc.pop("config"), doc.pop("fit_bf16")
    ext = {k: cfg["extractor"][k] for k in ("name", "image_size", "layers", "target_dim", "patch_size", "bf16",
                                             "channels_last", "intensity")}
    if fit_bf16 is not None and doc["head"] != "zero-shot":  # zero-shot never recorded it
        ext["fit_bf16"] = fit_bf16
    del cfg["extractor"]
    old = {**doc, "format_version": 1, "extractor": ext, **cfg}
    if "bank_index" in old:  # PatchCore kept the kind of its built index there
        old["index_kind"] = old.pop("bank_index")
    for k in drop:
        del old[k]
    path.write_text(json.dumps(old))
