"""`oddeye bench index` and `oddeye bench coreset`: speed and recall of PatchIndex kinds, coreset time."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import typer

from oddeye.core.errors import InputError
from oddeye.retrieval.index import KINDS, PatchIndex

DATA_KINDS = ("normal", "clustered")


def make_vectors(n: int, dim: int, seed: int = 0, data: str = "normal") -> np.ndarray:
    """(n, dim) float32 test vectors: i.i.d. standard normal, or a Gaussian mixture on low-dim subspaces.

    "clustered": 1,000 centres; each point = centre + a 16-dim random subspace of its cluster + small noise,
    the low intrinsic dimension that CNN patch features have (i.i.d. normal data has none: the hardest case).
    """
    if data not in DATA_KINDS:
        raise InputError(f"--data must be one of {DATA_KINDS}, got {data!r}")
    rng = np.random.default_rng(seed)
    if data == "normal":
        return rng.standard_normal((n, dim), dtype=np.float32)
    crng = np.random.default_rng(12345)  # the same mixture for base and queries; `seed` draws the points
    n_c, sub = 1000, 16
    centres = crng.standard_normal((n_c, dim), dtype=np.float32)
    bases = crng.standard_normal((n_c, sub, dim), dtype=np.float32) * (0.5 / np.sqrt(sub))
    out = np.empty((n, dim), np.float32)
    step = 8192  # the gathered (step, 16, dim) bases stay ~130 MB
    for s in range(0, n, step):
        m = min(step, n - s)
        lab = rng.integers(0, n_c, m)
        z = rng.standard_normal((m, sub), dtype=np.float32)
        out[s:s + m] = centres[lab] + np.einsum("ms,msd->md", z, bases[lab]) \
            + 0.05 * rng.standard_normal((m, dim), dtype=np.float32)
    return out


def exact_nn(x: np.ndarray, q: np.ndarray, q_chunk: int = 1024, x_chunk: int = 131072) -> tuple[np.ndarray, np.ndarray, float]:
    """Exact 1-NN of q (M, D) in x (N, D) by torch.cdist + min in chunks: (dist (M,), ids (M,), seconds)."""
    import torch

    xt, qt = torch.from_numpy(x), torch.from_numpy(q)
    best_d = torch.full((len(q),), float("inf"))
    best_i = torch.zeros(len(q), dtype=torch.int64)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for qs in range(0, len(q), q_chunk):
            qc = qt[qs:qs + q_chunk]
            for xs in range(0, len(x), x_chunk):
                d, i = torch.cdist(qc, xt[xs:xs + x_chunk]).min(dim=1)
                better = d < best_d[qs:qs + q_chunk]
                best_d[qs:qs + q_chunk] = torch.where(better, d, best_d[qs:qs + q_chunk])
                best_i[qs:qs + q_chunk] = torch.where(better, i + xs, best_i[qs:qs + q_chunk])
    return best_d.numpy(), best_i.numpy(), time.perf_counter() - t0


def recall_at_1(ids: np.ndarray, exact_d: np.ndarray, exact_i: np.ndarray, x: np.ndarray, q: np.ndarray) -> float:
    """Share of queries whose first id (M, k) is the exact neighbour or lies exactly as near (a tie).

    The tie test uses the true distance of the returned vector, never the index's own (IVF-PQ's is approximate).
    """
    first = ids[:, 0]
    true_d = np.linalg.norm(q - x[np.clip(first, 0, len(x) - 1)], axis=1)
    hit = (first == exact_i) | ((first >= 0) & (true_d <= exact_d * (1 + 1e-5) + 1e-6))
    return float(hit.mean())


def _parse_ints(text: str, name: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{name} must be comma-separated integers, got {text!r}") from None
    if any(v < 1 for v in vals):
        raise InputError(f"{name} values must be >= 1, got {text!r}")
    return vals


def bench_index(n: int, dim: int, queries: int, k: int, kinds: list[str], data: str = "normal", seed: int = 0,
                nprobe: list[int] | None = None, ef_search: list[int] | None = None, target: float = 0.95,
                log: Any = print) -> dict[str, Any]:
    """Build every kind on n x dim vectors, time search of `queries` against exact cdist; return the figures."""
    bad = [kd for kd in kinds if kd not in KINDS]
    if bad:
        raise InputError(f"unknown index kind(s) {bad}", f"choose from {','.join(KINDS)}")
    for v, name in ((n, "--n"), (dim, "--dim"), (queries, "--queries"), (k, "--k")):
        if v < 1:
            raise InputError(f"{name} must be >= 1, got {v}")
    x = make_vectors(n, dim, seed, data)
    q = make_vectors(queries, dim, seed + 1, data)
    exact_d, exact_i, t_cdist = exact_nn(x, q)
    log(f"exact torch.cdist+min: {t_cdist:.2f} s for {queries} queries x {n} vectors")
    rows: list[dict[str, Any]] = []
    for kind in kinds:
        t0 = time.perf_counter()
        index = PatchIndex.build(x, kind=kind, device="cpu", progress=n >= 262144)
        t_build = time.perf_counter() - t0
        settings: list[dict[str, int]] = [{}]
        if kind == "ivf" and nprobe:
            settings = [{"nprobe": v} for v in nprobe]
        elif kind == "hnsw" and ef_search:
            settings = [{"ef_search": v} for v in ef_search]
        for st in settings:
            index.set_search_params(**st)
            t0 = time.perf_counter()
            dist, ids = index.search(q, k=k)
            t_search = time.perf_counter() - t0
            row = {"kind": kind, "build_s": round(t_build, 3), "search_s": round(t_search, 4),
                   "recall_at_1": recall_at_1(ids, exact_d, exact_i, x, q), "speedup": t_cdist / max(t_search, 1e-9),
                   "bytes_per_vector": index.bytes_per_vector(),
                   "params": {kk: index.params[kk] for kk in ("nlist", "nprobe", "ef_search", "M", "ef_construction", "pq_m", "nbits")
                              if index.params.get(kk) is not None and _relevant(kind, kk)}}
            rows.append(row)
            log(f"{kind} {row['params']}: build {t_build:.1f} s, search {t_search:.2f} s, "
                f"recall@1 {row['recall_at_1']:.4f}, speedup {row['speedup']:.1f}x")
        del index
    approx = [r for r in rows if r["kind"] in ("ivf", "hnsw")]
    meeting = [r for r in approx if r["recall_at_1"] >= target]
    best = max(meeting, key=lambda r: r["speedup"]) if meeting else (
        max(approx, key=lambda r: r["recall_at_1"]) if approx else None)
    flat = next((r for r in rows if r["kind"] == "flat"), None)
    return {"n": n, "dim": dim, "queries": queries, "k": k, "data": data, "seed": seed, "cdist_s": round(t_cdist, 3),
            "flat_speedup": flat["speedup"] if flat else None,
            "best_kind": best["kind"] if best else None, "recall": best["recall_at_1"] if best else None,
            "speedup": best["speedup"] if best else None, "target_recall": target,
            "target_met": bool(best and best["recall_at_1"] >= target and best["speedup"] >= 20
                               and (flat is None or flat["speedup"] >= 1.0)),
            "rows": rows}


def _relevant(kind: str, key: str) -> bool:
    return {"flat": (), "hnsw": ("ef_search", "M", "ef_construction"), "ivf": ("nlist", "nprobe"),
            "ivfpq": ("nlist", "nprobe", "pq_m", "nbits")}[kind].__contains__(key)


def bench_coreset(n: int, dim: int, ratio: float, proj_dim: int = 128, seed: int = 0, data: str = "normal",
                  half: bool | None = None, radius_sample: int = 0) -> dict[str, Any]:
    """Time greedy_coreset on n x dim vectors; optionally the covering radius on a sample vs a random subset."""
    from oddeye.retrieval.coreset import greedy_coreset

    x = make_vectors(n, dim, seed, data)
    t0 = time.perf_counter()
    ids = greedy_coreset(x, ratio=ratio, proj_dim=proj_dim, seed=seed, half=half, progress=True)
    secs = time.perf_counter() - t0
    doc: dict[str, Any] = {"n": n, "dim": dim, "ratio": ratio, "count": int(len(ids)), "proj_dim": proj_dim,
                           "data": data, "seed": seed, "coreset_s": round(secs, 2),
                           "points_per_s": round(len(ids) / secs, 1)}
    if radius_sample:
        rng = np.random.default_rng(seed + 7)
        probe = x[rng.choice(n, size=min(radius_sample, n), replace=False)]
        core = PatchIndex.build(x[ids], kind="flat")
        rand = PatchIndex.build(x[rng.choice(n, size=len(ids), replace=False)], kind="flat")
        doc["radius_coreset"] = float(core.search(probe, 1)[0].max())
        doc["radius_random"] = float(rand.search(probe, 1)[0].max())
    return doc


def print_bench(doc: dict[str, Any], title: str) -> None:
    """A table of the rows (if any) for a person, then the whole doc as ONE JSON line (the last stdout line)."""
    from rich.console import Console
    from rich.table import Table

    from oddeye.core.types import to_jsonable

    table = Table(title=title)
    if doc.get("rows"):
        for col in ("kind", "params", "build s", "search s", "recall@1", "speedup", "bytes/vec"):
            table.add_column(col, justify="left" if col in ("kind", "params") else "right")
        for r in doc["rows"]:
            table.add_row(r["kind"], " ".join(f"{a}={b}" for a, b in r["params"].items()), f"{r['build_s']:.1f}",
                          f"{r['search_s']:.2f}", f"{r['recall_at_1']:.4f}", f"{r['speedup']:.1f}x",
                          f"{r['bytes_per_vector']:.0f}")
    else:
        table.add_column("figure")
        table.add_column("value", justify="right")
        for key, val in doc.items():
            table.add_row(key, f"{val:.4g}" if isinstance(val, float) else str(val))
    Console(highlight=False).print(table)
    print(json.dumps(to_jsonable(doc)), flush=True)


def register(cli) -> None:  # noqa: ANN001 - oddeye.cli.CliGroups
    """Add `bench index` and `bench coreset`."""

    @cli.bench.command("index")
    def index_cmd(
        n: int = typer.Option(1_000_000, "--n", help="Number of indexed vectors."),
        dim: int = typer.Option(256, "--dim", help="Vector dimension."),
        queries: int = typer.Option(10_000, "--queries", help="Number of query vectors."),
        k: int = typer.Option(1, "--k", help="Neighbours per query."),
        kinds: str = typer.Option("flat,ivf,hnsw,ivfpq", "--kinds", help="Comma-separated kinds to measure."),
        data: str = typer.Option("normal", "--data", help="normal (i.i.d., hardest for ANN) or clustered."),
        nprobe: str = typer.Option("", "--nprobe", help="ivf nprobe values to sweep, e.g. 64,256."),
        ef_search: str = typer.Option("", "--ef-search", help="hnsw efSearch values to sweep, e.g. 128,512."),
        seed: int = typer.Option(0, "--seed", help="Seed of the random vectors."),
        threads: int = typer.Option(0, "--threads", help="Threads (0: all cores)."),
    ) -> None:
        """Measure PatchIndex kinds against exact torch.cdist+min: build/search time, recall@1, speedup, bytes/vector.

        Example: oddeye bench index --n 200000 --dim 256 --queries 2000 --kinds flat,ivf,hnsw --nprobe 64,256
        """
        from oddeye.core.config import set_threads

        set_threads(threads or None)
        doc = bench_index(n, dim, queries, k, [s.strip() for s in kinds.split(",") if s.strip()], data=data,
                          seed=seed, nprobe=_parse_ints(nprobe, "--nprobe"),
                          ef_search=_parse_ints(ef_search, "--ef-search"),
                          log=lambda s: typer.echo(s, err=True))
        print_bench(doc, f"PatchIndex on {n} x {dim} {data} vectors, {queries} queries, k={k}")

    @cli.bench.command("coreset")
    def coreset_cmd(
        n: int = typer.Option(1_000_000, "--n", help="Number of vectors."),
        dim: int = typer.Option(512, "--dim", help="Vector dimension."),
        ratio: float = typer.Option(0.01, "--ratio", help="Share of vectors to keep."),
        proj_dim: int = typer.Option(128, "--proj-dim", help="Random projection dimension (0: none)."),
        data: str = typer.Option("normal", "--data", help="normal or clustered."),
        half: str = typer.Option("auto", "--half", help="float16 mat-vec: auto, on or off."),
        radius_sample: int = typer.Option(0, "--radius-sample",
                                          help="Also measure the covering radius on this many points (0: skip)."),
        seed: int = typer.Option(0, "--seed", help="Seed."),
    ) -> None:
        """Time the greedy k-centre coreset (random projection + farthest-point selection).

        Example: oddeye bench coreset --n 1000000 --dim 512 --ratio 0.01
        """
        from oddeye.core.config import set_threads

        if half not in ("auto", "on", "off"):
            raise InputError(f"--half must be auto, on or off, got {half!r}")
        set_threads()
        doc = bench_coreset(n, dim, ratio, proj_dim, seed, data, None if half == "auto" else half == "on",
                            radius_sample)
        print_bench(doc, f"greedy coreset of {n} x {dim} {data} vectors, ratio {ratio}")
