"""`oddeye watch --ray` with real parts: a local Ray runtime (ray.init(num_cpus=2)), generated clips served by ffmpeg
as live MPEG-TS streams, the rules model. Two sources are two actors (processes) that find their events, into SQLite
and into the test PostgreSQL server at once; an actor killed mid-stream is restarted by Ray and its source resumes
with every event stored exactly once; SIGTERM to an `oddeye watch --ray` process closes every run. Also: a model an
actor cannot load stops the start cleanly, placement (CPUs, a GPU per torch/FAISS actor), refusals, no Ray import
without --ray, and (skipped without a GPU) a CUDA actor with the faiss-gpu index."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from oddeye.core.errors import InputError, ModelError
from oddeye.core.head import write_manifest
from oddeye.live.cli import watch_sources
from oddeye.live.config import build_config
from oddeye.live.watcher import Watcher
from oddeye.scale.live import RaySources, SourceActor, local_cpus
from oddeye.store.api import open_store
from test_live_support import SPAN, clip, free_port, needs_ffmpeg, rules_model, serve, stop_process, wait_for

pytestmark = pytest.mark.slow  # a Ray runtime, actor processes and real-time streams
N_FRAMES = 250  # 10 s at 25 fps: the anomaly (SPAN) plays once before the looped clip starts again


@pytest.fixture(scope="module")
def ray_local():
    """A real local Ray runtime with 2 CPUs, shared by the tests of this file."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def parts(tmp_path_factory) -> dict[str, Path]:
    """A rules model, a 250-frame clip with the injected anomaly and a normal one (made once)."""
    d = tmp_path_factory.mktemp("parts")
    return {"model": rules_model(d), "anomaly": clip(d / "anomaly.mp4", n_frames=N_FRAMES),
            "normal": clip(d / "normal.mp4", anomaly=None, n_frames=N_FRAMES)}


def _config(tmp_path: Path, model: Path, db: str, sources: dict[str, str]):
    """A checked watch config: one stream source per (name -> URL), 1 s chunks."""
    doc = {"db": db, "out": str(tmp_path / "live"),
           "sources": [{"name": n, "model": str(model), "source": url, "chunk_s": 1.0} for n, url in sources.items()]}
    return build_config(doc, tmp_path)


def _start(cfg, ray) -> tuple[Watcher, RaySources, threading.Thread, list[str]]:
    """A Watcher with one Ray actor per source, running in a thread; its printed lines are kept."""
    lines: list[str] = []
    runner = RaySources(ray, say=lines.append)
    watcher = Watcher(cfg, say=lines.append, runner=runner)
    thread = threading.Thread(target=lambda: lines.append(json.dumps(watcher.run(), default=str)))
    thread.start()
    return watcher, runner, thread, lines


def _frame_end(store, run_id: int) -> int:
    s = store.samples(run_id)
    return s[0]["frame_end"] if s and s[0]["frame_end"] is not None else -1


def _check_stream(store, run_id: int) -> list[dict]:
    """The run is closed with one series whose frame numbers only go up; its events (closed, none overlapping)."""
    assert [r["state"] for r in store.live_runs() if r["id"] == run_id] == ["closed"]
    assert len(store.samples(run_id)) == 1
    idx = store.series(store.samples(run_id)[0]["id"])["frame_indices"]
    assert len(idx) and np.all(np.diff(idx) > 0), "no frame stored twice"
    events = sorted(store.events(run_id), key=lambda e: e["start_frame"])
    assert not any(e["is_open"] for e in events)
    assert all(a["end_frame"] < b["start_frame"] for a, b in zip(events, events[1:])), "no event stored twice"
    return events


