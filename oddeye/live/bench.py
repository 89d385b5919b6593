"""`oddeye bench live`: N generated 360x240 clips with injected anomalies served at 10 fps as live MPEG-TS streams
(Debian ffmpeg on 127.0.0.1), watched for S seconds; the last stdout line is JSON.

    oddeye bench live --sources 16 --seconds 60 --head rules
    oddeye bench live --sources 4 --seconds 60 --head rules --faults   # servers and watcher killed mid-run

Without --faults the Watcher runs in this process (lag, drops and RSS are measured here). With --faults it runs as
an `oddeye watch` child process that is SIGKILLed and started again; the events stored are compared with the
anomalies the servers played (each server's clip starts when the watcher connects, so they are known exactly).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any, Callable

import numpy as np
import typer

from oddeye.core.errors import InputError

FPS = 10
SIZE = (240, 360)  # H, W
CLIP_FRAMES = 200  # 20 s per pass of the looped clip
SPAN = (60, 95)  # frames of the injected anomaly in each pass (6 s to 9.5 s)
WARMUP_S = 5.0
HEADS = ("rules", "prediction")


# -- ffmpeg stream servers (also used by tests/test_live_*.py) -----------------------------------------------------
def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(video: Path, port: int) -> subprocess.Popen:
    """ffmpeg serving `video` in a loop, in real time, as MPEG-TS over TCP on 127.0.0.1:port (one client; the clip
    starts when it connects)."""
    return subprocess.Popen(["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(video),
                             "-c", "copy", "-f", "mpegts", f"tcp://127.0.0.1:{port}?listen=1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_process(p: subprocess.Popen) -> None:
    """Kill a child process we started and reap it."""
    if p.poll() is None:
        p.kill()
    p.wait(timeout=10)


def _rss_mb() -> float:
    """Resident memory of this process, MB."""
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _connected(p: subprocess.Popen) -> bool:
    """True once the ffmpeg server has its client (an established TCP connection)."""
    import psutil

    try:
        return any(c.status == psutil.CONN_ESTABLISHED for c in psutil.Process(p.pid).net_connections("tcp"))
    except psutil.Error:
        return False


# -- models and clips -----------------------------------------------------------------------------------------------
def fit_model(head: str, folder: Path) -> tuple[Path, str]:
    """A tiny model of `head` fitted on generated normal 360x240 clips; (model folder, what it is)."""
    from oddeye.core import synth
    from oddeye.core.head import RunContext

    ctx = RunContext(progress=False)
    if head == "rules":
        from oddeye.video.rules.head import RulesHead

        train = [synth.write_frames(synth.make_video(seed=7, n_frames=120, size=SIZE, anomaly=None).frames,
                                    folder / "train" / "normal")]
        model = RulesHead(sigma=4, induction={"subsets": 3, "folds": 2}).fit(train, ctx=ctx)
        return model.save(folder / "model"), "rules head fitted on one 120-frame generated normal clip"
    from oddeye.video.prediction.config import PredictionConfig, PredictorConfig, ScoreConfig, TrainConfig
    from oddeye.video.prediction.head import PredictionHead

    cfg = PredictionConfig(model=PredictorConfig(size=32, past=3, channels=(4, 8, 8), heads=2, d_channels=2),
                           train=TrainConfig(minutes=1.0, max_steps=60, batch_size=4),
                           score=ScoreConfig(smooth_sigma=2.0))
    train = [synth.write_frames(synth.make_video(seed=s, n_frames=60, size=SIZE, anomaly=None).frames,
                                folder / "train" / f"normal{s}") for s in (1, 2, 3)]
    model = PredictionHead(cfg, device="cpu").fit(train, ctx=ctx)
    return model.save(folder / "model"), ("prediction head, TINY (32 px, channels 4-8-8) and briefly trained "
                                          "(60 steps on three 60-frame generated normal clips): speed, not accuracy")


def make_clips(n: int, folder: Path) -> list[Path]:
    """`n` generated 360x240 clips at 10 fps, CLIP_FRAMES long, each with a fast walker during SPAN."""
    from oddeye.core import synth

    return [synth.write_video_file(synth.make_video(seed=100 + i, n_frames=CLIP_FRAMES, size=SIZE, anomaly="fast",
                                                    anomaly_span=SPAN).frames, folder / f"clip{i}.mp4", fps=FPS)
            for i in range(n)]


def _write_config(path: Path, model: Path, ports: list[int], db: str) -> Path:
    """The watch config of the bench: one stream source per server."""
    import yaml

    doc = {"db": db, "out": str(path.parent / "live"),
           "sources": [{"name": f"cam{i:02d}", "model": str(model), "source": f"tcp://127.0.0.1:{p}",
                        "chunk_s": 1.0} for i, p in enumerate(ports)]}
    path.write_text(yaml.safe_dump(doc))
    return path


# -- plain run: the Watcher in this process -------------------------------------------------------------------------
def _run_plain(cfg_path: Path, seconds: float, say: Callable[[str], None], warmup: float = WARMUP_S
               ) -> dict[str, Any]:
    """Watch for `seconds` after `warmup` s; throughput, lag, drops, reconnects, events (and the anomalies the
    streams played completely), RSS growth over the measured part and RSS at the start of each tenth of it."""
    import threading

    from oddeye.live.config import load_config
    from oddeye.live.watcher import Watcher

    watcher = Watcher(load_config(cfg_path), say=lambda _line: None)
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()

    def counts() -> tuple[int, int]:
        feeds = [s._feed for s in watcher.sources]
        return sum(f.frames_in for f in feeds if f), sum(s.stats.frames for s in watcher.sources)

    deadline = time.monotonic() + 60
    while not all(s._feed and s._feed.frames_in for s in watcher.sources):
        if time.monotonic() > deadline or not thread.is_alive():
            watcher.stop.set()
            raise InputError("the streams did not start within 60 s", "is ffmpeg installed? (scripts/system-deps.sh)")
        time.sleep(0.1)
    rss_start = _rss_mb()
    time.sleep(warmup)
    for s in watcher.sources:
        s.stats.lags.clear()
    rss0, (in0, sc0), t0 = _rss_mb(), counts(), time.monotonic()
    say(f"warm-up done; measuring for {seconds:g} s (RSS {rss0:.0f} MB)")
    timeline = []
    for k in range(10):
        timeline.append(round(_rss_mb(), 1))
        time.sleep(max(0.0, t0 + seconds * (k + 1) / 10 - time.monotonic()))
    (in1, sc1), t1, rss1 = counts(), time.monotonic(), _rss_mb()
    lags = np.concatenate([np.asarray(s.stats.lags) for s in watcher.sources])
    watcher.stop.set()
    thread.join(30)
    per = [s.summary() for s in watcher.sources]
    played = sum(sum(1 for k in range(f.frames_in // CLIP_FRAMES + 1) if k * CLIP_FRAMES + SPAN[1] < f.frames_in)
                 for f in (s._feed for s in watcher.sources) if f)  # one connection each: clips from frame 0
    return {"fps_in": round((in1 - in0) / (t1 - t0), 1), "fps_scored": round((sc1 - sc0) / (t1 - t0), 1),
            "lag_p95_s": round(float(np.percentile(lags, 95)), 3) if len(lags) else None,
            "dropped_frames": sum(p["dropped_frames"] for p in per), "reconnects": sum(p["reconnects"] for p in per),
            "events": sum(p["events"] for p in per), "anomalies_played": played,
            "rss_growth_mb": round(rss1 - rss0, 1), "rss_warmup_growth_mb": round(rss0 - rss_start, 1),
            "rss_mb_timeline": timeline + [round(rss1, 1)]}


# -- faults run: servers killed and restarted, the watcher SIGKILLed and restarted -----------------------------------
class _Servers:
    """The ffmpeg servers and, per server, when its client connected and (after a kill) when it was stopped."""

    def __init__(self, clips: list[Path], ports: list[int]) -> None:
        self.clips, self.ports = clips, ports
        self.procs = [serve(c, p) for c, p in zip(clips, ports)]
        self.conn: list[float | None] = [None] * len(clips)
        self.segments: list[list[tuple[float, float]]] = [[] for _ in clips]  # (connected, stopped) per server

    def poll(self) -> None:
        """Note the connection time of servers that got their client since the last poll."""
        for i, p in enumerate(self.procs):
            if self.conn[i] is None and _connected(p):
                self.conn[i] = time.monotonic()

    def quiet(self) -> bool:
        """True when no connected server is playing (or about to finish) an anomaly: a safe moment for a fault."""
        self.poll()
        lo, hi = SPAN[0] / FPS - 1.0, SPAN[1] / FPS + 2.5
        now = time.monotonic()
        return all(c is not None and not lo <= (now - c) % (CLIP_FRAMES / FPS) <= hi for c in self.conn)

    def restart(self) -> None:
        """Kill every server and start it again (its clip starts over when the watcher reconnects)."""
        self.stop()
        self.procs = [serve(c, p) for c, p in zip(self.clips, self.ports)]

    def stop(self) -> None:
        """Kill every server; close its connection segment."""
        now = time.monotonic()
        for i, p in enumerate(self.procs):
            stop_process(p)
            if self.conn[i] is not None:
                self.segments[i].append((self.conn[i], now))
            self.conn[i] = None

    def expected(self) -> int:
        """Anomalies played completely (with a second to be scored) over every connection of every server."""
        L, b = CLIP_FRAMES / FPS, SPAN[1] / FPS
        n = 0
        for segs in self.segments:
            for c, s in segs:
                n += sum(1 for k in range(int((s - c) // L) + 1) if c + k * L + b + 1.0 <= s)
        return n


def _wait_quiet(servers: _Servers, limit_s: float = 25.0) -> None:
    """Wait (at most `limit_s`) until every server is between anomalies."""
    deadline = time.monotonic() + limit_s
    while not servers.quiet() and time.monotonic() < deadline:
        time.sleep(0.1)


def _run_faults(cfg_path: Path, db: str, servers: _Servers, seconds: float,
                say: Callable[[str], None]) -> dict[str, Any]:
    """Run `oddeye watch` as a child; kill+restart the servers at 1/3 and the watcher (with servers) at 2/3."""
    from oddeye.store.api import open_store

    log = (cfg_path.parent / "watch.log").open("a")

    def start() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "oddeye", "watch", str(cfg_path)], stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)

    t0 = time.monotonic()
    child = start()
    try:
        def until(t: float) -> None:
            while time.monotonic() < t0 + t:
                servers.poll()
                if child.poll() is not None:
                    raise InputError(f"the watcher ended early (see {cfg_path.parent / 'watch.log'})")
                time.sleep(0.1)

        until(seconds / 3)
        _wait_quiet(servers)
        say(f"{time.monotonic() - t0:.0f} s: killing and restarting the {len(servers.procs)} ffmpeg servers")
        servers.stop()
        time.sleep(1.0)
        servers.procs = [serve(c, p) for c, p in zip(servers.clips, servers.ports)]
        until(2 * seconds / 3)
        _wait_quiet(servers)
        say(f"{time.monotonic() - t0:.0f} s: SIGKILL of the watcher; servers and watcher restarted")
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(10)
        servers.restart()  # their client is gone: the clips start over with the new watcher
        child = start()
        until(seconds)
        _wait_quiet(servers)
        child.send_signal(signal.SIGTERM)
        child.wait(60)
        servers.stop()
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(10)
        log.close()
    with open_store(db) as store:
        runs = store.live_runs()
        events = [ev for r in runs for ev in store.events(r["id"], with_meta=False)]
        logs = [row for r in runs for row in store.live_log(r["id"], limit=10_000)]
        health = store.health()
    keys = [(ev["sample_id"], ev["start_frame"]) for ev in events]
    return {"expected_events": servers.expected(), "found_events": len(set(keys)),
            "duplicate_events": len(keys) - len(set(keys)),
            "reconnects": sum(1 for row in logs if row["what"] == "reconnect"),
            "restarts": sum(1 for row in logs if row["what"] == "restart"),
            "open_events": sum(1 for ev in events if ev.get("is_open")),
            "dropped_frames": sum(h["dropped_frames"] for h in health),
            "runs_closed": sum(1 for r in runs if r["state"] == "closed"), "runs": len(runs)}


# -- the command ----------------------------------------------------------------------------------------------------
def bench_live(
    sources: Annotated[int, typer.Option("--sources", help="Streams served and watched.")] = 4,
    seconds: Annotated[float, typer.Option("--seconds", help=(
        "Seconds measured (after the warm-up; with --faults the whole run, >= 30)."))] = 30.0,
    warmup: Annotated[float, typer.Option("--warmup", help=(
        "Seconds watched before measuring. Memory ramps up while each source meets its first events (about 2 "
        "minutes here); a soak measures growth after that, with --warmup 120."))] = WARMUP_S,
    head: Annotated[str, typer.Option("--head", help="rules | prediction: the tiny model fitted to score.")] = "rules",
    faults: Annotated[bool, typer.Option("--faults", help=(
        "Kill and restart the servers and (SIGKILL) the watcher mid-run; compare events with anomalies."))] = False,
    db: Annotated[str | None, typer.Option("--db", help="Review store (default: a temporary SQLite file).")] = None,
    no_record: Annotated[bool, typer.Option("--no-record", help="Do not append to benchmarks/RESULTS.md.")] = False,
) -> dict[str, Any]:
    """Serve N generated 360x240 clips at 10 fps as live streams and watch them; prints a table, then one JSON line
    (sources, fps_in, fps_scored, lag_p95_s, dropped_frames, reconnects, events, anomalies_played, rss_growth_mb;
    with --faults
    expected_events, found_events, duplicate_events, reconnects, restarts)."""
    if head not in HEADS:
        raise InputError(f"--head must be one of {', '.join(HEADS)}, got {head!r}")
    if sources < 1:
        raise InputError(f"--sources must be >= 1, got {sources}")
    if warmup < 0:
        raise InputError(f"--warmup must be >= 0, got {warmup:g}")
    if seconds <= 0 or (faults and seconds < 30):
        raise InputError(f"--seconds must be > 0 ({'>= 30 with --faults' if faults else ''}), got {seconds:g}")
    if shutil.which("ffmpeg") is None:
        raise InputError("ffmpeg not found", "install it: scripts/system-deps.sh (Debian: apt-get install ffmpeg)")
    say = lambda line: typer.echo(line, err=True)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="oddeye-bench-live-") as tmp:
        work = Path(tmp)
        t = time.monotonic()
        model, what = fit_model(head, work)
        clips = make_clips(sources, work / "clips")
        say(f"model ready in {time.monotonic() - t:.1f} s ({what}); {sources} clip(s) of {CLIP_FRAMES} frames")
        store_db = db or str(work / "store.db")
        ports = [free_port() for _ in range(sources)]
        cfg = _write_config(work / "watch.yaml", model, ports, store_db)
        servers = _Servers(clips, ports)
        try:
            figures = (_run_faults(cfg, store_db, servers, seconds, say) if faults
                       else _run_plain(cfg, seconds, say, warmup))
        finally:
            servers.stop()
    out = {"sources": sources, "head": head, "seconds": seconds, "warmup_s": warmup, "faults": faults, **figures}
    _print_table(out)
    if not no_record:
        from oddeye.core.report import record_benchmark

        title = f"live watch, {head} head, {sources} stream(s)" + (", faults" if faults else "")
        record_benchmark(title, f"generated {SIZE[1]}x{SIZE[0]} clips at {FPS} fps with a fast walker in frames "
                                f"{SPAN[0]}-{SPAN[1]} of every {CLIP_FRAMES}, served by ffmpeg as MPEG-TS over TCP",
                         None, out, notes=f"Model: {what}.")
    typer.echo(json.dumps(out))
    return out


def _print_table(figures: dict[str, Any]) -> None:
    """The figures as a table on stdout."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="oddeye bench live")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for k, v in figures.items():
        table.add_row(k, f"{v:g}" if isinstance(v, float) else str(v))
    Console(width=100).print(table)
