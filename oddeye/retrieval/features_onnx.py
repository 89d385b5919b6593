"""Run a backbone's feature function with ONNX Runtime on CPU.

On CPUs without native bfloat16, PyTorch's eager depthwise convolutions are the bottleneck of the EfficientNet-Lite
backbones; ONNX Runtime's CPU provider (blocked NCHWc layout, fused conv + activation) runs the same float32 graph
2-3.5x faster with outputs equal to ~1e-6 relative (measured in docs/image.md). The graph is exported once per
process, in memory (~1 s), for the input's height and width with a dynamic batch axis.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import warnings
from typing import Callable

import numpy as np
import torch

RUNTIMES = ("auto", "torch", "onnx")


@functools.lru_cache(maxsize=None)
def onnx_available() -> bool:
    """Whether onnxruntime and onnx (the exporter needs it) are importable."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


class _Traced(torch.nn.Module):
    """nn.Module wrapper of a (B, 3, H, W) -> list of maps function, for the exporter."""

    def __init__(self, fn: Callable[[torch.Tensor], list[torch.Tensor]], owner: torch.nn.Module) -> None:
        super().__init__()
        self.owner = owner  # registers the weights the function reads
        self.fn = fn

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Maps of x (B, 3, H, W) as a tuple."""
        return tuple(self.fn(x))


class OnnxGraph:
    """ONNX Runtime session for a (B, 3, H, W) float32 -> maps function on CPU, exported at the first call.

    A later call with another height or width re-exports. Where export or the session fails it warns once and
    returns None, and the caller runs the function in PyTorch.
    """

    def __init__(self, fn: Callable[[torch.Tensor], list[torch.Tensor]], owner: torch.nn.Module,
                 threads: int | None = None) -> None:
        self.fn, self.owner = fn, owner
        self.threads = threads
        self.hw: tuple[int, int] | None = None
        self.failed = False
        self._session = None

    def _build(self, x: torch.Tensor) -> None:
        import onnxruntime as ort

        buf = io.BytesIO()
        module = _Traced(self.fn, self.owner).eval()
        # tracing needs ordinary tensors: leave inference mode, and clone the (inference) input outside it
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on shape arithmetic: shapes are fixed per export
            probe = x[:1].clone().contiguous()
            names = [f"f{i}" for i in range(len(self.fn(probe)))]
            torch.onnx.export(module, (probe,), buf, opset_version=17, input_names=["x"], output_names=names,
                              dynamo=False, dynamic_axes={n: {0: "batch"} for n in ["x", *names]})
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = int(self.threads or torch.get_num_threads())
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        # idle ORT threads would spin between batches and steal the cores from the kNN search that follows
        # (PatchCore on 2 cores: 36-44 images/s spinning, 49-57 without; docs/image.md)
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])
        self.hw = (int(x.shape[2]), int(x.shape[3]))

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor] | None:
        """Maps (B, C_i, h_i, w_i) float32 for x (B, 3, H, W) float32 on CPU, or None where ONNX Runtime failed."""
        if self.failed:
            return None
        try:
            if self._session is None or self.hw != (int(x.shape[2]), int(x.shape[3])):
                self._build(x)
            arr = np.ascontiguousarray(x.detach().float().numpy())
            out = self._session.run(None, {"x": arr})
        except Exception as e:  # export and ORT raise many types; any failure means: run in PyTorch
            self.failed = True
            warnings.warn(f"ONNX Runtime could not run the backbone ({type(e).__name__}: {str(e)[:200]}); "
                          "running it in PyTorch (same results, slower)", RuntimeWarning, stacklevel=3)
            return None
        return [torch.from_numpy(o) for o in out]
