"""`oddeye bench scale`: batch scoring on Ray against the plain loop, on Ped2 test clips and magnetic-tile images.

    oddeye bench scale --workers 1,2 --videos 12 --images 128

Models are fitted first (`oddeye fit video-rules` on Ped2 training frames, `oddeye fit image` PatchCore on a seeded
share of MT_Free), small and quick. Then the same inputs are scored, in interleaved rounds, by the plain loop on
one thread (in a process of its own, as `oddeye score` runs; oddeye.scale.plainrun), by Ray with each worker count
on one thread per worker (so W workers use W cores: `speedup` is how Ray scales with cores, `overhead` what Ray
costs on one core), and by the plain loop on every core (what `--ray` gives over the default on this machine).
Each worker count is warmed up (every worker has loaded the models) right before its timed run: the figures are
steady-state throughput, what an archive of many hours sees. Each figure is the median over the rounds. The last
stdout line is JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from oddeye.core.errors import InputError
from oddeye.core.head import RunContext, read_manifest
from oddeye.core.types import Result

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
PED2, TILES = DATA / "ucsd_ped2", DATA / "magnetic_tile"
TILE_CLASSES = ("Free", "Blowhole", "Break", "Crack", "Fray", "Uneven")
SEED = 0
N_TRAIN_TILES = 48
RULES_SHOTS = 48
ROUNDS = 3  # timed rounds; each figure is the median over them (the rounds interleave the ways of running)
IMAGE_SETTINGS = ["--head", "patchcore", "--coreset", "0.05", "--max-bank", "4000", "--image-size", "224"]


def _tiles(root: Path, n_test: int, seed: int) -> tuple[list[Path], list[Path]]:
    """(normal training images, test images): a seeded share of MT_Free trains; the test images are drawn from
    the rest of MT_Free and every defect class (JPEG images only; the PNGs beside them are masks)."""
    free = sorted((root / "MT_Free" / "Imgs").glob("*.jpg"))
    if not free:
        raise InputError(f"no magnetic-tile images under {root}",
                         "pass --tiles DIR (the magnetic_tile folder of ../shared/data, see its README)")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(free))
    train = [free[i] for i in order[:N_TRAIN_TILES]]
    pool = [free[i] for i in order[N_TRAIN_TILES:]]
    for c in TILE_CLASSES[1:]:
        pool += sorted((root / f"MT_{c}" / "Imgs").glob("*.jpg"))
    test = [pool[i] for i in np.sort(rng.permutation(len(pool))[:n_test])]
    return train, test


def _clips(root: Path, n: int) -> tuple[Path, list[Path]]:
    """(the training frames folder, the first n test clips as frame folders) of Ped2."""
    train, test = root / "training" / "frames", root / "testing" / "frames"
    clips = sorted(p for p in test.iterdir() if p.is_dir()) if test.is_dir() else []
    if not train.is_dir() or not clips:
        raise InputError(f"no Ped2 frames under {root}",
                         "pass --ped2 DIR (the ucsd_ped2 folder of ../shared/data, see its README)")
    return train, clips[:n]


def _fit(args: list[str], log: Callable[[str], None]) -> None:
    """Run `oddeye fit ...` in a child process (its output is not timed)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "oddeye", "fit", *args], capture_output=True, text=True)
    if proc.returncode:
        raise InputError(f"`oddeye fit {' '.join(args[:1])}` failed: {proc.stderr.strip()[-500:]}")
    log(f"fitted {args[0]} in {time.perf_counter() - t0:.0f} s")


def fit_models(work: Path, ped2: Path, tiles: Path, n_videos: int, n_images: int,
               log: Callable[[str], None]) -> dict[str, tuple[Path, list[Path], int]]:
    """kind -> (model folder, inputs, inputs per task): the rules model on Ped2, PatchCore on magnetic tiles."""
    train_frames, clips = _clips(ped2, n_videos)
    train_tiles, test_tiles = _tiles(tiles, n_images, SEED)
    normal = work / "train-tiles"
    normal.mkdir(parents=True, exist_ok=True)
    for p in train_tiles:  # a folder of the chosen normal images (their masks stay out)
        (normal / p.name).unlink(missing_ok=True)
        (normal / p.name).symlink_to(p)
    _fit(["video-rules", "--frames", str(train_frames), "--out", str(work / "rules"), "--shots", str(RULES_SHOTS),
          "--no-progress"], log)
    _fit(["image", "--train", str(normal), "--out", str(work / "patchcore"), "--seed", str(SEED), *IMAGE_SETTINGS],
         log)
    batch = int(read_manifest(work / "patchcore")["config"]["batch_size"])
    return {"videos": (work / "rules", clips, 1), "images": (work / "patchcore", test_tiles, batch)}


