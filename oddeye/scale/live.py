"""`oddeye watch --ray`: every live source is one Ray actor holding its LiveSource (model + reader + writer).

    with ray_runtime(address, num_cpus=local_cpus(n_sources, 1.0)) as ray:
        summary = Watcher(cfg, runner=RaySources(ray)).run()

Each actor is created with max_restarts=-1 and asks Ray for `cpus_per_source` CPUs (and one GPU, while the cluster
has GPUs left, when its head computes with torch or FAISS). The driver keeps one thread per source that calls the
actor's long-running run() and, on SIGTERM / Ctrl-C, its stop() (a threaded actor: run() holds one thread, stop()
and progress() take another). When an actor's process dies (killed, out of memory, node lost), Ray starts it again,
the driver sees the failed run() and calls run() again, and the source resumes from the store as a restarted
`oddeye watch` does: the stream clock goes on after the last stored frame, events left open are closed, folder items
in the ledger are skipped. Nothing is lost or stored twice; every restart is logged in the run's live log as
"actor-restart". This module knows sources only through the Runner protocol of the watcher (duck-typed here).
"""

from __future__ import annotations

import math
import os
import pickle
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from oddeye.core.errors import InputError, OddeyeError, first_line
from oddeye.core.config import set_threads
from oddeye.core.head import read_manifest

# Heads whose scoring runs torch or FAISS and so gains from a GPU; the others (video-rules: OpenCV) stay on CPU.
GPU_HEADS = frozenset({"patchcore", "gaussian", "zero-shot", "video-prediction", "pointcloud", "patrol"})
SUMMED = ("frames", "items", "events", "errors", "reconnects", "dropped_frames")
CONCURRENCY = 3  # actor threads: run(), a repeated run() joining it after a lost reply, stop() / progress()
PROGRESS_EVERY_S = 2.0  # how often the driver asks each actor for its counts (kept if the actor dies)
STOP_WAIT_S = 60.0  # after a stop, how long an actor may take to flush and close its run
BACKOFF_START_S, BACKOFF_MAX_S = 0.5, 10.0  # between calls of run() on an actor that keeps dying
OPEN_NOTE_S = 30.0  # while actors are being placed and load their models, say so this often
LOG_FLUSH_S = 0.5  # before the actors go: time for their last lines (runs closed) to reach this console


def _say(line: str) -> None:
    print(line, flush=True)


def local_cpus(n_sources: int, cpus_per_source: float) -> int:
    """CPUs to start a local runtime with: this machine's, or enough that every source's actor is placed."""
    from oddeye.scale.runtime import cpus

    return max(cpus(), math.ceil(n_sources * cpus_per_source - 1e-9))


def _portable(e: OddeyeError) -> OddeyeError:
    """`e` if it survives pickling (Ray sends it to the driver), else an OddeyeError with its message and hint."""
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:  # noqa: BLE001 - any failure to round-trip means: send a plain one
        return OddeyeError(e.message, e.hint)


class SourceActor:
    """The Ray actor of one live source: builds the source from (class, spec, db), runs it, stops it on request.

    Ray runs the constructor again after the actor's process died; the source is then fresh and resumes from the
    store when run() opens it.
    """

    def __init__(self, factory: Callable[..., Any], spec: Any, db: str, threads: int, gpu: bool) -> None:
        self.unit = factory(spec, db, say=_say, device="cuda" if gpu else None)
        self.threads, self.gpu = threads, gpu
        self.stop_flag = threading.Event()
        self._running = threading.Lock()  # one run() at a time in this process
        self._report: dict[str, Any] | None = None  # the finished run's report

    def pid(self) -> int:
        """The actor's process id (tests kill it to check the restart)."""
        return os.getpid()

    def open(self) -> int:
        """Load the model, open the store and the live run (an open one is resumed); the run id."""
        try:
            run_id = self.unit.open()
        except OddeyeError as e:
            raise _portable(e) from None
        set_threads(self.threads, loaded_only=True)
        return run_id

    def run(self, attempt: int, reason: str) -> dict[str, Any]:
        """Score the source until stop() (or its file ends), then close its run; the report (see `report`).

        attempt > 0: the driver calls again after the call failed (`reason`). If Ray restarted the actor, the source
        resumes from the store and the restart is logged; if the actor was only out of reach, this call joins the
        run going on in this process (or returns its report), so that a source never runs twice.
        """
        with self._running:
            if self._report is not None:
                return self._report
            restarted = self.unit.run_id is None and (attempt > 0 or _reconstructed())  # not opened in this process
            self.open()
            if restarted:
                why = f" after: {reason}" if reason else ""
                self.unit.store.log_live(self.unit.run_id, "actor-restart",
                                         f"Ray started the actor of this source again (restart {max(attempt, 1)}, "
                                         f"pid {os.getpid()}){why}; it resumes from the store")
            self.unit.run(self.stop_flag)
            self._report = self.report()
            return self._report

    def progress(self) -> dict[str, Any]:
        """The source's counts so far in this process (LiveSource.summary())."""
        return self.unit.summary()

    def report(self) -> dict[str, Any]:
        """{"summary": LiveSource.summary(), "lags": (N,) s, "failed": why it could not run or None}."""
        return {"summary": self.unit.summary(), "lags": np.asarray(self.unit.stats.lags, dtype=np.float64),
                "failed": self.unit.failed}

    def stop(self) -> None:
        """Ask run() to flush and close (returns at once)."""
        self.stop_flag.set()

    def finish(self) -> None:
        """Close the source's run without scoring (its actor died while the watcher was stopping)."""
        self.open()
        self.unit.close()

    def describe(self) -> dict[str, Any]:
        """Where the source runs: pid, GPU ids Ray gave it, the head's device, whether its FAISS index is on a GPU."""
        import ray

        head = self.unit.head
        index = getattr(head, "index", None)
        return {"pid": os.getpid(), "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
                "device": str(getattr(head, "device", "")), "index_on_gpu": bool(getattr(index, "on_gpu", False))}


