"""The Watcher: every source of a watch config in its own thread, stopped cleanly by SIGTERM or Ctrl-C.

    summary = Watcher(load_config("watch.yaml"), seconds=60).run()

The first SIGTERM / SIGINT stops the readers, scores the frames they hold, closes open events and every live run;
a second Ctrl-C quits at once (the runs stay open and the next start resumes them).
"""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType
from typing import Any, Callable

import numpy as np

from oddeye.live.config import WatchConfig
from oddeye.live.runner import LiveSource, _echo


class Watcher:
    """Runs the sources of `config` until a signal, `seconds`, or (files without loop) their end."""

    def __init__(self, config: WatchConfig, *, seconds: float | None = None,
                 say: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.seconds = seconds
        self.say = say or _echo
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

    def _open_all(self) -> None:
        """Open every source up front (models, store, runs); on a failure close the ones opened and re-raise."""
        opened: list[LiveSource] = []
        try:
            for src in self.sources:
                src.open()
                opened.append(src)
        except BaseException:
            for src in opened:
                src.close()
            raise

    def _run_one(self, src: LiveSource) -> None:
        try:
            src.run(self.stop)
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
            self._open_all()
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
        return self.summary(time.monotonic() - t0)

    def summary(self, wall_s: float) -> dict[str, Any]:
        """Totals over the sources (and per source) of what this run did."""
        per = {src.spec.name: src.summary() for src in self.sources}
        self.failures.update({src.spec.name: src.failed for src in self.sources if src.failed})
        lags = np.concatenate([np.asarray(src.stats.lags) for src in self.sources]) if self.sources else np.zeros(0)
        tot = {k: sum(p[k] for p in per.values()) for k in ("frames", "items", "events", "errors", "reconnects",
                                                            "dropped_frames")}
        return {"sources": len(self.sources), "wall_s": round(wall_s, 2), **tot,
                "lag_p95_s": round(float(np.percentile(lags, 95)), 3) if len(lags) else None,
                "failed": self.failures, "per_source": per}

