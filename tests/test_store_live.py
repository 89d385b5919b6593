"""Live part of the review store (`oddeye watch`) on SQLite and on a real PostgreSQL: runs, series chunks, events,
the ledger, the log, health, recent events, and several writers at once."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text
from store_support import _stamp, new_pg_db  # noqa: F401 - pg_server and db are fixtures of conftest.py

from oddeye.core.errors import InputError
from oddeye.core.types import AnomalyMap, Event, Result, Score
from oddeye.store import engine as eng
from oddeye.store.api import open_store, save_result


def _open(st, source: str = "cam-1", model: str = "models/rules") -> int:
    return st.open_live_run(source, head="video-rules", model=model, source_kind="stream")


def _chunk(first: int, n: int, value: float = 0.1, fps: float = 10.0) -> dict[str, np.ndarray]:
    idx = np.arange(first, first + n)
    return {"frame_scores": np.full(n, value, np.float32), "frame_indices": idx, "frame_times": idx / fps}


def _item_result(folder: Path, name: str, score: float = 0.8) -> Result:
    """A scored folder image with a map, an overlay artefact and one region event."""
    overlay = folder / f"{name}.overlay.png"
    overlay.write_bytes(b"png")
    sc = Score(name, score, maps={"anomaly": AnomalyMap("pixel", np.full((8, 8), score))},
               artefacts={"overlay": str(overlay)}, meta={"path": str(folder / name)})
    return Result(head="image-patchcore", scores=[sc], threshold=0.5,
                  events=[Event(name, score, box=(1.0, 2.0, 5.0, 6.0), reason="scratch")])


def _event(st, run_id: int, key: str, **kw) -> int:
    args = dict(sample_id="cam-1", score=0.5, start_frame=10, end_frame=12, start=1.0, end=1.2, open=True)
    return st.upsert_event(run_id, key, **{**args, **kw})


def test_open_live_run_resumes_the_open_run(db):
    with open_store(db) as st:
        run_id = _open(st)
        assert _open(st) == run_id  # a restarted watcher resumes
        other = _open(st, "cam-2")
        assert other != run_id
        run = st.run(run_id)
        assert (run["kind"], run["head"], run["meta"]) == \
            ("live", "video-rules", {"live": "open", "source": "cam-1", "source_kind": "stream"})
        assert [r["id"] for r in st.live_runs("open")] == [other, run_id]
        st.close_live_run(run_id)
        assert [r["source"] for r in st.live_runs("closed")] == ["cam-1"]
        assert [r["state"] for r in st.live_runs()] == ["open", "closed"]
        again = _open(st)
        assert again not in (run_id, other)
        swapped = _open(st, model="models/other")  # another model: the old run ends, a new one starts
        assert swapped != again and st.run(again)["meta"]["live"] == "closed"
        with pytest.raises(InputError, match="no run 999"):
            st.close_live_run(999)
        plain = save_result(db, Result(head="x", scores=[Score("a", 1.0)]), kind="score")
        with pytest.raises(InputError, match="not a live run"):
            st.append_series(plain, "a", _chunk(0, 3))


def test_series_chunks_append_concatenate_and_resend(db):
    with open_store(db) as st:
        run_id = _open(st)
        pk = st.append_series(run_id, "cam-1", _chunk(0, 50, 0.1))
        assert st.append_series(run_id, "cam-1", _chunk(50, 30, 0.9)) == pk
        assert st.append_series(run_id, "cam-1", _chunk(50, 30, 0.5)) == pk  # resent after a restart: no-op
        st.append_series(run_id, "cam-1", _chunk(80, 20, 0.2))
        ser = st.series(pk)
        np.testing.assert_array_equal(ser["frame_indices"], np.arange(100))
        np.testing.assert_allclose(ser["frame_times"], np.arange(100) / 10.0)
        assert ser["frame_scores"].dtype == np.float32
        np.testing.assert_allclose(ser["frame_scores"], np.r_[np.full(50, 0.1), np.full(30, 0.9), np.full(20, 0.2)])
        sample = st.samples(run_id)[0]
        assert (sample["id"], sample["kind"], sample["frame_start"], sample["frame_end"], sample["n_frames"]) == \
            (pk, "video", 0, 99, 100)
        assert sample["score"] == pytest.approx(0.9) and st.run(run_id)["n_samples"] == 1
        assert st.append_series(run_id, "cam-1", _chunk(100, 0)) == pk  # empty chunk: nothing stored
        with pytest.raises(InputError, match="one length"):
            st.append_series(run_id, "cam-1", {"frame_scores": np.zeros(3), "frame_indices": np.arange(4)})
        with pytest.raises(InputError, match="frame_indices"):
            st.append_series(run_id, "cam-1", {"frame_scores": np.zeros(3)})
        with pytest.raises(InputError, match="unknown keys"):
            st.append_series(run_id, "cam-1", {**_chunk(100, 3), "loss": np.zeros(3)})
        with pytest.raises(InputError, match="earlier chunks had"):
            st.append_series(run_id, "cam-1", {"frame_scores": np.zeros(3), "frame_indices": np.arange(100, 103)})
        assert len(st.series(pk)["frame_scores"]) == 100


def test_event_upsert_one_row_per_key_never_reopened(db):
    with open_store(db) as st:
        run_id = _open(st)
        pk = st.append_series(run_id, "cam-1", _chunk(0, 20))
        eid = _event(st, run_id, "cam-1:10", score=0.5, end_frame=12, end=1.2)
        assert _event(st, run_id, "cam-1:10", score=0.9, end_frame=15, end=1.5, reason="a runner") == eid
        assert _event(st, run_id, "cam-1:10", score=0.6, end_frame=14, end=1.4) == eid  # older resend: no shrink
        (ev,) = st.events(run_id)
        assert (ev["id"], ev["sample_pk"], ev["is_open"], ev["end_frame"], ev["end"], ev["score"], ev["reason"]) == \
            (eid, pk, True, 15, 1.5, 0.9, "a runner")
        _event(st, run_id, "cam-1:10", score=0.7, end_frame=18, end=1.8, open=False, meta={"frames": 9})
        _event(st, run_id, "cam-1:10", score=5.0, end_frame=30, end=3.0, open=True)  # a closed event stays closed
        (ev,) = st.events(run_id)
        assert (ev["is_open"], ev["end_frame"], ev["score"], ev["meta"]) == (False, 18, 0.9, {"frames": 9})
        second = _event(st, run_id, "cam-1:40", start_frame=40, end_frame=41, box=(1, 2, 3, 4))
        assert second != eid and st.event(second)["x2"] == 3.0
        assert st.run(run_id)["n_events"] == 2 and len(st.events(run_id)) == 2
        other = _open(st, "cam-2")  # the same key in another run is another event
        assert _event(st, other, "cam-1:10", sample_id="cam-2") not in (eid, second)


def test_close_live_run_closes_open_events_at_the_last_frame(db):
    with open_store(db) as st:
        run_id = _open(st)
        st.append_series(run_id, "cam-1", _chunk(0, 60))
        st.append_series(run_id, "cam-1", _chunk(60, 40))
        open_id = _event(st, run_id, "cam-1:90", start_frame=90, end_frame=95, start=9.0, end=9.5)
        done_id = _event(st, run_id, "cam-1:10", open=False)
        st.set_health("cam-1", run_id=run_id, state="running", fps_in=10, fps_scored=10, lag_s=0.1, dropped_frames=0,
                      reconnects=0, last_event=None, frames=100, items=0, errors=0)
        st.close_live_run(run_id)
        ev = st.event(open_id)
        assert (ev["is_open"], ev["end_frame"], ev["end"]) == (False, 99, pytest.approx(9.9))
        assert st.event(done_id)["end_frame"] == 12
        assert st.run(run_id)["meta"]["live"] == "closed" and "closed" in st.run(run_id)["meta"]
        (h,) = st.health()
        assert h["state"] == "closed" and not h["stale"]
        st.close_live_run(run_id)  # closing twice is harmless
        assert st.event(open_id)["end_frame"] == 99


def test_add_live_result_is_idempotent_per_item_with_its_ledger(db, tmp_path):
    with open_store(db) as st:
        run_id = st.open_live_run("line-3", head="image-patchcore", model="models/pc", source_kind="folder")
        item = tmp_path / "part-001.png"
        item.write_bytes(b"img")
        pks = st.add_live_result(run_id, _item_result(tmp_path, "part-001.png"), item=str(item))
        assert len(pks) == 1 and st.ledger_has(run_id, str(item))
        assert st.add_live_result(run_id, _item_result(tmp_path, "part-001.png"), item=str(item)) == []
        assert st.add_live_result(run_id, _item_result(tmp_path, "part-002.png", 0.3), item="part-002.png") != []
        assert not st.ledger_has(run_id, "part-003.png")
        samples = st.samples(run_id, order="id")
        assert [s["sample_id"] for s in samples] == ["part-001.png", "part-002.png"]
        assert samples[0]["path"] == str(item.resolve())
        assert st.maps(pks[0])["anomaly"][0] == "pixel"
        assert [a["name"] for a in st.artefacts(run_id, pks[0])] == ["overlay", "input"]
        assert [e["reason"] for e in st.events(run_id)] == ["scratch", "scratch"]
        assert st.folders(run_id) == [tmp_path.resolve()]  # one folder row for both items
        run = st.run(run_id)
        assert (run["n_samples"], run["n_events"], run["threshold"]) == (2, 2, 0.5)
        bad = Result(head="image-patchcore")
        bad.add_error("part-003.png", "not an image", tmp_path / "part-003.png")
        assert len(st.add_live_result(run_id, bad, item="part-003.png")) == 1
        assert [(r["item"], r["status"]) for r in st.ledger(run_id)] == \
            [(str(item), "scored"), ("part-002.png", "scored"), ("part-003.png", "error")]
        assert st.ledger(run_id)[2]["message"] == "not an image"
        assert st.live_log(run_id)[0]["what"] == "error" and "part-003.png" in st.live_log(run_id)[0]["detail"]
        st.close_live_run(run_id)
        resumed = st.open_live_run("line-3", head="image-patchcore", model="models/pc", source_kind="folder")
        assert resumed != run_id and st.ledger_has(resumed, str(item))  # the ledger is the source's, across runs
        assert st.add_live_result(resumed, _item_result(tmp_path, "part-001.png"), item=str(item)) == []
        with pytest.raises(InputError, match="needs an oddeye Result"):
            st.add_live_result(resumed, {"score": 1}, item="x")


def test_errors_and_the_live_log(db):
    with open_store(db) as st:
        run_id = _open(st, "drop")
        st.record_live_error(run_id, "broken.ply", "truncated file")
        st.record_live_error(run_id, "broken.ply", "still truncated")  # logged again, one ledger row
        assert st.ledger_has(run_id, "broken.ply")
        assert [(r["status"], r["message"]) for r in st.ledger(run_id)] == [("error", "truncated file")]
        st.log_live(run_id, "reconnect", "attempt 1, waited 0.5 s")
        for i in range(5):
            st.log_live(run_id, "dropped", f"{i} frames")
        log = st.live_log(run_id, limit=3)
        assert [(r["what"], r["detail"]) for r in log] == [("dropped", "4 frames"), ("dropped", "3 frames"),
                                                             ("dropped", "2 frames")]
        assert log[0]["id"] > log[1]["id"] and log[0]["time"].tzinfo is not None
        full = st.live_log(run_id)
        assert [r["what"] for r in full[-3:]] == ["reconnect", "error", "error"]
        assert st.live_log(_open(st, "other")) == []


def test_health_upsert_and_stale(db):
    with open_store(db) as st:
        run_id = _open(st)
        seen = dt.datetime(2026, 1, 2, 3, 4, 5)  # naive: taken as UTC
        kw = dict(run_id=run_id, fps_in=10.0, fps_scored=9.5, lag_s=0.4, dropped_frames=3, reconnects=1,
                  last_event=seen, frames=120, items=0, errors=0)
        st.set_health("cam-1", state="running", **kw)
        st.set_health("cam-1", state="reconnecting", **{**kw, "reconnects": 2, "frames": 130})
        st.set_health("a-folder", state="running", **{**kw, "last_event": None, "items": 4})
        rows = st.health()
        assert [r["source"] for r in rows] == ["a-folder", "cam-1"]
        cam = rows[1]
        assert (cam["state"], cam["reconnects"], cam["frames"], cam["run_id"], cam["fps_scored"], cam["stale"]) == \
            ("reconnecting", 2, 130, run_id, 9.5, False)
        assert cam["last_event"] == seen.replace(tzinfo=dt.timezone.utc) and rows[0]["last_event"] is None
        assert (dt.datetime.now(dt.timezone.utc) - cam["updated"]).total_seconds() < 5
        _, write = eng.make_engines(eng.store_url(db))
        with write.begin() as c:  # the watcher of cam-1 went silent 30 s ago
            c.execute(text("UPDATE live_health SET updated = :t"),
                      {"t": dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=30)})
        write.dispose()
        assert [r["stale"] for r in st.health()] == [True, True]
        st.set_health("cam-1", state="closed", **kw)
        assert [r["stale"] for r in st.health()] == [True, False]


def test_recent_events_of_live_runs_with_thumbnails(db, tmp_path):
    with open_store(db) as st:
        save_result(db, Result(head="x", scores=[Score("a", 1.0)], events=[Event("a", 1.0)]), kind="score")
        cam = _open(st)
        first = _event(st, cam, "cam-1:10")
        thumb = tmp_path / "thumbs" / "cam-1-10.jpg"
        thumb.parent.mkdir()
        thumb.write_bytes(b"jpg")
        assert st.add_artefact(cam, "thumbnail", thumb, sample_id="cam-1") is not None
        with pytest.warns(UserWarning, match="not recorded"):
            assert st.add_artefact(cam, "thumbnail", tmp_path / "missing.jpg") is None
        meta_thumb = _event(st, cam, "cam-1:50", start_frame=50, end_frame=55, meta={"thumbnail": "/x/t.jpg"})
        folder = st.open_live_run("line", head="image-patchcore", model="m", source_kind="folder")
        st.add_live_result(folder, _item_result(tmp_path, "p.png"), item="p.png")
        recent = st.recent_events()
        assert [(e["source"], e["source_kind"]) for e in recent] == [("line", "folder"), ("cam-1", "stream"),
                                                                     ("cam-1", "stream")]
        assert recent[0]["thumbnail"] == str((tmp_path / "p.png.overlay.png").resolve())
        assert recent[1]["id"] == meta_thumb and recent[1]["thumbnail"] == "/x/t.jpg"
        assert recent[2]["thumbnail"] == str(thumb.resolve()) and recent[2]["head"] == "video-rules"
        assert st.safe_path(thumb, cam) == thumb.resolve()  # the dashboard may show it
        assert [e["id"] for e in st.recent_events(since_id=first)] == [recent[0]["id"], meta_thumb]
        assert len(st.recent_events(limit=1)) == 1 and st.recent_events(since_id=recent[0]["id"]) == []


def test_delete_live_run_removes_its_rows(db):
    with open_store(db) as st:
        run_id = _open(st)
        st.append_series(run_id, "cam-1", _chunk(0, 10))
        _event(st, run_id, "k")
        st.record_live_error(run_id, "x", "bad")
        st.set_health("cam-1", run_id=run_id, state="running", fps_in=1, fps_scored=1, lag_s=0, dropped_frames=0,
                      reconnects=0, last_event=None, frames=10, items=0, errors=1)
        st.delete_run(run_id)
        assert st.live_runs() == [] and st.live_log(run_id) == [] and st.ledger(run_id) == []
        assert st.health()[0]["run_id"] is None
        _, write = eng.make_engines(eng.store_url(db))
        with write.connect() as c:
            assert c.execute(text("SELECT count(*) FROM series_chunks")).scalar() == 0
        write.dispose()


def test_upgrade_from_0004_keeps_events_closed(db):
    _stamp(db, "0004")
    run_id = save_result(db, Result(head="x", scores=[Score("a", 1.0)], events=[Event("a", 1.0)]), kind="score")
    with open_store(db) as st:
        assert st.revision == "0005"
        (ev,) = st.events(run_id)
        assert (ev["is_open"], ev["key"]) == (False, None)


def _writer(db: str, worker: int, n: int, tmp: str, store=None) -> None:
    """Worker of the concurrent tests: its own source, plus the SAME shared event key and folder items as the
    other worker (one of them must win, the other must update or skip)."""
    st = store or open_store(db)
    try:
        own = _open(st, f"cam-{worker}")
        shared = _open(st, "shared")
        folder = st.open_live_run("drop", head="image-patchcore", model="m", source_kind="folder")
        for i in range(n):
            st.append_series(own, f"cam-{worker}", _chunk(i * 10, 10, 0.1 * i))
            st.append_series(shared, "shared", _chunk(i * 10, 10))  # both send the same chunks
            st.upsert_event(own, f"cam-{worker}:{i}", sample_id=f"cam-{worker}", score=float(i), start_frame=i * 10,
                            end_frame=i * 10 + 5, start=None, end=None, open=i == n - 1)
            _event(st, shared, "shared:0", sample_id="shared", score=float(i + worker), end_frame=i, open=True)
            st.add_live_result(folder, _item_result(Path(tmp), f"{i}.png"), item=f"{i}.png")
            st.log_live(own, "tick", str(i))
            st.set_health(f"cam-{worker}", run_id=own, state="running", fps_in=10, fps_scored=10, lag_s=0,
                          dropped_frames=0, reconnects=0, last_event=None, frames=i, items=i, errors=0)
            st.set_health("shared", run_id=shared, state="running", fps_in=10, fps_scored=10, lag_s=0,
                          dropped_frames=0, reconnects=0, last_event=None, frames=i, items=i, errors=0)
    finally:
        if store is None:
            st.close()


def _check_concurrent(db: str, n: int) -> None:
    with open_store(db) as st:
        runs = st.live_runs()
        assert sorted(r["source"] for r in runs) == ["cam-0", "cam-1", "drop", "shared"]  # one run per source
        by_source = {r["source"]: r["id"] for r in runs}
        for w in range(2):
            run_id = by_source[f"cam-{w}"]
            (sample,) = st.samples(run_id)
            np.testing.assert_array_equal(st.series(sample["id"])["frame_indices"], np.arange(10 * n))
            assert len(st.events(run_id)) == n and len(st.live_log(run_id, limit=1000)) == n
        (shared_sample,) = st.samples(by_source["shared"])
        np.testing.assert_array_equal(st.series(shared_sample["id"])["frame_indices"], np.arange(10 * n))
        (ev,) = st.events(by_source["shared"])
        assert ev["score"] == n and ev["end_frame"] == n - 1
        assert len(st.samples(by_source["drop"])) == n == len(st.ledger(by_source["drop"]))
        assert sorted(h["source"] for h in st.health()) == ["cam-0", "cam-1", "shared"]


def test_two_threads_write_at_once(db, tmp_path):
    n = 12
    with open_store(db) as st:  # one Store shared by both threads
        errors: list[BaseException] = []

        def work(w: int) -> None:
            try:
                _writer(db, w, n, str(tmp_path), store=st)
            except BaseException as e:  # noqa: BLE001 - reported by the assertion below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(w,)) for w in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert errors == []
    _check_concurrent(db, n)


def test_two_processes_write_at_once(db, tmp_path):
    import multiprocessing as mp

    n = 12
    open_store(db).close()  # the schema exists; both processes open their own Store
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(db, w, n, str(tmp_path))) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    _check_concurrent(db, n)


def test_0005_downgrades_and_upgrades_again_keeping_labels(db):
    from alembic import command

    run_id = save_result(db, Result(head="x", scores=[Score("a", 1.0)], events=[Event("a", 1.0)]), kind="score")
    with open_store(db) as st:
        st.add_label(run_id, "unsure", event_id=st.events(run_id)[0]["id"])
        live = _open(st)
        st.append_series(live, "cam-1", _chunk(0, 5))
    url = eng.store_url(db)
    _, write = eng.make_engines(url)
    cfg = eng.alembic_config()
    with write.begin() as c:
        cfg.attributes["connection"] = c
        command.downgrade(cfg, "0004")
    write.dispose()
    with open_store(db) as st:  # upgraded again on open
        assert st.revision == "0005" and len(st.labels(run_id)) == 1
        assert st.events(run_id)[0]["is_open"] is False
