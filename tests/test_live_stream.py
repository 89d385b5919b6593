"""A live stream with real parts: ffmpeg serves a generated clip with an injected anomaly as MPEG-TS over TCP,
`oddeye watch` finds the event; ffmpeg is killed and restarted mid-run, the reconnect is counted and logged, and
the event is stored exactly once. A stream that is not up yet is retried after 0.5 s, 1 s, 2 s ..."""

from __future__ import annotations

import threading
import time

import numpy as np

from oddeye.live.config import one_source
from oddeye.live.sources import VideoFeed
from oddeye.live.watcher import Watcher
from oddeye.store.api import open_store
from test_live_support import SPAN, clip, free_port, needs_ffmpeg, rules_model, serve, stop_process, wait_for


@needs_ffmpeg
def test_a_stream_event_is_stored_once_across_a_killed_and_restarted_server(tmp_path):
    model = rules_model(tmp_path)
    anomalous, normal = clip(tmp_path / "anomaly.mp4"), clip(tmp_path / "normal.mp4", anomaly=None)
    port = free_port()
    server = serve(anomalous, port)
    db = tmp_path / "store.db"
    cfg = one_source(str(model), f"tcp://127.0.0.1:{port}", name="cam", db=str(db), out=str(tmp_path / "live"),
                     chunk_s=1.0)
    lines: list[str] = []
    watcher = Watcher(cfg, say=lines.append)
    thread = threading.Thread(target=watcher.run)
    thread.start()
    try:
        run_id = wait_for(lambda: watcher.sources[0].run_id, 30, "the live run to open")
        store = open_store(db)
        t0 = time.monotonic()
        wait_for(lambda: store.events(run_id), 30, "the injected anomaly as an event")
        found_s = time.monotonic() - t0
        stop_process(server)  # the stream drops, most likely while the event is still open
        wait_for(lambda: [r for r in store.live_log(run_id) if r["what"] == "reconnect"], 10, "a logged reconnect")
        last_before = store.samples(run_id)[0]["frame_end"]
        server = serve(normal, port)
        wait_for(lambda: [r for r in store.live_log(run_id) if r["what"] == "connected"], 15, "the reconnection")
        wait_for(lambda: store.samples(run_id)[0]["frame_end"] > last_before + 25, 15, "frames after the reconnect")
    finally:
        watcher.stop.set()
        thread.join(30)
        stop_process(server)
    assert not thread.is_alive()
    events = store.events(run_id)
    assert len(events) == 1, events
    ev = events[0]
    assert not ev["is_open"] and ev["key"] == f"cam:{ev['start_frame']}"
    assert SPAN[0] - 5 <= ev["start_frame"] <= SPAN[1] and ev["end_frame"] <= last_before
    assert found_s < 15
    health = {h["source"]: h for h in store.health()}["cam"]
    assert health["reconnects"] == 1 and health["state"] == "closed" and health["dropped_frames"] == 0
    series = store.series(store.samples(run_id)[0]["id"])
    idx = series["frame_indices"]
    assert np.all(np.diff(idx) > 0), "frame numbers go on across the reconnect, never repeat"
    assert idx[-1] > last_before + 25 and len(series["frame_scores"]) == len(idx)
    assert [r["state"] for r in store.live_runs() if r["id"] == run_id] == ["closed"]
    assert any("reconnect 1" in ln for ln in lines) and any("event cam:" in ln for ln in lines)
    store.close()


@needs_ffmpeg
def test_a_stream_that_is_not_up_yet_is_retried_with_doubling_delays_until_it_is(tmp_path):
    video = clip(tmp_path / "clip.mp4", anomaly=None)
    port = free_port()
    cfg = one_source(str(rules_model(tmp_path)), f"tcp://127.0.0.1:{port}", db=str(tmp_path / "s.db"), chunk_s=0.5)
    feed = VideoFeed(cfg.sources[0]).start()
    server = None
    notes: list[tuple[str, str]] = []

    def taken(what: str) -> list[str]:
        while feed.notes:
            notes.append(feed.notes.popleft())
        return [d for w, d in notes if w == what]

    try:
        wait_for(lambda: len(taken("retry")) >= 3, 10, "three failed attempts")
        server = serve(video, port)
        wait_for(lambda: taken("connected"), 15, "the connection once the server is up")
        chunk = wait_for(lambda: feed.queue.get(0.1), 15, "frames")
    finally:
        feed.stop()
        if server is not None:
            stop_process(server)
    assert feed.join(15)
    assert [d.split("; ")[-1] for d in taken("retry")[:3]] == ["next in 0.5 s", "next in 1 s", "next in 2 s"]
    assert "connection refused" in taken("retry")[0].lower()
    assert feed.reconnects == 0, "never lost, only not up yet"
    assert chunk.indices[0] == 0 and chunk.data.shape[1:] == (120, 160, 3)
