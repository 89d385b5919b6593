"""`oddeye score <kind> --ray`: the inputs fanned out as Ray tasks, merged back into the one Result of the plain path.

    result = score_on_ray("models/bottle", items, RunContext(out=out), address="local", db=None, per_task=16)

Each task scores a slice of the inputs (one video, scan or patrol run; a batch of images) with the model loaded once
per worker process; the driver shows one progress bar over the whole batch and merges the parts in input order.
A task that fails is retried once by Ray; if it fails again, each of its inputs is recorded as an error and the
others are kept. A user error raised in a task (an OddeyeError) is not retried: it stops the run as it would
without Ray. Nothing here imports Ray at module level.
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Callable, Sequence

import typer

from oddeye.core.errors import InputError, ModelError, OddeyeError
from oddeye.core.config import set_threads
from oddeye.core.head import MANIFEST, RunContext, context, read_manifest
from oddeye.core.types import Result
from oddeye.scale.runtime import check_store, is_local, ray_runtime

WorkersOpt = Annotated[int | None, typer.Option(
    "--workers", min=1, help="With --ray: tasks run at once (default: one per core of the runtime); each gets "
                             "cores / workers threads.")]
Configure = Callable[[Any], None]  # adjusts a loaded head, e.g. a CLI option on its config (a module-level function)
IMAGE_GROUP = 4  # an image head's feature-extraction batches per task at most (see task_size)
CACHED_MODELS = 2  # model folders (with their configure) a worker process keeps loaded

_MODELS: OrderedDict[tuple[str, int, bytes], Any] = OrderedDict()  # in each worker process: the loaded heads
_FNS: OrderedDict[str, Callable[[Any], Any]] = OrderedDict()  # in each worker process: map_on_ray's functions


@dataclass
class Part:
    """What one task sends back: its value (a Result, or fn's output), or the user error that stops the run;
    warnings to re-emit."""

    value: Any = None
    refused: OddeyeError | None = None
    warnings: list[tuple[type[Warning], str]] = field(default_factory=list)
    pid: int = 0
    loaded: bool = False  # this task loaded the model or fn (the first task of its worker process)
    seconds: float = 0.0


@dataclass
class Batch:
    """A run on Ray: the merged Result and what it took (tasks, worker processes, model loads, failed tasks)."""

    result: Result
    tasks: int
    workers: int
    threads: int
    pids: set[int]
    loads: int
    failed: int
    task_seconds: list[float]


def sample_name(x: Any) -> str:
    """The id an input is recorded under when its task fails: its `id` or `name`, else its file or folder name."""
    for attr in ("id", "name"):
        v = getattr(x, attr, None)
        if isinstance(v, str) and v:
            return v
    return Path(str(getattr(x, "source", x))).name


def sample_path(x: Any) -> str | None:
    """The local file or folder an input reads, if it is one."""
    p = getattr(x, "path", None) or getattr(x, "source", None) or x
    return str(p) if isinstance(p, (str, Path)) and Path(p).exists() else None


def task_size(n: int, per_task: int, group: int, workers: int) -> int:
    """Inputs per task: `per_task` units, grouped up to `group` units per task while every worker still gets at
    least two tasks (fewer, larger tasks cost less per input; enough of them keep the workers evenly busy)."""
    units = -(-n // max(1, per_task))
    return per_task * max(1, min(group, units // (2 * max(1, workers))))


def spans(n: int, per_task: int) -> list[tuple[int, int]]:
    """[lo, hi) slices of n inputs, `per_task` each (the last may be shorter)."""
    return [(lo, min(n, lo + per_task)) for lo in range(0, n, max(1, per_task))]


def task_context(ctx: RunContext, lo: int, hi: int, n: int) -> RunContext:
    """The context of the task scoring inputs [lo, hi) of n: no progress bar (the driver shows one), per-input
    poses sliced."""
    poses = ctx.poses
    if isinstance(poses, (list, tuple)) and len(poses) == n:
        poses = list(poses[lo:hi])
    return dataclasses.replace(ctx, progress=False, poses=poses)


def _absolute(x: Any) -> Any:
    """An input with a relative local path made absolute (workers on other nodes start elsewhere)."""
    if isinstance(x, (str, Path)) and Path(x).exists():
        return type(x)(Path(x).resolve())
    p = getattr(x, "path", None)
    if dataclasses.is_dataclass(x) and isinstance(p, str) and Path(p).exists():
        return dataclasses.replace(x, path=str(Path(p).resolve()))
    return x


def cached_head(model_dir: str, mtime_ns: int, configure: Configure | None) -> tuple[Any, bool]:
    """(the head of `model_dir`, whether this call loaded it): loaded once per worker process and kept while the
    folder's manifest is unchanged; `configure` is applied once, after loading."""
    from ray import cloudpickle

    from oddeye.core.head import load_head

    d = Path(model_dir)
    if not d.is_dir():
        raise ModelError(f"model folder {d} not found on Ray node {os.uname().nodename}",
                         "on a cluster, put the model folder and the inputs on a filesystem every node mounts, "
                         "at the same path")
    if (d / MANIFEST).stat().st_mtime_ns != mtime_ns:
        raise ModelError(f"model folder {d} changed while it was being scored", "score again once it is written")
    key = (str(d), mtime_ns, cloudpickle.dumps(configure))
    if key in _MODELS:
        _MODELS.move_to_end(key)
        return _MODELS[key], False
    head = load_head(d)
    if configure is not None:
        configure(head)
    _MODELS[key] = head
    while len(_MODELS) > CACHED_MODELS:
        _MODELS.popitem(last=False)
    return head, True


def _task(threads: int, body: Callable[[Part], Any]) -> Part:
    """Run `body(part)` in a worker with `threads` threads; its value, or the user error it raised (not retried:
    it would fail again), and the warnings it gave."""
    t0 = time.perf_counter()
    set_threads(threads)
    part = Part(pid=os.getpid())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            part.value = body(part)
        except OddeyeError as e:
            part.refused = e
    part.warnings = [(w.category, str(w.message)) for w in caught if issubclass(w.category, UserWarning)]
    part.seconds = time.perf_counter() - t0
    return part


def score_part(model_dir: str, mtime_ns: int, samples: list[Any], ctx: RunContext, threads: int,
               configure: Configure | None) -> Part:
    """One Ray task of score_on_ray: score `samples` with the (cached) head of `model_dir` -> Part (a Result)."""

    def body(part: Part) -> Result:
        head, part.loaded = cached_head(model_dir, mtime_ns, configure)
        return head.score(samples, ctx=ctx)

    return _task(threads, body)


def map_part(fn_ref: list[Any], item: Any, threads: int) -> Part:
    """One Ray task of map_on_ray: fn(item), with fn (in the one-item list `fn_ref`, an object-store reference)
    deserialized once per worker process."""

    def body(part: Part) -> Any:
        import ray

        key = fn_ref[0].hex()
        if key not in _FNS:
            _FNS[key] = ray.get(fn_ref[0])
            part.loaded = True
            while len(_FNS) > CACHED_MODELS:
                _FNS.popitem(last=False)
        return _FNS[key](item)

    return _task(threads, body)


def _plan(ray: Any, workers: int | None, threads: int | None = None) -> tuple[int, int, float]:
    """(workers, threads per worker, CPUs per task) on the runtime's cores: one worker per core by default; W
    workers on C cores get max(1, C // W) threads each (unless `threads` is given), and C / W CPUs so that W tasks
    run at once."""
    cores = float(ray.cluster_resources().get("CPU", 1.0))
    w = workers or max(1, int(cores))
    return w, threads or max(1, int(cores // w)), cores / w


def _gather(ray: Any, refs: list[Any], sizes: list[int], bar: Any) -> tuple[list[Part | None], dict[int, Exception]]:
    """Wait for every task (one progress bar over their inputs, `sizes` each) -> (parts in task order, None where
    the task failed twice; task -> its error). A user error from a task cancels the others and is raised."""
    from ray.exceptions import RayError

    where = {ref: k for k, ref in enumerate(refs)}
    parts: list[Part | None] = [None] * len(refs)
    failed: dict[int, Exception] = {}
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        k = where[done[0]]
        try:
            part = ray.get(done[0])
        except RayError as e:
            failed[k] = e
        else:
            if part.refused is not None:
                for ref in pending:
                    ray.cancel(ref, force=True)
                raise part.refused
            parts[k] = part
        bar.update(sizes[k])
    return parts, failed


def _failure(e: Exception) -> str:
    """A short reason for a task that failed twice: the task's own exception, or how its worker died."""
    cause = getattr(e, "cause", None)
    what = cause if isinstance(cause, BaseException) else e
    first = (str(what).strip().splitlines() or [""])[0][:300]
    return f"failed on a Ray worker after a retry: {type(what).__name__}{': ' + first if first else ''}"


def merge(parts: Sequence[Result], run: Result | None, head: str) -> Result:
    """The Result of the whole batch: `parts` concatenated in input order, with the run-level threshold, metrics
    and meta of `run` (a part that scored; a head's score() puts only per-sample things in scores and events, and
    the same threshold, metrics and meta in every part)."""
    run = run or Result(head=head)
    out = Result(head=run.head, threshold=run.threshold, metrics=dict(run.metrics), meta=dict(run.meta))
    for p in parts:
        out.scores.extend(p.scores)
        out.events.extend(p.events)
    return out


def failed_part(head: str, samples: Sequence[Any], reason: str, names: Callable[[Any], str]) -> Result:
    """The part of a task that failed twice: each of its inputs recorded as an error."""
    part = Result(head=head)
    for x in samples:
        part.add_error(names(x), reason, sample_path(x))
    return part


def score_on_ray(model_dir: str | Path, samples: Sequence[Any], ctx: RunContext | None = None, *,
                 address: str | None, db: str | None, per_task: int = 1, workers: int | None = None,
                 configure: Configure | None = None, names: Callable[[Any], str] = sample_name,
                 desc: str = "score", unit: str = "input", group: int = 1) -> Result:
    """Score `samples` with the model folder on Ray; the same Result as load_head(model_dir).score(samples, ctx).

    per_task: inputs per task (a head's natural unit: 1 video, scan or run; the image batch size); group: up to
    this many units per task when there are enough (see task_size). configure: a
    module-level function applied to the head after each worker loads it (e.g. a CLI option changing its config).
    names: the id an input is recorded under when its task fails twice.
    """
    return run_on_ray(model_dir, samples, ctx, address=address, db=db, per_task=per_task, workers=workers,
                      configure=configure, names=names, desc=desc, unit=unit, group=group).result


def run_on_ray(model_dir: str | Path, samples: Sequence[Any], ctx: RunContext | None = None, *,
               address: str | None, db: str | None, per_task: int = 1, workers: int | None = None,
               configure: Configure | None = None, names: Callable[[Any], str] = sample_name,
               desc: str = "score", unit: str = "input", group: int = 1, threads: int | None = None) -> Batch:
    """score_on_ray(), and what the run took (see Batch). threads: per worker (default: cores // workers)."""
    from tqdm.auto import tqdm

    check_store(db, address)
    ctx = context(ctx)
    head_name = read_manifest(model_dir)["head"]
    model = Path(model_dir).expanduser().resolve()
    mtime = (model / MANIFEST).stat().st_mtime_ns
    items = list(samples)
    if not items:
        raise InputError("nothing to score", "pass at least one input")
    if not is_local(address):
        items = [_absolute(x) for x in items]
        if ctx.out is not None:
            ctx = dataclasses.replace(ctx, out=Path(ctx.out).resolve())
    with ray_runtime(address) as ray, tqdm(total=len(items), desc=f"{desc} on Ray", unit=unit,
                                           disable=not ctx.progress) as bar:
        w, threads, ncpu = _plan(ray, workers, threads)
        cuts = spans(len(items), task_size(len(items), per_task, group, w))
        task = ray.remote(max_retries=1, retry_exceptions=True)(score_part).options(num_cpus=ncpu)
        refs = [task.remote(str(model), mtime, items[lo:hi], task_context(ctx, lo, hi, len(items)), threads,
                            configure) for lo, hi in cuts]
        parts, failed = _gather(ray, refs, [hi - lo for lo, hi in cuts], bar)
    ok = [p for p in parts if p is not None]
    results = [failed_part(head_name, items[lo:hi], _failure(failed[k]), names) if k in failed else parts[k].value
               for k, (lo, hi) in enumerate(cuts)]
    result = merge(results, ok[0].value if ok else None, head_name)
    _rewarn(ok)
    return Batch(result=result, tasks=len(cuts), workers=w, threads=threads, pids={p.pid for p in ok},
                 loads=sum(p.loaded for p in ok), failed=len(failed), task_seconds=[p.seconds for p in ok])


def _rewarn(parts: list[Part]) -> None:
    """The warnings the tasks gave, given again here in input order (e.g. for a command that shows some)."""
    for p in parts:
        for category, message in p.warnings:
            warnings.warn(message, category, stacklevel=3)


def map_on_ray(fn: Callable[[Any], Any], items: Sequence[Any], *, address: str | None, workers: int | None = None,
               desc: str = "map", unit: str = "item", progress: bool = True) -> list[Any]:
    """[fn(x) for x in items], one Ray task per item, in order. `fn` (a module-level function, or a partial of one
    holding e.g. a fitted head) goes once into Ray's object store and is deserialized once per worker process.
    A task that fails twice raises its error here, once the others are done."""
    from tqdm.auto import tqdm

    items = list(items)
    with ray_runtime(address) as ray, tqdm(total=len(items), desc=f"{desc} on Ray", unit=unit,
                                           disable=not progress) as bar:
        _, threads, ncpu = _plan(ray, workers)
        fn_ref = ray.put(fn)
        task = ray.remote(max_retries=1, retry_exceptions=True)(map_part).options(num_cpus=ncpu)
        refs = [task.remote([fn_ref], x, threads) for x in items]
        parts, failed = _gather(ray, refs, [1] * len(items), bar)
    if failed:
        e = failed[min(failed)]
        cause = getattr(e, "cause", None)
        raise cause if isinstance(cause, Exception) else e
    _rewarn([p for p in parts if p is not None])
    return [p.value for p in parts if p is not None]


def ray_mapper(address: str | None, workers: int | None = None, desc: str = "map", unit: str = "item"
               ) -> Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]]:
    """A map(fn, items) that runs on Ray at `address` (see map_on_ray), for an evaluation's per-item work."""
    return partial(map_on_ray, address=address, workers=workers, desc=desc, unit=unit)
