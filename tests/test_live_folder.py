"""A watched folder with real files: images dropped one by one are each scored once and stored as they come; a
corrupt file is recorded as an error and the watcher goes on. (A file still being written: test_live_config.)"""

from __future__ import annotations

import threading

from oddeye.core.imageio import write_image
from oddeye.live.config import one_source
from oddeye.live.watcher import Watcher
from oddeye.store.api import open_store
from test_live_support import gaussian_model, images, wait_for


def test_files_dropped_one_by_one_are_scored_once_and_a_corrupt_one_is_an_error(tmp_path):
    model = gaussian_model(tmp_path)
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    write_image(incoming / "part_00.png", images(tmp_path, 1)[0])  # there before the watcher starts
    db = tmp_path / "store.db"
    cfg = one_source(str(model), str(incoming), name="line", glob="*.png", db=str(db), out=str(tmp_path / "live"),
                     poll_s=0.1)
    watcher = Watcher(cfg, say=lambda line: None)
    thread = threading.Thread(target=watcher.run)
    thread.start()
    try:
        run_id = wait_for(lambda: watcher.sources[0].run_id, 30, "the live run to open")
        store = open_store(db)
        ledger = lambda: {r["item"]: r["status"] for r in store.ledger(run_id)}  # noqa: E731
        wait_for(lambda: "part_00.png" in ledger(), 15, "the file that was there first")
        for k, img in enumerate(images(tmp_path, 4)[1:], start=1):
            write_image(incoming / f"part_{k:02d}.png", img)
            wait_for(lambda: f"part_{k:02d}.png" in ledger(), 15, f"part_{k:02d}.png to be scored")
        (incoming / "part_04.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
        (incoming / "notes.txt").write_text("not matched by the glob")
        wait_for(lambda: "part_04.png" in ledger(), 15, "the corrupt file to be recorded")
        write_image(incoming / "part_05.png", images(tmp_path, 1)[0])  # and the watcher goes on
        wait_for(lambda: "part_05.png" in ledger(), 15, "the file after the corrupt one")
        assert (incoming / "part_00.png").stat().st_mtime  # the watcher never moves or deletes inputs
    finally:
        watcher.stop.set()
        thread.join(30)
    assert not thread.is_alive()
    assert ledger() == {**{f"part_{k:02d}.png": "scored" for k in (0, 1, 2, 3, 5)}, "part_04.png": "error"}
    samples = store.samples(run_id, order="id")
    assert sorted(s["sample_id"] for s in samples) == [f"part_{k:02d}" for k in range(6)]  # each exactly once
    bad = next(s for s in samples if s["sample_id"] == "part_04")
    assert bad["score"] is None and "cannot read image" in bad["reason"]
    assert [r["what"] for r in store.live_log(run_id)].count("error") == 1
    health = {h["source"]: h for h in store.health()}["line"]
    assert (health["items"], health["errors"], health["state"]) == (5, 1, "closed")
    assert store.live_runs()[0]["state"] == "closed"
    store.close()
