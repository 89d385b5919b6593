"""A live source is a self-contained unit: pickled into a spawned process it runs a video file (events from a score
threshold) to its end and closes its run; a reader that nobody takes from keeps only the newest chunks (subsampled
to --fps) and counts the frames it drops."""

from __future__ import annotations

import multiprocessing
import pickle
import time

import numpy as np

from oddeye.live.config import one_source
from oddeye.live.runner import LiveSource
from oddeye.live.sources import VideoFeed
from oddeye.store.api import open_store
from test_live_support import SPAN, clip, rules_model, wait_for


def test_a_live_source_runs_in_another_process_and_closes_its_run_when_the_file_ends(tmp_path):
    model, video = rules_model(tmp_path), clip(tmp_path / "clip.mp4")
    db = tmp_path / "store.db"
    cfg = one_source(str(model), str(video), name="cam", db=str(db), out=str(tmp_path / "live"),
                     threshold=0.6, chunk_s=1.0)
    source = LiveSource(cfg.sources[0], cfg.db)
    pickle.dumps(source)  # nothing is opened before run(): it can be shipped to a worker
    mp = multiprocessing.get_context("spawn")
    stop = mp.Event()
    proc = mp.Process(target=source.run, args=(stop,))
    proc.start()
    try:
        proc.join(60)  # the 6 s file plays in real time, then the source closes its run by itself
        assert proc.exitcode == 0
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join()
    store = open_store(db)
    (run,) = store.live_runs()
    assert run["state"] == "closed" and run["source"] == "cam" and run["head"] == "video-rules"
    series = store.series(store.samples(run["id"])[0]["id"])
    assert np.array_equal(series["frame_indices"], np.arange(150)), "every frame scored once"
    np.testing.assert_allclose(series["frame_times"], series["frame_indices"] / 25.0)
    events = store.events(run["id"])
    assert events and all(not e["is_open"] for e in events)
    above = series["frame_indices"][series["frame_scores"] > 0.6]
    assert events[0]["start_frame"] == above[0] and SPAN[0] <= above[0] <= SPAN[1]
    assert {h["source"]: h["state"] for h in store.health()} == {"cam": "closed"}
    store.close()


def test_a_reader_nobody_keeps_up_with_keeps_the_newest_chunks_and_counts_the_dropped_frames(tmp_path):
    video = clip(tmp_path / "clip.mp4")
    cfg = one_source(str(rules_model(tmp_path)), str(video), db=str(tmp_path / "s.db"), chunk_s=0.2, fps=12.5)
    feed = VideoFeed(cfg.sources[0], queue_size=2).start()
    try:
        wait_for(lambda: feed.queue.dropped_frames >= 20, 20, "frames dropped by a full queue")
        assert len(feed.queue) <= 2
    finally:
        feed.stop()
        assert feed.join(5)
    chunks = []
    while (c := feed.queue.get(0)) is not None:
        chunks.append(c)
    assert 1 <= len(chunks) <= 2 and feed.queue.finished
    kept = sum(len(c) for c in chunks)
    assert all(np.all(c.indices % 2 == 0) for c in chunks), "12.5 of 25 fps: every second frame"
    taken = (feed.frames_in + 1) // 2
    assert feed.queue.dropped_frames + kept == taken, "every frame taken is either kept or counted as dropped"
    assert chunks[-1].indices[-1] >= feed.frames_in - 2, "what is kept is the newest"
    assert time.time() - chunks[-1].arrived < 5
