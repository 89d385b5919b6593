"""PatchIndex: the one nearest-neighbour search of oddeye, a thin layer over FAISS (CPU, or GPU when present)."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from oddeye.core.errors import EmptyDataError, InputError, ModelError, first_line

# OpenMP threads that spin while waiting make FAISS 10x slower when the cores are shared (measured: IVF-PQ
# training 8.2 s -> 0.75 s on a loaded 2-core box). Set before FAISS loads its OpenMP; a user's value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

KINDS = ("flat", "ivf", "hnsw", "ivfpq")
METRICS = ("l2", "cosine")
DEVICES = ("auto", "cpu", "cuda")
FORMAT_VERSION = 1
INDEX_FILE = "index.faiss"
MANIFEST_FILE = "manifest.json"
# Below this many vectors "auto" is exact (flat); above it ivf, which built 2.5x+ faster than hnsw at
# similar speed-up and recall on clustered data (docs/index.md has the figures).
AUTO_FLAT_MAX = 200_000
DEFAULTS: dict[str, Any] = {"M": 32, "ef_construction": 100, "ef_search": 256, "nprobe": None, "nlist": None,
                            "pq_m": None, "nbits": 8, "train_size": None, "seed": 0}


def _faiss() -> Any:
    import faiss

    from oddeye.core.config import n_threads

    faiss.omp_set_num_threads(n_threads())
    return faiss


def faiss_gpu_count() -> int:
    """Number of GPUs FAISS can use (0 with faiss-cpu)."""
    import faiss

    return int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") and hasattr(faiss, "StandardGpuResources") else 0


def default_nlist(n: int) -> int:
    """IVF list count for n vectors: ~4*sqrt(n), at most n/39 so k-means has enough points per list."""
    return int(max(1, min(round(4 * math.sqrt(n)), n // 39)))


def default_pq_m(dim: int) -> int:
    """Sub-quantizer count for IVF-PQ: the divisor of `dim` nearest dim/8 (one byte per 8 dims)."""
    divisors = [m for m in range(1, dim + 1) if dim % m == 0 and m <= 64]
    return min(divisors, key=lambda m: abs(m - max(1, dim // 8)))


def check_vectors(x: Any, dim: int | None, name: str) -> np.ndarray:
    """Return `x` as a C-contiguous float32 (N, D) array; raise InputError on wrong shape, dim or NaN/inf."""
    try:
        a = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    except (TypeError, ValueError) as e:
        raise InputError(f"{name} must be a numeric (N, D) array ({e})") from None
    if a.ndim == 1 and dim is not None and a.shape[0] == dim:
        a = a[None, :]
    if a.ndim != 2:
        raise InputError(f"{name} must be a 2-D (N, D) array, got shape {a.shape}")
    if dim is not None and a.shape[1] != dim:
        raise InputError(f"{name} has dimension {a.shape[1]} but the index has dimension {dim}",
                         "use features from the same extractor/layers the index was built with")
    if a.size and not np.isfinite(a).all():
        bad = int((~np.isfinite(a).all(axis=1)).sum())
        raise InputError(f"{name} holds NaN or inf in {bad} row(s)", "check the feature extractor's input")
    return a


class PatchIndex:
    """k-NN index over (N, D) float32 vectors: kind flat|ivf|hnsw|ivfpq|auto, metric l2|cosine, cpu or cuda.

    search() returns Euclidean distances (not squared) for "l2" and 1 - cosine similarity for "cosine".
    kind="auto" is resolved at the first add(): flat below AUTO_FLAT_MAX vectors, ivf above.
    """

    def __init__(self, dim: int, kind: str = "auto", metric: str = "l2", device: str = "auto", **params: Any) -> None:
        if not isinstance(dim, (int, np.integer)) or dim < 1:
            raise InputError(f"dim must be a positive integer, got {dim!r}")
        if kind not in KINDS + ("auto",):
            raise InputError(f"kind must be one of {KINDS + ('auto',)}, got {kind!r}")
        if metric not in METRICS:
            raise InputError(f"metric must be one of {METRICS}, got {metric!r}")
        if device not in DEVICES:
            raise InputError(f"device must be one of {DEVICES}, got {device!r}")
        unknown = set(params) - set(DEFAULTS)
        if unknown:
            raise InputError(f"unknown index parameter(s) {sorted(unknown)}", f"known: {sorted(DEFAULTS)}")
        if device == "cuda" and faiss_gpu_count() == 0:
            raise InputError("device 'cuda' requested but FAISS has no GPU support or sees no GPU",
                             "install faiss-gpu on a CUDA machine, or use device='cpu'")
        self.dim = int(dim)
        self.kind = kind
        self.metric = metric
        self.device = device
        self.params: dict[str, Any] = {**DEFAULTS, **params}
        self._index: Any = None
        self._on_gpu = False
        self._gpu_res: Any = None

    # ---- construction -------------------------------------------------------------------------------
    @classmethod
    def build(cls, x: Any, kind: str = "auto", metric: str = "l2", device: str = "auto", batch_size: int = 65536,
              progress: bool | None = None, **params: Any) -> PatchIndex:
        """Build an index from x (N, D) float32: train (IVF kinds) on a seeded sample, then add in batches."""
        a = np.asarray(x)
        if a.ndim != 2:
            raise InputError(f"x must be a 2-D (N, D) array, got shape {a.shape}")
        if a.shape[0] == 0:
            raise EmptyDataError("cannot build an index from 0 vectors", "pass at least one normal feature vector")
        index = cls(int(a.shape[1]), kind=kind, metric=metric, device=device, **params)
        index.add(a, batch_size=batch_size, progress=progress)
        return index

    def _resolve_kind(self, n: int) -> None:
        if self.kind == "auto":
            self.kind = "flat" if n < AUTO_FLAT_MAX else "ivf"

    def _make(self, train: np.ndarray) -> None:
        """Create the FAISS index for self.kind, train it on the prepared sample `train`, move it to the GPU if asked."""
        faiss = _faiss()
        n, d, p = train.shape[0], self.dim, self.params
        if self.kind == "flat":
            idx = faiss.IndexFlatL2(d)
        elif self.kind == "hnsw":
            idx = faiss.IndexHNSWFlat(d, int(p["M"]))
            idx.hnsw.efConstruction = int(p["ef_construction"])
            idx.hnsw.efSearch = int(p["ef_search"])
        else:
            nlist = int(p["nlist"])
            quantizer = faiss.IndexFlatL2(d)
            if self.kind == "ivf":
                idx = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_L2)
            else:
                m = int(p["pq_m"] or default_pq_m(d))
                if d % m:
                    raise InputError(f"pq_m={m} must divide the dimension {d}")
                nbits = int(p["nbits"])
                if n < 39 * 2**nbits:  # too few points to train 256 centroids per sub-quantizer
                    nbits = int(max(1, min(nbits, math.floor(math.log2(max(2, n // 39))))))
                p["pq_m"], p["nbits"] = m, nbits
                idx = faiss.IndexIVFPQ(quantizer, d, nlist, m, nbits)
            idx.own_fields = True
            idx.quantizer_trains_alone = 0
            quantizer.this.disown()
            idx.nprobe = int(p["nprobe"] or self._default_nprobe(nlist))
            p["nprobe"] = idx.nprobe
        self._index = idx
        self._maybe_to_gpu()
        if not self._index.is_trained:
            cp = getattr(self._index, "cp", None)
            if cp is not None:
                cp.seed = int(p["seed"])
                cp.niter = 10
            self._index.train(train)

    def _default_nprobe(self, nlist: int) -> int:
        # 1/16 of the lists (>= 8): recall@1 1.0 on clustered data, ~0.8 on i.i.d. normal data (docs/index.md)
        return int(min(nlist, max(8, nlist // 16)))

    def _train_sample(self, x: np.ndarray) -> np.ndarray:
        """A seeded subset of x (N, D) for k-means training: train_size rows, default 50 per list (>= 64*256)."""
        if self.params["nlist"] is None:
            self.params["nlist"] = default_nlist(x.shape[0])
        nlist = int(self.params["nlist"])
        size = int(self.params["train_size"] or max(50 * nlist, 64 * 256))
        if x.shape[0] <= size:
            return x
        rng = np.random.default_rng(int(self.params["seed"]))
        ids = np.sort(rng.choice(x.shape[0], size=size, replace=False))
        return np.ascontiguousarray(x[ids])

    def _maybe_to_gpu(self) -> None:
        want = self.device == "cuda" or (self.device == "auto" and faiss_gpu_count() > 0)
        if not want or self.kind == "hnsw":  # FAISS has no GPU HNSW; it stays on the CPU
            return
        faiss = _faiss()
        try:
            self._gpu_res = faiss.StandardGpuResources()
            self._index = faiss.index_cpu_to_gpu(self._gpu_res, 0, self._index)
            self._on_gpu = True
        except Exception as e:  # noqa: BLE001 - a config the GPU does not support: stay on CPU unless forced
            if self.device == "cuda":
                raise InputError(f"FAISS could not put a {self.kind} index on the GPU: {e}", "use device='cpu'") from None

    def _prep(self, a: np.ndarray) -> np.ndarray:
        if self.metric == "cosine":
            norms = np.linalg.norm(a, axis=1, keepdims=True)
            a = a / np.maximum(norms, 1e-12)
        return np.ascontiguousarray(a, dtype=np.float32)

    def add(self, x: Any, batch_size: int = 65536, progress: bool | None = None) -> PatchIndex:
        """Add x (N, D) in batches (tqdm bar for large N); the first call also trains IVF kinds on a seeded sample."""
        a = check_vectors(x, self.dim, "vectors to add")
        if a.shape[0] == 0:
            if self._index is None:
                raise EmptyDataError("cannot build an index from 0 vectors", "pass at least one normal feature vector")
            return self
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        if self._index is None:
            self._resolve_kind(a.shape[0])
            needs_train = self.kind in ("ivf", "ivfpq")
            self._make(self._prep(self._train_sample(a)) if needs_train else a[:0])
        from tqdm.auto import tqdm

        n = a.shape[0]
        show = progress if progress is not None else n >= 4 * batch_size
        with tqdm(total=n, desc=f"index add ({self.kind})", unit="vec", disable=not show, leave=False) as bar:
            for s in range(0, n, batch_size):
                chunk = self._prep(a[s:s + batch_size])
                self._index.add(chunk)
                bar.update(chunk.shape[0])
        return self

    # ---- search -------------------------------------------------------------------------------------
    def search(self, q: Any, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """k nearest neighbours of q (M, D): (dist (M, k) float32, ids (M, k) int64); missing hits are (inf, -1)."""
        if self._index is None or len(self) == 0:
            raise EmptyDataError("the index is empty", "add() normal feature vectors before searching")
        a = check_vectors(q, self.dim, "query vectors")
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise InputError(f"k must be a positive integer, got {k!r}")
        if k > len(self):
            raise InputError(f"k={k} is larger than the index ({len(self)} vectors)", "use a smaller k")
        if a.shape[0] == 0:
            return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
        d2, ids = self._index.search(self._prep(a), int(k))
        d2 = np.maximum(d2, 0.0)
        dist = (d2 * 0.5) if self.metric == "cosine" else np.sqrt(d2)
        dist = dist.astype(np.float32, copy=False)
        missing = ids < 0
        if missing.any():
            dist[missing] = np.inf
        return dist, ids.astype(np.int64, copy=False)

    def set_search_params(self, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Change the speed/recall trade-off after build: nprobe (ivf, ivfpq) or ef_search (hnsw)."""
        if nprobe is not None and self.kind in ("ivf", "ivfpq"):
            self.params["nprobe"] = int(nprobe)
            if self._index is not None:
                self._index.nprobe = int(nprobe)
        if ef_search is not None and self.kind == "hnsw":
            self.params["ef_search"] = int(ef_search)
            if self._index is not None:
                self._index.hnsw.efSearch = int(ef_search)

    def __len__(self) -> int:
        return 0 if self._index is None else int(self._index.ntotal)

    @property
    def on_gpu(self) -> bool:
        """True when the FAISS index lives on a GPU."""
        return self._on_gpu

    def bytes_per_vector(self) -> float:
        """Memory per stored vector (codes + ids + graph links), excluding fixed centroids/codebooks."""
        k, p = self.kind, self.params
        if k == "flat":
            return 4.0 * self.dim
        if k == "ivf":
            return 4.0 * self.dim + 8
        if k == "ivfpq":
            return (int(p["pq_m"] or default_pq_m(self.dim)) * int(p["nbits"])) / 8.0 + 8
        if k == "hnsw":
            # level 0 holds 2*M int32 links; upper levels (1/M of nodes per level) M each; a level and an offset
            m = int(p["M"])
            return 4.0 * self.dim + 4 * 2 * m + 4 * m / (m - 1) + 4 + 8
        return float("nan")

    # ---- persistence --------------------------------------------------------------------------------
    def _cpu_index(self) -> Any:
        return _faiss().index_gpu_to_cpu(self._index) if self._on_gpu else self._index

    def save(self, directory: str | Path) -> Path:
        """Write index.faiss and manifest.json (kind, dim, metric, count, version, params) to `directory`."""
        if self._index is None:
            raise EmptyDataError("cannot save an empty index", "add() vectors first")
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        _faiss().write_index(self._cpu_index(), str(d / INDEX_FILE))
        doc = {"format": "oddeye-patch-index", "version": FORMAT_VERSION, "kind": self.kind, "dim": self.dim,
               "metric": self.metric, "count": len(self), "params": self.params,
               "written": time.strftime("%Y-%m-%dT%H:%M:%S")}
        (d / MANIFEST_FILE).write_text(json.dumps(doc, indent=1))
        return d

    @classmethod
    def load(cls, directory: str | Path, device: str = "auto") -> PatchIndex:
        """Read an index written by save(); a missing, wrong or corrupt file is a ModelError naming it."""
        d = Path(directory)
        man, fpath = d / MANIFEST_FILE, d / INDEX_FILE
        if not d.is_dir():
            raise ModelError(f"index directory not found: {d}", "pass a folder written by PatchIndex.save()")
        if not man.is_file():
            raise ModelError(f"{d} holds no index manifest ({MANIFEST_FILE})", "pass a folder written by PatchIndex.save()")
        try:
            doc = json.loads(man.read_text())
            kind, dim, metric, count = doc["kind"], int(doc["dim"]), doc["metric"], int(doc["count"])
            version, params = int(doc["version"]), dict(doc.get("params", {}))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, UnicodeDecodeError) as e:
            raise ModelError(f"index manifest {man} is corrupt ({type(e).__name__}: {e})", "rebuild the index") from None
        if doc.get("format") != "oddeye-patch-index" or kind not in KINDS or metric not in METRICS:
            raise ModelError(f"{man} is not a PatchIndex manifest", "pass a folder written by PatchIndex.save()")
        if version > FORMAT_VERSION:
            raise ModelError(f"{man} has format version {version}, newer than this oddeye ({FORMAT_VERSION})",
                             "upgrade oddeye")
        if not fpath.is_file() or fpath.stat().st_size == 0:
            raise ModelError(f"index file missing or empty: {fpath}", "rebuild the index")
        faiss = _faiss()
        try:
            raw = faiss.read_index(str(fpath))
        except Exception as e:  # noqa: BLE001 - FAISS raises RuntimeError with a C++ trace for a bad file
            raise ModelError(f"index file {fpath} is corrupt or not a FAISS index ({first_line(e)})", "rebuild the index") from None
        if raw.d != dim or raw.ntotal != count:
            raise ModelError(f"index file {fpath} does not match its manifest (dim {raw.d} vs {dim}, "
                             f"count {raw.ntotal} vs {count})", "rebuild the index")
        unknown = set(params) - set(DEFAULTS)
        for key in unknown:
            params.pop(key)
        index = cls(dim, kind=kind, metric=metric, device=device, **params)
        index._index = raw
        index._maybe_to_gpu()
        return index

    def __repr__(self) -> str:
        where = "gpu" if self._on_gpu else "cpu"
        return f"PatchIndex(kind={self.kind!r}, metric={self.metric!r}, dim={self.dim}, count={len(self)}, {where})"