@needs_ffmpeg
def test_two_sources_are_two_actors_that_find_their_events_in_sqlite_and_postgresql(tmp_path, parts, ray_local, db):
    ports = [free_port(), free_port()]
    servers = [serve(parts["anomaly"], p) for p in ports]
    cfg = _config(tmp_path, parts["model"], db, {f"cam{i}": f"tcp://127.0.0.1:{p}" for i, p in enumerate(ports)})
    watcher, runner, thread, lines = _start(cfg, ray_local)
    try:
        runs = wait_for(lambda: all(s.run_id for s in watcher.sources) and [s.run_id for s in watcher.sources], 60,
                        f"both runs to open; {lines}")
        pids = {ray_local.get(runner.actor(f"cam{i}").pid.remote()) for i in range(2)}
        store = open_store(db)
        wait_for(lambda: all(_frame_end(store, r) > SPAN[1] + 10 for r in runs), 40,
                 f"both streams past the anomaly; {lines[-5:]}")
    finally:
        watcher.stop.set()
        thread.join(60)
        for s in servers:
            stop_process(s)
    assert not thread.is_alive()
    assert len(pids) == 2 and os.getpid() not in pids, "each source in its own actor process"
    found = 0
    for run_id in runs:
        events = _check_stream(store, run_id)
        assert events and all(SPAN[0] - 5 <= e["start_frame"] <= SPAN[1] + 5 for e in events), events
        found += len(events)
    assert {h["source"]: h["state"] for h in store.health()} == {"cam0": "closed", "cam1": "closed"}
    summary = json.loads(lines[-1])
    assert summary["sources"] == 2 and summary["events"] == found and not summary["failed"]
    assert all(p["restarts"] == 0 for p in summary["per_source"].values())
    store.close()


@needs_ffmpeg
def test_a_killed_actor_is_restarted_and_its_source_resumes_with_every_event_stored_once(tmp_path, parts, ray_local):
    port = free_port()
    server = serve(parts["anomaly"], port)
    db = str(tmp_path / "store.db")
    cfg = _config(tmp_path, parts["model"], db, {"cam": f"tcp://127.0.0.1:{port}"})
    watcher, runner, thread, lines = _start(cfg, ray_local)
    try:
        run_id = wait_for(lambda: watcher.sources[0].run_id, 60, f"the run to open; {lines}")
        store = open_store(db)
        wait_for(lambda: store.events(run_id), 30, "the injected anomaly as an event")
        pid = ray_local.get(runner.actor("cam").pid.remote())
        os.kill(pid, signal.SIGKILL)  # mid-stream, most likely while the event is still open
        at_kill = {e["key"]: e for e in store.events(run_id)}
        stop_process(server)  # its one client is gone: serve a normal clip for the restarted actor
        server = serve(parts["normal"], port)
        wait_for(lambda: [r for r in store.live_log(run_id) if r["what"] == "actor-restart"], 30,
                 f"the actor's restart in the log; {lines[-5:]}")
        after = _frame_end(store, run_id)
        wait_for(lambda: _frame_end(store, run_id) > after + 25, 30, "frames after the restart")
        new_pid = ray_local.get(runner.actor("cam").pid.remote())
    finally:
        watcher.stop.set()
        thread.join(60)
        stop_process(server)
    assert not thread.is_alive()
    assert new_pid != pid
    assert [r["id"] for r in store.live_runs()] == [run_id], "the restarted actor resumed the same run"
    events = _check_stream(store, run_id)
    assert [e["key"] for e in events] == list(at_kill), "the event was stored once, under its first key"
    ev, before = events[0], next(iter(at_kill.values()))
    assert ev["start_frame"] == before["start_frame"] and SPAN[0] - 5 <= ev["start_frame"] <= SPAN[1]
    log = [r["what"] for r in store.live_log(run_id)]
    assert log.count("actor-restart") == 1 and log.count("restart") == 1, log
    summary = json.loads(lines[-1])
    assert summary["per_source"]["cam"]["restarts"] == 1 and not summary["failed"]
    assert any("its actor died" in ln for ln in lines)
    store.close()


