"""Greedy k-centre coreset (PatchCore's approximate greedy subsampling with a random projection), in torch."""

from __future__ import annotations

from typing import Any

import numpy as np

from oddeye.core.errors import EmptyDataError, InputError

CHUNK = 65536


def coreset_size(n: int, ratio: float | None, count: int | None) -> int:
    """How many of n points to keep: `count`, or round(ratio * n) (at least 1); exactly one must be given."""
    if (ratio is None) == (count is None):
        raise InputError("give exactly one of ratio= or count= for the coreset")
    if ratio is not None:
        if not (0 < float(ratio) <= 1):
            raise InputError(f"coreset ratio must be in (0, 1], got {ratio}")
        return max(1, int(round(float(ratio) * n)))
    if not isinstance(count, (int, np.integer)) or count < 1:
        raise InputError(f"coreset count must be a positive integer, got {count!r}")
    return int(min(count, n))


def _as_tensor(x: Any) -> Any:
    import torch

    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        try:
            t = torch.from_numpy(np.ascontiguousarray(np.asarray(x, dtype=np.float32)))
        except (TypeError, ValueError) as e:
            raise InputError(f"coreset input must be a numeric (N, D) array ({e})") from None
    if t.ndim != 2:
        raise InputError(f"coreset input must be a 2-D (N, D) array, got shape {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise EmptyDataError("coreset input holds 0 vectors", "pass the normal patch features")
    return t


def _projection(d: int, proj_dim: int, seed: int) -> Any:
    """The seeded Gaussian projection (d, proj_dim) float32, or None when d <= proj_dim (or proj_dim is 0)."""
    import torch

    if not proj_dim or d <= proj_dim:
        return None
    return torch.randn(d, proj_dim, generator=torch.Generator().manual_seed(int(seed))) / proj_dim**0.5


def _project(x: Any, proj_dim: int, seed: int, device: str) -> Any:
    """x (N, D) -> (N, min(D, proj_dim)) float32 on `device`: a seeded Gaussian projection, chunked; NaN -> error."""
    import torch

    n, d = x.shape
    w = _projection(d, proj_dim, seed)
    w = None if w is None else w.to(device)
    out = torch.empty((n, proj_dim if w is not None else d), dtype=torch.float32, device=device)
    for s in range(0, n, CHUNK):
        chunk = x[s:s + CHUNK].to(device=device, dtype=torch.float32)
        if not torch.isfinite(chunk).all():
            raise InputError(f"coreset input holds NaN or inf (rows {s}..{s + chunk.shape[0] - 1})",
                             "check the feature extractor's input")
        out[s:s + CHUNK] = chunk @ w if w is not None else chunk
    out -= out.mean(dim=0, dtype=torch.float64).to(torch.float32)
    scale = out.pow(2).sum(1).mean().sqrt().clamp_min(1e-12)
    out /= scale  # mean squared norm 1: keeps float16 dot products far from overflow
    return out


def greedy_coreset(x: Any, ratio: float | None = None, count: int | None = None, proj_dim: int = 128, seed: int = 0,
                   device: str = "cpu", half: bool | None = None, progress: bool | None = None) -> np.ndarray:
    """Ids (K,) int64 of a greedy k-centre coreset of x (N, D), in selection order; K = count or ratio*N.

    Projects x to `proj_dim` dims (0/None: no projection) with a seeded Gaussian matrix, starts at a seeded random point and repeatedly
    takes the point farthest from all chosen ones (distance bookkeeping in float32). half=True stores the
    projected points in float16 for the per-step mat-vec (about 3x faster on CPU, see docs/index.md); the
    default (None) uses it for N >= 100,000. Stops early (K smaller) only if the remaining points duplicate
    chosen ones exactly.
    """
    import torch
    from tqdm.auto import tqdm

    t = _as_tensor(x)
    n = int(t.shape[0])
    k = coreset_size(n, ratio, count)
    if proj_dim is not None and proj_dim < 0:
        raise InputError(f"proj_dim must be >= 0 (0 or None: no projection), got {proj_dim}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    z = _project(t, int(proj_dim or 0), seed, device)
    if k >= n:
        return np.arange(n, dtype=np.int64)
    use_half = (n >= 100_000) if half is None else bool(half)
    if use_half:
        z = z.to(torch.float16)
    sq = torch.empty(n, dtype=torch.float32, device=device)
    for s in range(0, n, CHUNK):
        sq[s:s + CHUNK] = z[s:s + CHUNK].float().pow(2).sum(1)
    mind = torch.full((n,), float("inf"), dtype=torch.float32, device=device)
    d = torch.empty(n, dtype=torch.float32, device=device)
    g = torch.Generator().manual_seed(int(seed))
    cur = int(torch.randint(n, (1,), generator=g))
    chosen = np.empty(k, dtype=np.int64)
    show = progress if progress is not None else k * n >= 10**9
    with torch.inference_mode(), tqdm(total=k, desc="coreset", unit="pt", disable=not show, leave=False) as bar:
        for i in range(k):
            chosen[i] = cur
            # squared distance of every point to the new centre: |x|^2 - 2 x.c + |c|^2
            dots = torch.mv(z, z[cur])
            d.copy_(dots).mul_(-2.0).add_(sq).add_(sq[cur])
            torch.minimum(mind, d, out=mind)
            mind[cur] = -1.0  # chosen points never win again
            if i + 1 < k:
                nxt = int(torch.argmax(mind))
                if float(mind[nxt]) <= 0.0:
                    left = mind > -1.0  # rounding can leave exact duplicates at ~0: take unchosen ones in order
                    rest = torch.nonzero(left).flatten()[: k - i - 1].cpu().numpy()
                    chosen[i + 1:i + 1 + len(rest)] = rest
                    chosen = chosen[: i + 1 + len(rest)]
                    bar.update(len(rest) + 1)
                    break
                cur = nxt
            if (i + 1) % 256 == 0 or i + 1 == k:
                bar.update((i + 1) - bar.n)
    return chosen


def covering_radius(x: np.ndarray, ids: np.ndarray, chunk: int = 4096) -> float:
    """Largest distance from any row of x (N, D) to its nearest chosen row x[ids] (exact, chunked; for tests/benchmarks)."""
    from oddeye.retrieval.index import PatchIndex

    index = PatchIndex.build(np.asarray(x, np.float32)[ids], kind="flat")
    worst = 0.0
    for s in range(0, len(x), chunk):
        dist, _ = index.search(x[s:s + chunk], k=1)
        worst = max(worst, float(dist.max()))
    return worst


def greedy_coreset_batched(x: Any, count: int, proj_dim: int = 128, seed: int = 0) -> np.ndarray:
    """Ids (B, K) int64 of a greedy k-centre coreset of each set in x (B, N, D), in selection order; K = min(count, N).

    The same seeded projection and start point as `greedy_coreset` (so each row matches it on that set), with the
    sets stepped together: for many small sets (the patches of each image) instead of one large one.
    """
    import torch

    t = x.detach() if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x, dtype=np.float32))
    if t.ndim != 3 or t.shape[0] == 0 or t.shape[1] == 0:
        raise InputError(f"batched coreset input must be a non-empty (B, N, D) array, got shape {tuple(t.shape)}")
    b, n, d = t.shape
    k = coreset_size(n, None, count)
    t = t.float()
    if not torch.isfinite(t).all():
        raise InputError("coreset input holds NaN or inf", "check the feature extractor's input")
    w = _projection(d, proj_dim, seed)
    if w is not None:
        t = t @ w
    start = int(torch.randint(n, (1,), generator=torch.Generator().manual_seed(int(seed))))
    rows = torch.arange(b)
    with torch.inference_mode():
        sq = t.pow(2).sum(2)  # (B, N)
        mind = torch.full((b, n), float("inf"))
        cur = torch.full((b,), start, dtype=torch.int64)
        chosen = torch.empty((b, k), dtype=torch.int64)
        for i in range(k):
            chosen[:, i] = cur
            centre = t[rows, cur]  # (B, D')
            dist = sq - 2.0 * torch.bmm(t, centre[:, :, None])[:, :, 0] + sq[rows, cur][:, None]
            torch.minimum(mind, dist, out=mind)
            mind[rows, cur] = -1.0  # chosen points never win again
            cur = mind.argmax(dim=1)
    return chosen.numpy()
