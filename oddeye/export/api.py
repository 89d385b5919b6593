"""`export_model(model_dir, out, fmt)`: a fitted model folder -> an export folder (model.onnx, or model.xml + .bin
for OpenVINO) with its manifest (oddeye_export.json): inputs, preprocessing, outputs, threshold, oddeye version."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from oddeye import __version__
from oddeye.core.errors import InputError, ModelError, require_out_dir
from oddeye.core.head import load_head, read_manifest
from oddeye.core.types import to_jsonable
from oddeye.export.graph import to_onnx
from oddeye.runtime.manifest import FORMAT, FORMAT_VERSION, MANIFEST, sha256
from oddeye.runtime.session import BACKENDS

# head -> what its export holds
EXPORTABLE = {
    "patchcore": "backbone + memory bank -> image score and pixel map (global bank or --retrieve)",
    "gaussian": "backbone + per-location means and precisions -> image score and pixel map",
    "video-prediction": "generator + frame-score arithmetic on one clip window -> frame score and error map",
    "pointcloud": "the learned feature adapter (FPFH stays outside the graph)",
}
NOT_EXPORTABLE = {
    "zero-shot": "it scores test images against each other, so there is nothing fitted to export",
    "video-rules": "it runs rules and language-model backends, not a graph",
    "patrol": "it aligns a query run to a reference run, not a graph",
}
CHECK_TOLERANCE = 1e-3  # the traced graph must reproduce its PyTorch module on the example within this (relative)


def supported() -> str:
    """The heads `oddeye export` takes, for messages."""
    return ", ".join(EXPORTABLE)


def check_exportable(model_dir: str | Path) -> str:
    """The head of `model_dir` if it can be exported; else a ModelError naming the head and what is supported."""
    head = read_manifest(model_dir)["head"]
    if head not in EXPORTABLE:
        why = NOT_EXPORTABLE.get(head, "this oddeye has no exporter for it")
        raise ModelError(f"{model_dir} holds a '{head}' model, which cannot be exported: {why}",
                         f"oddeye export supports {supported()} models")
    return head


def _build(head: Any) -> tuple[nn.Module, dict[str, Any], list[torch.Tensor]]:
    """(graph, manifest fields, example inputs) of a loaded head."""
    if head.name in ("patchcore", "gaussian"):
        from oddeye.export.image import example_images, image_graph

        graph, fields = image_graph(head)
        return graph, fields, [example_images(head)]
    if head.name == "video-prediction":
        from oddeye.export.video import example_clips, video_graph

        graph, fields = video_graph(head)
        return graph, fields, [example_clips(head)]
    from oddeye.export.pointcloud import adapter_graph, example_features

    graph, fields = adapter_graph(head)
    return graph, fields, [example_features(head)]


def _check(graph: nn.Module, example: list[torch.Tensor], path: Path, names: list[str]) -> None:
    """Run the ONNX file on the example inputs and compare with the PyTorch module; a mismatch is a ModelError."""
    import onnxruntime as ort

    with torch.inference_mode():
        want = graph(*example)
    want = [want] if isinstance(want, torch.Tensor) else list(want)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {n: t.numpy() for n, t in zip(names, example)})
    for w, g in zip(want, got):
        w = w.numpy()
        err = float(np.abs(w - g).max() / max(float(np.abs(w).max()), 1e-12)) if w.size else 0.0
        if w.shape != g.shape or not err <= CHECK_TOLERANCE:
            raise ModelError(f"the exported graph {path} does not reproduce the model (relative error {err:.3g})",
                             "report this model's settings; the export is left unusable")


def to_openvino(onnx_path: Path) -> list[Path]:
    """Convert an ONNX file to OpenVINO IR beside it (model.xml + model.bin, float32 weights); the ONNX file goes."""
    import openvino as ov

    xml = onnx_path.with_suffix(".xml")
    ov.save_model(ov.convert_model(str(onnx_path)), str(xml), compress_to_fp16=False)  # fp16 would move scores
    onnx_path.unlink()
    return [xml, xml.with_suffix(".bin")]


def export_model(model_dir: str | Path, out: str | Path, fmt: str = "onnx",
                 progress: Callable[[str], None] | None = None) -> Path:
    """Export the model folder `model_dir` to the folder `out` as `fmt` (onnx | openvino); returns the manifest."""
    say = progress or (lambda _: None)
    if fmt not in BACKENDS:
        raise InputError(f"--format {fmt!r}: use one of {', '.join(BACKENDS)}")
    if fmt == "openvino" and importlib.util.find_spec("openvino") is None:
        raise InputError("--format openvino needs the openvino package", "pip install openvino")
    name = check_exportable(model_dir)
    d = require_out_dir(out)
    d.mkdir(parents=True, exist_ok=True)
    head = load_head(model_dir)
    graph, fields, example = _build(head)
    in_names = [s["name"] for s in fields["inputs"]]
    out_names = [s["name"] for s in fields["outputs"]]
    t0 = time.perf_counter()
    path = to_onnx(graph, example, d / "model.onnx", in_names, out_names)
    _check(graph, example, path, in_names)
    say(f"traced and checked {path} in {time.perf_counter() - t0:.1f} s")
    files = [path] if fmt == "onnx" else to_openvino(path)
    roles = dict(zip(("model", "weights"), (f.name for f in files)))
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "oddeye_version": __version__, "head": name,
           "backend": fmt, "written": time.strftime("%Y-%m-%dT%H:%M:%S"), "source_model": str(Path(model_dir).resolve()),
           "files": roles, "sha256": {f.name: sha256(f) for f in files},
           "size_bytes": sum(f.stat().st_size for f in files), **fields}
    man = d / MANIFEST
    man.write_text(json.dumps(to_jsonable(doc), indent=1))
    return man