def test_a_model_an_actor_cannot_load_stops_the_start_with_its_error_and_closes_the_other_runs(
        tmp_path, parts, ray_local):
    broken = tmp_path / "broken-model"
    shutil.copytree(parts["model"], broken)
    cfg = build_config({"db": str(tmp_path / "s.db"), "sources": [
        {"name": "good", "model": str(parts["model"]), "source": str(parts["normal"]), "loop": True},
        {"name": "bad", "model": str(broken), "source": str(parts["normal"]), "loop": True}]}, tmp_path)
    (broken / "rules.yaml").unlink()  # the config is checked; the actor finds the model broken when it loads it
    runner = RaySources(ray_local, say=lambda line: None)
    with pytest.raises(ModelError, match="rules.yaml"):
        Watcher(cfg, say=lambda line: None, runner=runner).run()
    with open_store(cfg.db) as store:
        assert [(r["source"], r["state"]) for r in store.live_runs()] == [("good", "closed")]
    with pytest.raises(ray_local.exceptions.RayActorError):
        ray_local.get(runner.actor("good").pid.remote(), timeout=30)


def test_sigterm_to_watch_ray_closes_every_run(tmp_path, parts):
    config = tmp_path / "watch.yaml"
    config.write_text(f"""db: store.db
out: live
sources:
  - {{name: a, model: {parts['model']}, source: {parts['anomaly']}, loop: true, chunk_s: 1}}
  - {{name: b, model: {parts['model']}, source: {parts['normal']}, loop: true, chunk_s: 1}}
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}  # its own local runtime
    log = tmp_path / "watch.log"
    with log.open("w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "oddeye", "watch", str(config), "--ray"], stdout=f,
                                stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True, env=env)
    db = tmp_path / "store.db"
    try:
        store = wait_for(lambda: db.exists() and open_store(db), 60, "the store")
        runs = wait_for(lambda: len(store.live_runs()) == 2 and store.live_runs(), 60, f"both runs: {log.read_text()}")
        wait_for(lambda: all(_frame_end(store, r["id"]) > 30 for r in runs), 30, "frames of both sources")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert {r["state"] for r in store.live_runs()} == {"closed"}
    assert not any(e["is_open"] for r in runs for e in store.events(r["id"]))
    assert {h["source"]: h["state"] for h in store.health()} == {"a": "closed", "b": "closed"}
    out = log.read_text().strip().splitlines()
    assert any("SIGTERM: stopping" in ln for ln in out)
    summary = json.loads(out[-1])
    assert summary["sources"] == 2 and summary["frames"] > 0 and not summary["failed"]
    store.close()


def test_watch_ray_on_a_cluster_refuses_a_sqlite_store_naming_db(tmp_path, parts):
    config = tmp_path / "watch.yaml"
    config.write_text(f"sources:\n  - {{name: a, model: {parts['model']}, source: {parts['normal']}}}\n")
    with pytest.raises(InputError, match="--db") as e:
        watch_sources(config=config, db=str(tmp_path / "s.db"), ray="auto")
    assert "postgresql://" in e.value.hint
    with pytest.raises(InputError, match="--cpus-per-source"):
        watch_sources(config=config, ray="local", cpus_per_source=0)
    assert not (tmp_path / "s.db").exists(), "refused before anything was written"


def test_actors_ask_for_a_gpu_each_while_the_cluster_has_one_and_a_short_cluster_is_refused(tmp_path):
    heads = ["video-prediction", "video-rules", "patchcore", "gaussian"]
    sources = []
    for i, head in enumerate(heads):
        write_manifest(tmp_path / f"m{i}", head)
        sources.append(SimpleNamespace(spec=SimpleNamespace(model=str(tmp_path / f"m{i}"))))
    cluster = SimpleNamespace(cluster_resources=lambda: {"CPU": 4.0, "GPU": 2.0})  # what RaySources asks of ray
    plans = RaySources(cluster, cpus_per_source=1.0).plan(sources)
    assert [p["num_gpus"] for p in plans] == [1, 0, 1, 0], "torch/FAISS heads first come, while GPUs last"
    assert all(p["num_cpus"] == 1.0 for p in plans)
    with pytest.raises(InputError, match="--cpus-per-source"):
        RaySources(cluster, cpus_per_source=1.5).plan(sources)  # 6 CPUs asked of 4: never placed
    assert local_cpus(4, 1.5) >= 6 and local_cpus(1, 0.25) >= 1


class _Unit:
    """A stand-in for LiveSource inside SourceActor: opened already (as the watcher's open_all leaves it), runs
    until stopped, counts its runs."""

    def __init__(self, spec, db, say, device=None) -> None:
        self.spec, self.run_id, self.head, self.failed, self.runs = spec, 7, None, None, 0
        self.stats = SimpleNamespace(lags=[0.1])

    def open(self) -> int:
        return self.run_id

    def run(self, stop) -> None:
        self.runs += 1
        stop.wait(30)

    def summary(self) -> dict:
        return {"run_id": self.run_id, "frames": 5}


def test_a_repeated_run_call_joins_the_run_going_on_and_never_runs_the_source_twice():
    actor = SourceActor(_Unit, SimpleNamespace(model="m"), "db", 1, False)  # the class Ray wraps, called directly
    got: list[dict] = []
    calls = [threading.Thread(target=lambda a=a: got.append(actor.run(a, "reply lost" if a else ""))) for a in (0, 1)]
    for t in calls:
        t.start()
    wait_for(lambda: actor.unit.runs, 10, "the first run")
    actor.stop()
    for t in calls:
        t.join(10)
    assert actor.unit.runs == 1 and len(got) == 2 and got[0] is got[1]
    assert got[0]["summary"] == {"run_id": 7, "frames": 5} and list(got[0]["lags"]) == [0.1]
    assert actor.run(2, "again") is got[0] and actor.unit.runs == 1, "a finished run is reported, not run again"


def test_plain_watch_imports_no_ray(tmp_path, parts):
    code = ("import sys; from oddeye.cli import main; "
            f"rc = main(['watch', '--model', {str(parts['model'])!r}, '--source', {str(parts['normal'])!r}, "
            f"'--seconds', '1', '--db', {str(tmp_path / 's.db')!r}]); "
            "assert rc == 0, rc; assert 'ray' not in sys.modules, 'ray was imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]


def test_a_gpu_actor_scores_on_cuda_with_the_faiss_gpu_index(tmp_path, ray_local):
    if not ray_local.cluster_resources().get("GPU"):
        pytest.skip("no GPU in the Ray runtime: the CUDA actor and the faiss-gpu index need one")
    import contract_image
    from oddeye.core.head import RunContext

    case = next(c for c in contract_image.CASES if c.head == "patchcore")
    model = case.make().fit(case.train(tmp_path), ctx=RunContext(progress=False)).save(tmp_path / "model")
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    case.test(incoming)
    cfg = build_config({"db": str(tmp_path / "s.db"), "sources": [
        {"name": "line", "model": str(model), "source": str(incoming / "test"), "glob": "*.png", "poll_s": 0.2}]},
        tmp_path)
    watcher, runner, thread, lines = _start(cfg, ray_local)
    try:
        run_id = wait_for(lambda: watcher.sources[0].run_id, 120, f"the run to open; {lines}")
        where = ray_local.get(runner.actor("line").describe.remote())
        store = open_store(cfg.db)
        wait_for(lambda: len(store.ledger(run_id)) == 6, 60, "the six images scored")
    finally:
        watcher.stop.set()
        thread.join(60)
    assert where["gpu_ids"] and where["device"].startswith("cuda"), where
    from oddeye.retrieval.index import faiss_gpu_count

    assert where["index_on_gpu"] == (faiss_gpu_count() > 0), f"the index is on the GPU iff faiss-gpu is: {where}"
    assert all(r["status"] == "scored" for r in store.ledger(run_id))
    store.close()