def _same(a: Result, b: Result) -> bool:
    """Whether two Results have the same sample ids, scores and per-frame series."""
    return [s.sample_id for s in a.scores] == [s.sample_id for s in b.scores] and all(
        np.array_equal(x.score, y.score) and np.array_equal(
            x.frame_scores if x.frame_scores is not None else [], y.frame_scores if y.frame_scores is not None else [])
        for x, y in zip(a.scores, b.scores))


def store_rate(results: list[Result], db: str | None, work: Path) -> tuple[float, int]:
    """(rows/s, rows) of writing `results` as runs into the store at `db` (default: a new SQLite file in `work`)."""
    from oddeye.store.api import save_result
    from oddeye.store.convert import attached_rows, sample_rows

    rows, t = 0, 0.0
    for r in results:
        samples = sample_rows(r, 0, None)
        rows += 1 + len(samples) + sum(map(len, attached_rows(r, 0, list(range(len(samples))),
                                                              [x["path"] for x in samples])))
        t0 = time.perf_counter()
        save_result(db or str(work / "store.db"), r, kind="bench-scale")
        t += time.perf_counter() - t0
    return rows / max(t, 1e-9), rows


def run_scale_bench(workers: list[int], n_videos: int, n_images: int, ped2: Path = PED2, tiles: Path = TILES,
                    db: str | None = None, work: Path | None = None, log: Callable[[str], None] = print,
                    rounds: int = ROUNDS) -> dict[str, Any]:
    """Time the plain loop and Ray with each worker count on the same inputs; the figures as a dict. Models go
    under `work` (default: a temp folder, removed after)."""
    if work is not None:
        return _run(workers, n_videos, n_images, ped2, tiles, db, Path(work), log, rounds)
    with tempfile.TemporaryDirectory(prefix="oddeye-bench-scale-") as tmp:
        return _run(workers, n_videos, n_images, ped2, tiles, db, Path(tmp), log, rounds)


