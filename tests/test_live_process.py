"""`oddeye watch CONFIG.yaml` as a process, with a looped clip and a watched folder: killed with SIGKILL and started
again it resumes its runs with no duplicate rows; SIGTERM flushes and leaves every run and event closed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from oddeye.core.imageio import write_image
from oddeye.store.api import open_store
from test_live_support import clip, gaussian_model, images, rules_model, wait_for

pytestmark = pytest.mark.slow  # each starts `oddeye watch` processes (5-15 s)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(rules model, gaussian model, anomalous clip), made once for the tests of this file."""
    d = tmp_path_factory.mktemp("models")
    return rules_model(d), gaussian_model(d), clip(d / "clip.mp4")


def _setup(tmp_path: Path, models: tuple[Path, Path, Path]) -> tuple[Path, Path, Path]:
    """A watch config (a looped clip and a folder of images) in tmp_path; returns (config, store, incoming)."""
    rules, gauss, video = models
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    config = tmp_path / "watch.yaml"
    config.write_text(f"""db: store.db
out: live
sources:
  - {{name: cam, model: {rules}, source: {video}, loop: true, chunk_s: 1}}
  - {{name: line, model: {gauss}, source: incoming, glob: "*.png", poll_s: 0.1}}
""")
    return config, tmp_path / "store.db", incoming


def _start(config: Path, log: Path) -> subprocess.Popen:
    """`oddeye watch CONFIG` in its own session (so that clean-up reaches anything it leaves); output to `log`."""
    with log.open("a") as f:
        return subprocess.Popen([sys.executable, "-m", "oddeye", "watch", str(config)], stdout=f,
                                stderr=subprocess.STDOUT, cwd=config.parent, start_new_session=True)


def _cleanup(p: subprocess.Popen) -> None:
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(10)


def _runs(store) -> dict[str, dict]:
    return {r["source"]: r for r in store.live_runs()}


def _items(store, run_id: int) -> list[str]:
    return [r["item"] for r in store.ledger(run_id)]


def _frames(store, run_id: int) -> int:
    s = store.samples(run_id)
    return s[0]["frame_end"] if s and s[0]["frame_end"] is not None else -1


def test_a_watcher_killed_with_sigkill_resumes_without_duplicate_rows(tmp_path, models):
    config, db, incoming = _setup(tmp_path, models)
    pics = images(tmp_path, 4)
    for k in (0, 1):
        write_image(incoming / f"p{k}.png", pics[k])
    log = tmp_path / "watch.log"
    proc = _start(config, log)
    try:
        store = wait_for(lambda: db.exists() and open_store(db), 30, "the store")
        runs = wait_for(lambda: len(_runs(store)) == 2 and _runs(store), 30, f"both runs; log: {log.read_text()}")
        cam, line = runs["cam"]["id"], runs["line"]["id"]
        wait_for(lambda: store.events(cam) and len(_items(store, line)) == 2, 30, "an event and two items")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        at_kill = _frames(store, cam)
        events_at_kill = {e["key"]: e for e in store.events(cam)}
        for k in (2, 3):  # dropped while the watcher is down
            write_image(incoming / f"p{k}.png", pics[k])
        proc = _start(config, log)
        wait_for(lambda: len(_items(store, line)) == 4, 30, "the files dropped while it was down")
        wait_for(lambda: any(e["start_frame"] > at_kill for e in store.events(cam)), 30, "an event after the restart")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()
    finally:
        _cleanup(proc)
    assert sorted(r["id"] for r in store.live_runs()) == sorted([cam, line]), "the restart resumed both runs"
    assert {r["state"] for r in store.live_runs()} == {"closed"}
    assert sorted(_items(store, line)) == ["p0.png", "p1.png", "p2.png", "p3.png"]
    assert sorted(s["sample_id"] for s in store.samples(line)) == ["p0", "p1", "p2", "p3"]
    assert len(store.samples(cam)) == 1
    idx = store.series(store.samples(cam)[0]["id"])["frame_indices"]
    assert np.all(np.diff(idx) > 0) and idx[-1] > at_kill, "the stream clock went on after the restart"
    events = sorted(store.events(cam), key=lambda e: e["start_frame"])
    assert not any(e["is_open"] for e in events)
    assert all(a["end_frame"] < b["start_frame"] for a, b in zip(events, events[1:])), "no event stored twice"
    for key, before in events_at_kill.items():  # what was stored before the kill is kept as it was (closed)
        after = next(e for e in events if e["key"] == key)
        assert (after["start_frame"], after["end_frame"]) == (before["start_frame"], before["end_frame"])
    assert [r["what"] for r in store.live_log(cam)].count("restart") == 1
    assert [r["what"] for r in store.live_log(line)].count("restart") == 1
    store.close()


def test_sigterm_flushes_and_closes_every_run_and_event(tmp_path, models):
    config, db, incoming = _setup(tmp_path, models)
    write_image(incoming / "p0.png", images(tmp_path, 1)[0])
    log = tmp_path / "watch.log"
    proc = _start(config, log)
    try:
        store = wait_for(lambda: db.exists() and open_store(db), 30, "the store")
        runs = wait_for(lambda: len(_runs(store)) == 2 and _runs(store), 30, f"both runs; log: {log.read_text()}")
        cam, line = runs["cam"]["id"], runs["line"]["id"]
        wait_for(lambda: any(e["is_open"] for e in store.events(cam)) and _items(store, line), 30,
                 "an open event and a scored file")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()
    finally:
        _cleanup(proc)
    assert {r["state"] for r in store.live_runs()} == {"closed"}
    assert store.events(cam) and not any(e["is_open"] for e in store.events(cam))
    assert {h["source"]: h["state"] for h in store.health()} == {"cam": "closed", "line": "closed"}
    out = log.read_text().strip().splitlines()
    assert "SIGTERM: stopping" in "\n".join(out)
    summary = json.loads(out[-1])
    assert summary["sources"] == 2 and summary["events"] >= 1 and summary["items"] == 1 and not summary["failed"]
    store.close()
