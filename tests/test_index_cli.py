"""`oddeye bench index` / `oddeye bench coreset` on tiny sizes: table, then one JSON line last."""

from __future__ import annotations

import json

import numpy as np
import pytest

from oddeye.cli import main
from oddeye.retrieval.cli import exact_nn, make_vectors, recall_at_1


def _last_json(capsys) -> dict:
    out = capsys.readouterr().out.strip().splitlines()
    return json.loads(out[-1])


def test_bench_index_cli(capsys) -> None:
    rc = main(["bench", "index", "--n", "3000", "--dim", "16", "--queries", "50", "--kinds", "flat,ivf,hnsw,ivfpq",
               "--nprobe", "4,400", "--data", "clustered"])
    assert rc == 0
    doc = _last_json(capsys)
    kinds = [r["kind"] for r in doc["rows"]]
    assert kinds == ["flat", "ivf", "ivf", "hnsw", "ivfpq"]
    flat = doc["rows"][0]
    assert flat["recall_at_1"] == 1.0 and flat["bytes_per_vector"] == 64
    assert doc["rows"][2]["recall_at_1"] == 1.0  # nprobe beyond nlist: exhaustive
    assert doc["n"] == 3000 and doc["best_kind"] in ("ivf", "hnsw") and doc["recall"] >= 0.95
    assert {"cdist_s", "speedup", "flat_speedup", "target_met"} <= set(doc)


def test_bench_index_bad_kind(capsys) -> None:
    assert main(["bench", "index", "--n", "100", "--kinds", "flat,annoy"]) == 2
    assert "annoy" in capsys.readouterr().err


def test_bench_coreset_cli(capsys) -> None:
    rc = main(["bench", "coreset", "--n", "3000", "--dim", "64", "--ratio", "0.3", "--radius-sample", "500",
               "--data", "clustered"])
    assert rc == 0
    doc = _last_json(capsys)
    assert doc["count"] == 900 and doc["coreset_s"] > 0
    assert doc["radius_coreset"] < 0.9 * doc["radius_random"]


def test_exact_baseline_chunks_agree() -> None:
    x = make_vectors(5000, 8, seed=0)
    q = make_vectors(40, 8, seed=1)
    d, i, _ = exact_nn(x, q, q_chunk=7, x_chunk=999)
    full = ((q[:, None] - x[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(i, full.argmin(1))
    np.testing.assert_allclose(d, np.sqrt(full.min(1)), rtol=1e-4)
    assert recall_at_1(i[:, None], d, i, x, q) == 1.0
    wrong = (i + 1) % len(x)
    assert recall_at_1(wrong[:, None], d, i, x, q) < 0.1  # a wrong id with a small reported distance is a miss
    with pytest.raises(Exception, match="data"):
        make_vectors(10, 4, data="uniform")
