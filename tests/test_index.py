"""PatchIndex: every kind against brute force numpy, cosine, save/load, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from oddeye.core.errors import EmptyDataError, InputError, ModelError
from oddeye.retrieval.index import PatchIndex, default_nlist, default_pq_m, faiss_gpu_count


def _clustered(n: int, dim: int, seed: int, centres: int = 50) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, dim)).astype(np.float32) * 4
    return (c[rng.integers(0, centres, n)] + rng.standard_normal((n, dim)).astype(np.float32)).astype(np.float32)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x = _clustered(6000, 32, 0)
    q = _clustered(300, 32, 1)
    d2 = ((q[:, None, :].astype(np.float64) - x[None]) ** 2).sum(-1)
    order = np.argsort(d2, axis=1)[:, :5]
    return x, q, order, np.sqrt(np.take_along_axis(d2, order, 1))


def test_flat_equals_brute_force(data) -> None:
    x, q, order, dist = data
    index = PatchIndex.build(x, kind="flat")
    d, i = index.search(q, k=5)
    assert d.dtype == np.float32 and i.dtype == np.int64 and d.shape == (300, 5)
    np.testing.assert_array_equal(i, order)
    np.testing.assert_allclose(d, dist, rtol=1e-4, atol=1e-3)
    assert len(index) == 6000 and index.dim == 32 and index.kind == "flat" and index.metric == "l2"


@pytest.mark.parametrize("kind,min_recall", [("ivf", 0.95), ("hnsw", 0.95), ("ivfpq", 0.25)])
def test_approximate_kinds_recall(data, kind: str, min_recall: float) -> None:
    x, q, order, dist = data
    index = PatchIndex.build(x, kind=kind)
    d, i = index.search(q, k=10)
    recall = float((i[:, 0] == order[:, 0]).mean())
    assert recall >= min_recall, f"{kind} recall@1 {recall}"
    assert (i == order[:, :1]).any(axis=1).mean() >= 0.8  # the true neighbour is among the first 10
    hit = i[:, 0] == order[:, 0]
    if kind != "ivfpq":  # exact distances for the hits of non-compressed kinds
        np.testing.assert_allclose(d[hit, 0], dist[hit, 0], rtol=1e-4, atol=1e-3)
    assert index.bytes_per_vector() > 0


def test_ivfpq_is_compact() -> None:
    index = PatchIndex(256, kind="ivfpq")
    assert default_pq_m(256) == 32 and index.bytes_per_vector() == 32 + 8
    assert PatchIndex(256, kind="flat").bytes_per_vector() == 1024
    assert default_nlist(1_000_000) == 4000 and default_nlist(100) == 2


def test_cosine_matches_numpy(data) -> None:
    x, q, _, _ = data
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    sim = qn @ xn.T
    d, i = PatchIndex.build(x * 3.0, kind="flat", metric="cosine").search(q, k=1)
    np.testing.assert_array_equal(i[:, 0], sim.argmax(1))
    np.testing.assert_allclose(d[:, 0], 1 - sim.max(1), atol=1e-5)
    d, i = PatchIndex.build(x, kind="hnsw", metric="cosine").search(q, k=1)
    assert (i[:, 0] == sim.argmax(1)).mean() >= 0.9


def test_auto_kind_and_incremental_add(data, monkeypatch) -> None:
    x, q, order, _ = data
    import oddeye.retrieval.index as index_module

    monkeypatch.setattr(index_module, "AUTO_FLAT_MAX", 5000)
    assert PatchIndex.build(x).kind == "ivf" and PatchIndex.build(x[:4000]).kind == "flat"
    monkeypatch.undo()
    index = PatchIndex(32)
    index.add(x[:3000]).add(x[3000:], batch_size=1000)
    assert index.kind == "flat" and len(index) == 6000
    np.testing.assert_array_equal(index.search(q, 1)[1][:, 0], order[:, 0])


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw", "ivfpq"])
def test_save_load_round_trip(tmp_path, data, kind: str) -> None:
    x, q, _, _ = data
    index = PatchIndex.build(x, kind=kind, metric="cosine" if kind == "ivf" else "l2")
    d0, i0 = index.search(q, k=3)
    index.save(tmp_path / "ix")
    back = PatchIndex.load(tmp_path / "ix")
    assert (back.kind, back.dim, back.metric, len(back)) == (index.kind, 32, index.metric, 6000)
    d1, i1 = back.search(q, k=3)
    np.testing.assert_array_equal(i0, i1)
    np.testing.assert_allclose(d0, d1)


def test_load_errors_name_the_file(tmp_path, data) -> None:
    x = data[0][:500]
    with pytest.raises(ModelError, match="not found"):
        PatchIndex.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="manifest"):
        PatchIndex.load(tmp_path / "empty")
    d = PatchIndex.build(x, kind="flat").save(tmp_path / "ix")
    (d / "index.faiss").write_bytes(b"garbage, not a faiss index" * 10)
    with pytest.raises(ModelError, match="index.faiss"):
        PatchIndex.load(d)
    (d / "index.faiss").unlink()
    with pytest.raises(ModelError, match="index.faiss"):
        PatchIndex.load(d)
    (d / "manifest.json").write_text("{not json")
    with pytest.raises(ModelError, match="manifest.json"):
        PatchIndex.load(d)


def test_bad_input(data) -> None:
    x, q, _, _ = data
    index = PatchIndex.build(x[:200], kind="flat")
    with pytest.raises(InputError, match="dimension 16 but the index has dimension 32"):
        index.search(q[:, :16])
    with pytest.raises(InputError, match="dimension"):
        index.add(np.zeros((3, 8), np.float32))
    with pytest.raises(EmptyDataError):
        PatchIndex.build(np.zeros((0, 32), np.float32))
    with pytest.raises(EmptyDataError, match="empty"):
        PatchIndex(32).search(q)
    bad = x[:10].copy()
    bad[3, 2] = np.nan
    with pytest.raises(InputError, match="NaN"):
        PatchIndex.build(bad)
    bad[3, 2] = np.inf
    with pytest.raises(InputError, match="NaN or inf"):
        index.search(bad)
    with pytest.raises(InputError, match="k="):
        index.search(q, k=201)
    with pytest.raises(InputError, match="kind"):
        PatchIndex(32, kind="annoy")
    with pytest.raises(InputError, match="metric"):
        PatchIndex(32, metric="manhattan")


@pytest.mark.skipif(faiss_gpu_count() == 0, reason="no CUDA GPU visible to FAISS (faiss-cpu installed or no device)")
def test_gpu_matches_cpu(data) -> None:
    x, q, order, dist = data
    for kind in ("flat", "ivf"):
        gpu = PatchIndex.build(x, kind=kind, device="cuda")
        cpu = PatchIndex.build(x, kind=kind, device="cpu")
        assert gpu.on_gpu and not cpu.on_gpu
        dg, ig = gpu.search(q, k=1)
        dc, ic = cpu.search(q, k=1)
        assert (ig[:, 0] == ic[:, 0]).mean() >= 0.99
        np.testing.assert_allclose(dg, dc, rtol=1e-3, atol=1e-3)


def test_cuda_request_without_gpu_is_clear() -> None:
    if faiss_gpu_count() > 0:
        pytest.skip("a GPU is present; this checks the message on CPU-only machines")
    with pytest.raises(InputError, match="cuda"):
        PatchIndex(8, device="cuda")