@dataclass
class _Slot:
    """The driver's view of one source: its actor and what its attempts reported."""

    actor: Any
    restarts: int = 0
    progress: dict[str, Any] = field(default_factory=dict)  # the running attempt's last counts
    totals: dict[str, Any] = field(default_factory=dict)  # finished or dead attempts, summed
    lags: list[np.ndarray] = field(default_factory=list)
    failed: str | None = None

    def absorb(self, summary: dict[str, Any]) -> None:
        """Add an attempt's counts to the totals."""
        for k in SUMMED:
            self.totals[k] = self.totals.get(k, 0) + int(summary.get(k, 0) or 0)
        if summary.get("run_id") is not None:
            self.totals["run_id"] = summary["run_id"]
        self.progress = {}


class RaySources:
    """The Runner of `watch --ray`: one actor per source (see the module docstring)."""

    def __init__(self, ray: Any, *, cpus_per_source: float = 1.0, say: Callable[[str], None] | None = None) -> None:
        """`ray`: the ray module with a runtime up; `cpus_per_source` > 0 (checked by the command)."""
        self.ray = ray
        self.cpus_per_source = float(cpus_per_source)
        self.say = say or _say
        self._slots: dict[str, _Slot] = {}
        self._closed = False

    # -- placement ----------------------------------------------------------------------------------------------
    def plan(self, sources: list[Any]) -> list[dict[str, float]]:
        """Ray resources of each source's actor: CPUs, and a GPU for a torch/FAISS head while the cluster has one
        left. A cluster with fewer CPUs in all than the sources ask for is refused (the actors would wait forever)."""
        have = self.ray.cluster_resources()
        gpus_left = int(have.get("GPU", 0))
        plans = []
        for src in sources:
            res = {"num_cpus": self.cpus_per_source, "num_gpus": 0}
            if gpus_left and read_manifest(src.spec.model)["head"] in GPU_HEADS:
                res["num_gpus"], gpus_left = 1, gpus_left - 1
            plans.append(res)
        need, cpus = sum(p["num_cpus"] for p in plans), float(have.get("CPU", 0))
        if need > cpus + 1e-9:
            raise InputError(f"{len(sources)} source(s) x {self.cpus_per_source:g} CPU = {need:g} CPUs, but the Ray "
                             f"cluster has {cpus:g}: the other actors could never be placed",
                             "add nodes (`ray start --address HEAD:6379` on each), or lower --cpus-per-source")
        return plans

    def open_all(self, sources: list[Any]) -> None:
        """Create every source's actor and open them all at once (models, store, runs); on a failure close the runs
        opened, kill the actors and re-raise (the first error). Says every OPEN_NOTE_S what it still waits for."""
        ray = self.ray
        plans = self.plan(sources)
        remote = ray.remote(SourceActor)
        for src, res in zip(sources, plans):
            actor = remote.options(max_restarts=-1, max_task_retries=0, max_concurrency=CONCURRENCY, **res).remote(
                type(src), src.spec, src.db, max(1, round(res["num_cpus"])), bool(res["num_gpus"]))
            self._slots[src.spec.name] = _Slot(actor=actor)
        gpus = sum(1 for p in plans if p["num_gpus"])
        self.say(f"Ray: {len(sources)} actor(s), {self.cpus_per_source:g} CPU each"
                 + (f", {gpus} on a GPU" if gpus else "") + "; loading models")
        by_ref = {self._slots[src.spec.name].actor.open.remote(): src for src in sources}
        pending, opened, first = list(by_ref), [], None
        while pending:
            done, pending = ray.wait(pending, num_returns=len(pending), timeout=OPEN_NOTE_S)
            for ref in done:
                src = by_ref[ref]
                try:
                    src.run_id = ray.get(ref)
                    opened.append(src.spec.name)
                except Exception as e:  # noqa: BLE001 - the first error is raised once the others are cleaned up
                    first = first or _cause(ray, e)
            if pending:
                free = ray.available_resources().get("CPU", 0.0)
                self.say(f"still waiting for {len(pending)} actor(s) to be placed and load their models "
                         f"({free:g} CPU(s) free in the cluster)")
        if first is not None:
            for name in opened:
                try:
                    ray.get(self._slots[name].actor.finish.remote(), timeout=STOP_WAIT_S)
                except Exception:  # noqa: BLE001,S110 - best effort: a run left open resumes on the next start
                    pass
            self.close()
            raise first

    # -- running ------------------------------------------------------------------------------------------------
    def run_one(self, src: Any, stop: Any) -> None:
        """Call the actor's run() until it returns; when the actor died, call it again (Ray restarted it) unless
        stopping, in which case the run is closed with finish()."""
        ray, name = self.ray, src.spec.name
        slot = self._slots[name]
        attempt, reason, backoff = 0, "", BACKOFF_START_S
        while True:
            started = time.monotonic()
            ref = slot.actor.run.remote(attempt, reason)
            try:
                report = self._wait(slot, ref, stop)
            except ray.exceptions.RayActorError as e:
                slot.absorb(slot.progress)  # the dead process's last counts
                if stop.is_set():
                    self._finish(name, slot)
                    return
                attempt, slot.restarts = attempt + 1, slot.restarts + 1
                reason = first_line(e)
                self.say(f"{name}: its actor died ({reason}); Ray restarts it and the source resumes from the store "
                         f"(restart {attempt})")
                backoff = BACKOFF_START_S if time.monotonic() - started > 30 else backoff
                stop.wait(backoff)
                backoff = min(2 * backoff, BACKOFF_MAX_S)
                continue
            except ray.exceptions.RayTaskError as e:
                raise _cause(ray, e) from None
            slot.absorb(report["summary"])
            slot.lags.append(np.asarray(report["lags"], dtype=np.float64))
            slot.failed = report["failed"]
            return

    def _wait(self, slot: _Slot, ref: Any, stop: Any) -> dict[str, Any]:
        """The result of run() `ref`, polling progress meanwhile and sending stop() once `stop` is set."""
        ray = self.ray
        stopping_at: float | None = None
        poll, next_poll = None, time.monotonic() + PROGRESS_EVERY_S
        while True:
            done, _ = ray.wait([ref], timeout=0.25)
            if done:
                return ray.get(ref)
            now = time.monotonic()
            if stop.is_set() and stopping_at is None:
                slot.actor.stop.remote()
                stopping_at = now
            if stopping_at is not None and now - stopping_at > STOP_WAIT_S:
                raise TimeoutError(f"the actor did not close its run within {STOP_WAIT_S:g} s of the stop; the run "
                                   "stays open and the next `oddeye watch` resumes it")
            if poll is None and now >= next_poll:
                poll, next_poll = slot.actor.progress.remote(), now + PROGRESS_EVERY_S
            if poll is not None and ray.wait([poll], timeout=0)[0]:
                try:
                    slot.progress = ray.get(poll)
                except ray.exceptions.RayError:
                    pass  # the actor died: run() says so next
                poll = None

    def _finish(self, name: str, slot: _Slot) -> None:
        """Close the run of a source whose actor died while stopping (Ray restarts it to do so)."""
        try:
            self.ray.get(slot.actor.finish.remote(), timeout=STOP_WAIT_S)
        except Exception as e:  # noqa: BLE001 - say it; the run resumes on the next start
            self.say(f"{name}: could not close its run after the actor died ({first_line(e)}); the next "
                     "`oddeye watch` resumes it")

    # -- results ------------------------------------------------------------------------------------------------
    def report(self, src: Any) -> tuple[dict[str, Any], np.ndarray, str | None]:
        """(summary over every attempt with `restarts` added, lags (N,) s, failure) of one source."""
        slot = self._slots.get(src.spec.name)
        if slot is None:
            return src.summary(), np.zeros(0), None
        summary = {"run_id": slot.totals.get("run_id", src.run_id),
                   **{k: slot.totals.get(k, 0) + int(slot.progress.get(k, 0) or 0) for k in SUMMED},
                   "restarts": slot.restarts}
        lags = np.concatenate(slot.lags) if slot.lags else np.zeros(0)
        return summary, lags, slot.failed

    def actor(self, name: str) -> Any:
        """The actor handle of source `name` (tests ask it for its pid)."""
        return self._slots[name].actor

    def close(self) -> None:
        """Kill every actor (no restart), after a moment for their last printed lines to arrive; once."""
        if self._closed:
            return
        self._closed = True
        if self._slots:
            time.sleep(LOG_FLUSH_S)
        for slot in self._slots.values():
            try:
                self.ray.kill(slot.actor, no_restart=True)
            except Exception:  # noqa: BLE001,S110 - gone already
                pass


def _reconstructed() -> bool:
    """Whether Ray restarted this actor (its process died) before this call."""
    import warnings

    import ray

    with warnings.catch_warnings():  # Ray 2.x warns about an attribute it reads inside this property
        warnings.simplefilter("ignore")
        return bool(ray.get_runtime_context().was_current_actor_reconstructed)


def _cause(ray: Any, e: BaseException) -> BaseException:
    """The exception raised inside an actor method (an OddeyeError the CLI prints), else `e`."""
    cause = getattr(e, "cause", None) if isinstance(e, ray.exceptions.RayTaskError) else None
    return cause if isinstance(cause, BaseException) else e
