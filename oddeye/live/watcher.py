"""The Watcher: every source of a watch config in its own thread, stopped cleanly by SIGTERM or Ctrl-C.

    summary = Watcher(load_config("watch.yaml"), seconds=60).run()
    summary = Watcher(cfg, runner=RaySources(ray)).run()     # `watch --ray`: one Ray actor per source

The first SIGTERM / SIGINT stops the readers, scores the frames they hold, closes open events and every live run;
a second Ctrl-C quits at once (the runs stay open and the next start resumes them). Where a source runs is the
runner's business: `InProcess` (the default) runs it in this process; `oddeye.scale.live.RaySources` in a Ray actor.
"""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType
from typing import Any, Callable, Protocol

import numpy as np

from oddeye.live.config import WatchConfig
from oddeye.live.runner import LiveSource, StopFlag, _echo


class Runner(Protocol):
    """Where the sources of a Watcher run: opened up front, each run until `stop`, then reported."""

    def open_all(self, sources: list[LiveSource]) -> None:
        """Open every source (model, store, live run); on a failure close the ones opened and re-raise."""
        ...

    def run_one(self, src: LiveSource, stop: StopFlag) -> None:
        """Run one source until `stop` is set (or its file ends); its run is closed on return."""
        ...

    def report(self, src: LiveSource) -> tuple[dict[str, Any], np.ndarray, str | None]:
        """(summary as LiveSource.summary(), lags (N,) s, why it could not run or None) of one source."""
        ...

    def close(self) -> None:
        """Release what the runner holds (threads end by themselves; actors are killed)."""
        ...


class InProcess:
    """The default runner: each source in a thread of this process."""

    def open_all(self, sources: list[LiveSource]) -> None:
        """Open every source in turn; on a failure close the ones opened and re-raise."""
        opened: list[LiveSource] = []
        try:
            for src in sources:
                src.open()
                opened.append(src)
        except BaseException:
            for src in opened:
                src.close()
            raise

    def run_one(self, src: LiveSource, stop: StopFlag) -> None:
        """Run the source in the calling thread."""
        src.run(stop)

    def report(self, src: LiveSource) -> tuple[dict[str, Any], np.ndarray, str | None]:
        """The source's own summary, lags and failure."""
        return src.summary(), np.asarray(src.stats.lags, dtype=np.float64), src.failed

    def close(self) -> None:
        """Nothing to release."""


class Watcher:
    """Runs the sources of `config` until a signal, `seconds`, or (files without loop) their end."""

    def __init__(self, config: WatchConfig, *, seconds: float | None = None,
                 say: Callable[[str], None] | None = None, runner: Runner | None = None) -> None:
        self.config = config
        self.seconds = seconds
        self.say = say or _echo
        self.runner: Runner = runner or InProcess()
        self.stop = threading.Event()
        self.sources = [LiveSource(spec, config.db, say=self.say) for spec in config.sources]
        self.failures: dict[str, str] = {}
        self._signals = 0

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals > 1 and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.say(f"{signal.Signals(signum).name}: stopping; flushing and closing {len(self.sources)} run(s)"
                 + (" (Ctrl-C again to quit at once)" if signum == signal.SIGINT else ""))
        self.stop.set()

    def _run_one(self, src: LiveSource) -> None:
        try:
            self.runner.run_one(src, self.stop)
        except Exception as e:  # noqa: BLE001 - reported by run(); the other sources go on
            self.failures[src.spec.name] = f"{type(e).__name__}: {e}"
            self.say(f"{src.spec.name}: stopped by an error: {type(e).__name__}: {e}")

    def run(self) -> dict[str, Any]:
        """Run until stopped; returns a summary (per source: frames, items, events, errors, reconnects, dropped)."""
        main = threading.current_thread() is threading.main_thread()
        old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)} if main else {}
        for s in old:
            signal.signal(s, self._on_signal)
        t0 = time.monotonic()
        try:
            self.runner.open_all(self.sources)
            self.say(f"watching {len(self.sources)} source(s); store {self.config.db}"
                     + (f"; for {self.seconds:g} s" if self.seconds else "; stop with Ctrl-C or SIGTERM"))
            threads = [threading.Thread(target=self._run_one, args=(src,), name=f"live-{src.spec.name}", daemon=True)
                       for src in self.sources]
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads):
                if self.seconds is not None and time.monotonic() - t0 >= self.seconds and not self.stop.is_set():
                    self.say(f"{self.seconds:g} s elapsed: stopping")
                    self.stop.set()
                for t in threads:
                    t.join(timeout=0.2)
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
            self.runner.close()
        return self.summary(time.monotonic() - t0)

    def summary(self, wall_s: float) -> dict[str, Any]:
        """Totals over the sources (and per source) of what this run did."""
        reports = {src.spec.name: self.runner.report(src) for src in self.sources}
        per = {name: rep[0] for name, rep in reports.items()}
        self.failures.update({name: rep[2] for name, rep in reports.items() if rep[2]})
        lags = np.concatenate([rep[1] for rep in reports.values()]) if reports else np.zeros(0)
        tot = {k: sum(p[k] for p in per.values()) for k in ("frames", "items", "events", "errors", "reconnects",
                                                            "dropped_frames")}
        return {"sources": len(self.sources), "wall_s": round(wall_s, 2), **tot,
                "lag_p95_s": round(float(np.percentile(lags, 95)), 3) if len(lags) else None,
                "failed": self.failures, "per_source": per}
