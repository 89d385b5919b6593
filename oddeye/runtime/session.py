"""Run an exported graph: ONNX Runtime for model.onnx, OpenVINO for model.xml; inputs checked against the manifest
before they reach the graph, so a wrong shape or dtype gets an error naming the expected input."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from oddeye.core.config import n_threads
from oddeye.core.errors import InputError, ModelError, first_line
from oddeye.runtime.manifest import REEXPORT, describe_input

BACKENDS = ("onnx", "openvino")


class Session:
    """An exported graph with named inputs and outputs (as in its manifest), on the CPU. `streams` runs may go on
    at once, each from its own caller thread, with threads // streams threads each (ONNX Runtime's run() is
    thread-safe; OpenVINO gets that many streams and one infer request per caller thread)."""

    def __init__(self, directory: Path, doc: dict[str, Any], threads: int | None = None,
                 streams: int | None = 1) -> None:
        self.doc = doc
        self.backend = doc.get("backend", "onnx")
        self.file = directory / doc["files"]["model"]
        self.inputs = {s["name"]: s for s in doc["inputs"]}
        self.output_names = [o["name"] for o in doc["outputs"]]
        threads = int(threads or n_threads())
        self.streams = max(1, min(int(streams or threads), threads))  # runs at once (None: one per thread)
        per_run = max(1, threads // self.streams)
        if self.backend == "onnx":
            self._run = self._onnx(per_run)
        elif self.backend == "openvino":
            self._run = self._openvino(threads, self.streams)
        else:
            raise ModelError(f"{self.file}: unknown backend {self.backend!r} in the manifest", REEXPORT)

    def _onnx(self, threads: int) -> Any:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle threads would steal the cores
        try:
            sess = ort.InferenceSession(str(self.file), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - ORT raises its own types for a bad file
            raise ModelError(f"{self.file} is corrupt or not an ONNX model ({first_line(e, 300)})", REEXPORT) from None
        return lambda feeds: sess.run(self.output_names, feeds)

    def _openvino(self, threads: int, streams: int) -> Any:
        try:
            import openvino as ov
        except ImportError:
            raise ModelError(f"{self.file} is an OpenVINO export, and the openvino package is not installed",
                             "pip install openvino, or export with --format onnx") from None
        core = ov.Core()
        try:
            # f32 inference: on CPUs with bf16 OpenVINO would otherwise lower the precision (and move the scores)
            compiled = core.compile_model(core.read_model(str(self.file)), "CPU",
                                          {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": streams,
                                           "INFERENCE_PRECISION_HINT": "f32"})
        except Exception as e:  # noqa: BLE001 - OpenVINO raises RuntimeError with a C++ trace
            raise ModelError(f"{self.file} is corrupt or not an OpenVINO model ({first_line(e, 300)})", REEXPORT) from None
        outputs = [compiled.output(n) for n in self.output_names]
        local = threading.local()  # an infer request is not shared between threads

        def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
            if not hasattr(local, "request"):
                local.request = compiled.create_infer_request()
            res = local.request.infer(feeds)
            return [np.array(res[o]) for o in outputs]  # a copy: the request reuses its output buffers

        return run

    def check(self, name: str, array: Any) -> np.ndarray:
        """`array` if it fits input `name` (dtype and shape of the manifest, any size where it says 'batch')."""
        spec = self.inputs.get(name)
        if spec is None:
            raise InputError(f"{self.file} has no input {name!r}", f"its inputs: {', '.join(self.inputs)}")
        a = np.asarray(array)
        shape = spec["shape"]
        fits = a.dtype == np.dtype(spec["dtype"]) and a.ndim == len(shape) and all(
            isinstance(s, str) and n >= 1 or n == s for n, s in zip(a.shape, shape))
        if not fits:
            raise InputError(f"wrong input for {self.file.name}: got {a.dtype} {tuple(a.shape)}, expected "
                             f"{describe_input(spec)}", spec.get("preprocessing_hint", "see the export's manifest"))
        return np.ascontiguousarray(a)

    def run(self, **feeds: Any) -> dict[str, np.ndarray]:
        """Outputs by name for the named inputs (each checked against the manifest)."""
        missing = set(self.inputs) - set(feeds)
        if missing:
            raise InputError(f"{self.file.name} needs the input(s) {', '.join(sorted(missing))}",
                             "; ".join(describe_input(self.inputs[m]) for m in sorted(missing)))
        arrays = {k: self.check(k, v) for k, v in feeds.items()}
        return dict(zip(self.output_names, self._run(arrays)))
