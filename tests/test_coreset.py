"""Greedy k-centre coreset: determinism, sizes, covering radius vs a random subsample, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from oddeye.core.errors import EmptyDataError, InputError
from oddeye.retrieval.coreset import covering_radius, greedy_coreset, greedy_coreset_batched


def _blobs(n: int = 4000, dim: int = 200, seed: int = 0) -> np.ndarray:
    """Uneven clusters (a few big, many tiny): random sampling misses the tiny ones, k-centre does not."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((60, dim)).astype(np.float32) * 5
    weights = np.r_[np.full(5, 150.0), np.ones(55)]
    lab = rng.choice(60, size=n, p=weights / weights.sum())
    return (centres[lab] + 0.3 * rng.standard_normal((n, dim))).astype(np.float32)


def test_deterministic_and_sized() -> None:
    x = _blobs()
    a = greedy_coreset(x, ratio=0.05, seed=3)
    b = greedy_coreset(x, ratio=0.05, seed=3)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.int64 and len(a) == 200 and len(set(a.tolist())) == 200
    assert not np.array_equal(a, greedy_coreset(x, ratio=0.05, seed=4))
    assert len(greedy_coreset(x, count=17)) == 17
    np.testing.assert_array_equal(greedy_coreset(x[:10], count=50), np.arange(10))


def test_covers_better_than_random() -> None:
    x = _blobs()
    ids = greedy_coreset(x, count=80)
    rnd = np.random.default_rng(0).choice(len(x), size=80, replace=False)
    r_core, r_rand = covering_radius(x, ids), covering_radius(x, rnd)
    assert r_core < 0.5 * r_rand, (r_core, r_rand)


def test_half_precision_path_agrees() -> None:
    x = _blobs(n=3000)
    full = covering_radius(x, greedy_coreset(x, count=100, half=False))
    half = covering_radius(x, greedy_coreset(x, count=100, half=True))
    assert half < 1.2 * full


def test_duplicates_stop_early() -> None:
    x = np.repeat(np.eye(4, dtype=np.float32), 50, axis=0)
    ids = greedy_coreset(x, count=10, proj_dim=0)
    assert len(set(ids.tolist())) == len(ids) and len(ids) == 10
    assert len({tuple(x[i]) for i in ids[:4]}) == 4  # the four distinct points come first


def test_bad_input() -> None:
    x = _blobs(n=100)
    with pytest.raises(InputError, match="exactly one"):
        greedy_coreset(x)
    with pytest.raises(InputError, match="exactly one"):
        greedy_coreset(x, ratio=0.1, count=3)
    with pytest.raises(InputError, match="ratio"):
        greedy_coreset(x, ratio=1.5)
    with pytest.raises(EmptyDataError):
        greedy_coreset(np.zeros((0, 8), np.float32), count=1)
    bad = x.copy()
    bad[5, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        greedy_coreset(bad, count=3)
    with pytest.raises(InputError, match="2-D"):
        greedy_coreset(np.zeros(8, np.float32), count=1)


def test_batched_matches_one_set_at_a_time() -> None:
    sets = np.stack([_blobs(n=300, dim=150, seed=s) for s in range(3)])
    ids = greedy_coreset_batched(sets, count=20, seed=2)
    assert ids.shape == (3, 20)
    for x, row in zip(sets, ids):
        np.testing.assert_array_equal(row, greedy_coreset(x, count=20, seed=2, half=False))
    assert greedy_coreset_batched(sets[:, :5], count=9).shape == (3, 5)
    with pytest.raises(InputError, match="B, N, D"):
        greedy_coreset_batched(sets[0], count=3)
    with pytest.raises(InputError, match="count"):
        greedy_coreset_batched(sets, count=0)
    bad = sets.copy()
    bad[1, 4, 0] = np.inf
    with pytest.raises(InputError, match="NaN"):
        greedy_coreset_batched(bad, count=3)