def _run(workers: list[int], n_videos: int, n_images: int, ped2: Path, tiles: Path, db: str | None, work: Path,
         log: Callable[[str], None], rounds: int = ROUNDS) -> dict[str, Any]:
    """run_scale_bench() with its work folder."""
    from oddeye.scale.batch import IMAGE_GROUP, run_on_ray
    from oddeye.scale.plainrun import plain_in_process
    from oddeye.scale.runtime import cpus, ray_runtime

    models = fit_models(work, ped2, tiles, n_videos, n_images, log)
    cores = cpus()
    doc: dict[str, Any] = {"dataset": "ucsd-ped2 test clips + magnetic-tile images", "seed": SEED, "cores": cores,
                           "workers": workers, "videos": n_videos, "images": n_images, "rounds": rounds}
    # seconds[config][kind]: one figure per round; configs "plain" (one thread), "all" (every core), and w workers
    seconds: dict[Any, dict[str, list[float]]] = {c: {k: [] for k in models} for c in ["plain", "all", *workers]}
    plain: dict[str, Result] = {}
    identical, timed_loads = True, 0
    t0 = time.perf_counter()
    with ray_runtime(None, num_cpus=cores):
        doc["ray_start_s"] = round(time.perf_counter() - t0, 2)
        for r in range(rounds):
            for kind, (m, x, per) in models.items():
                for config, threads in (("all", cores), ("plain", 1)):  # Ray is compared with the one-thread loop
                    s, plain[kind] = plain_in_process(m, x, per, threads, work)
                    seconds[config][kind].append(s)
                for w in workers:  # each worker count warmed up (every worker has the model) right before its run
                    run_on_ray(m, x[: w * per], RunContext(progress=False), address=None, db=None, per_task=per,
                               workers=w, threads=1)
                    t1 = time.perf_counter()
                    b = run_on_ray(m, x, RunContext(progress=False), address=None, db=None, per_task=per,
                                   workers=w, threads=1, group=IMAGE_GROUP if kind == "images" else 1)
                    seconds[w][kind].append(time.perf_counter() - t1)
                    identical &= b.failed == 0 and _same(plain[kind], b.result)
                    timed_loads += b.loads
                    if b.loads:
                        log(f"  (ray x{w}, {kind}: {b.loads} model load(s) fell in the timed run)")
                    if r == rounds - 1 and w == max(workers):
                        last = b.result
                log(f"round {r + 1}/{rounds}, {kind}: " + ", ".join(
                    f"{c if isinstance(c, str) else f'ray x{c}'} {v[kind][-1]:.2f} s" for c, v in seconds.items()))
    frames = sum(len(s.frame_scores) for s in plain["videos"].scores if s.frame_scores is not None)
    rate, rows = store_rate([plain["images"], last], db, work)
    med = {c: {k: float(np.median(v)) for k, v in kinds.items()} for c, kinds in seconds.items()}
    total = {c: sum(v.values()) for c, v in med.items()}
    lo, hi = min(workers), max(workers)
    doc.update({
        "speedup": round(total[lo] / total[hi], 3),
        "speedup_images": round(med[lo]["images"] / med[hi]["images"], 3),
        "speedup_videos": round(med[lo]["videos"] / med[hi]["videos"], 3),
        "overhead": round(total[1] / total["plain"] - 1, 3) if 1 in total else None,
        "store_rows_per_s": round(rate, 1), "store_rows": rows, "store": "postgresql" if db else "sqlite",
        "frames": frames, "identical": identical, "model_loads_in_timed_runs": timed_loads,
        "plain_s": round(total["plain"], 2), "plain_images_per_s": round(n_images / med["plain"]["images"], 2),
        "plain_frames_per_s": round(frames / med["plain"]["videos"], 1),
        "plain_all_cores_s": round(total["all"], 2),
        "plain_all_cores_images_per_s": round(n_images / med["all"]["images"], 2),
        "plain_all_cores_frames_per_s": round(frames / med["all"]["videos"], 1),
        f"ray{hi}_over_plain_all_cores": round(total["all"] / total[hi], 3),
    })
    for w in workers:
        doc[f"ray{w}_s"] = round(total[w], 2)
        doc[f"ray{w}_images_per_s_per_worker"] = round(n_images / med[w]["images"] / w, 2)
        doc[f"ray{w}_frames_per_s_per_worker"] = round(frames / med[w]["videos"] / w, 1)
    return doc


def print_table(doc: dict[str, Any], log: Callable[[str], None] = print) -> None:
    """The figures for a person: one row per way of running."""
    hi = max(doc["workers"])
    log(f"{'run':<10} {'seconds':>8} {'images/s':>9} {'frames/s':>9}")
    log(f"{'plain, 1t':<10} {doc['plain_s']:>8.1f} {doc['plain_images_per_s']:>9.2f} {doc['plain_frames_per_s']:>9.1f}")
    log(f"{'plain, all':<10} {doc['plain_all_cores_s']:>8.1f} {doc['plain_all_cores_images_per_s']:>9.2f} "
        f"{doc['plain_all_cores_frames_per_s']:>9.1f}")
    for w in doc["workers"]:
        ips = doc[f"ray{w}_images_per_s_per_worker"] * w
        fps = doc[f"ray{w}_frames_per_s_per_worker"] * w
        log(f"{f'ray x{w}':<10} {doc[f'ray{w}_s']:>8.1f} {ips:>9.2f} {fps:>9.1f}")
    log(f"speedup {doc['speedup']} ({hi} workers over {min(doc['workers'])}), overhead {doc['overhead']} (1 Ray "
        f"worker over the plain loop, one thread each), store {doc['store_rows_per_s']} rows/s ({doc['store']}); "
        f"Ray results identical to the plain loop: {doc['identical']}; {hi} workers over the plain loop on all "
        f"{doc['cores']} cores: {doc[f'ray{hi}_over_plain_all_cores']}x")


def bench_json(doc: dict[str, Any]) -> str:
    """The JSON line."""
    return json.dumps(doc)
