"""Review store on SQLite: save_result round trip, labels, thresholds, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from oddeye.core.errors import InputError, StoreError
from oddeye.core.types import AnomalyMap, Result, Score, events_from_scores
from oddeye.store.api import open_store, save_result
from store_support import _free_port, _stamp, new_pg_db  # fixtures pg_server and db: conftest.py


def _result(n_frames: int = 500, seed: int = 0) -> Result:
    rng = np.random.default_rng(seed)
    fs = rng.random(n_frames).astype(np.float32)
    times = np.arange(n_frames) / 25.0
    return Result(head="video-rules",
                  scores=[Score("clip", float(fs.max()), label=1, frame_scores=fs, frame_times=times,
                                reason="a walker ran"),
                          Score("still", 0.2, maps={"anomaly": AnomalyMap("pixel", rng.random((16, 24)))})],
                  events=events_from_scores(fs, 0.9, "clip", times=times), threshold=0.9, metrics={"auroc": 0.7})


def test_save_result_round_trip(db):
    r = _result()
    run_id = save_result(db, r, kind="score", model="m/", data="clips/", params={"k": 3})
    with open_store(db) as st:
        run = st.run(run_id)
        assert (run["head"], run["kind"], run["model"], run["parameters"], run["metrics"]) == \
            ("video-rules", "score", "m/", {"k": 3}, {"auroc": 0.7})
        samples = st.samples(run_id)
        assert [s["sample_id"] for s in samples] == ["clip", "still"]
        ser = st.series(samples[0]["id"])
        np.testing.assert_array_equal(ser["frame_scores"], r.scores[0].frame_scores)
        kind, amap = st.maps(samples[1]["id"])["anomaly"]
        assert kind == "pixel" and amap.shape == (16, 24)
        assert len(st.events(run_id)) == len(r.events) > 0
        assert st.threshold(run_id) == pytest.approx(0.9)


def test_labels_and_threshold(db):
    run_id = save_result(db, _result(), kind="score")
    with open_store(db) as st:
        ev = st.events(run_id)[0]
        st.add_label(run_id, "false_alarm", event_id=ev["id"], by="ana", note="shadow")
        labs = st.labels(run_id)
        assert labs[0]["label"] == "false_alarm" and labs[0]["by"] == "ana" and labs[0]["sample_id"] == "clip"
        with pytest.raises(InputError, match="label must be one of"):
            st.add_label(run_id, "maybe", event_id=ev["id"])
        with pytest.raises(InputError, match="not in run"):
            st.add_label(run_id + 1, "unsure", event_id=ev["id"])
        st.set_threshold(run_id, 0.95, source="suggest")
        assert st.threshold(run_id) == pytest.approx(0.95)


def test_not_a_store(tmp_path):
    bad = tmp_path / "notes.db"
    bad.write_text("hello, I am a text file\n" * 10)
    with pytest.raises(StoreError, match="notes.db is not an oddeye store"):
        open_store(bad)


def _write_runs(db: str, n: int, seed: int) -> None:
    """Worker of the concurrent-writers test: n runs into one store."""
    for i in range(n):
        save_result(db, _result(n_frames=300, seed=seed * 100 + i), kind="score", params={"worker": seed, "i": i})


def test_concurrent_writers_lose_no_rows(db):
    import multiprocessing as mp

    # no store yet: both workers create and migrate it at the same moment, then keep writing
    ctx = mp.get_context("fork")  # two scoring runs writing into one store at the same time
    procs = [ctx.Process(target=_write_runs, args=(db, 8, w)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with open_store(db) as st:
        runs = st.runs()
        assert len(runs) == 16
        assert sorted((r["parameters"]["worker"], r["parameters"]["i"]) for r in runs) == \
            [(w, i) for w in range(2) for i in range(8)]
        expect_events = sum(len(_result(n_frames=300, seed=w * 100 + i).events) for w in range(2) for i in range(8))
        assert st.counts()["events"] == expect_events and st.counts()["samples"] == 32


def _open_at_once(path: str, barrier) -> str:  # noqa: ANN001 - a multiprocessing barrier
    """Worker of the simultaneous-open test: wait for the others, open the store, say what happened."""
    barrier.wait()
    try:
        with open_store(path):
            return "ok"
    except StoreError as e:
        return str(e)


def test_many_processes_opening_one_new_sqlite_file_at_once_all_succeed(tmp_path):
    import multiprocessing as mp

    # SQLite said "database is locked" at once (no busy wait) to a process switching a new file to WAL while
    # another did: 9 of 150 rounds of 6 processes failed before the switch waited for it
    ctx = mp.get_context("fork")
    with ctx.Manager() as manager, ctx.Pool(6) as pool:
        for i in range(12):
            barrier = manager.Barrier(6)
            said = pool.starmap(_open_at_once, [(str(tmp_path / f"s{i}.db"), barrier)] * 6)
            assert said == ["ok"] * 6, f"round {i}: {said}"


def test_older_store_is_upgraded(db):
    from sqlalchemy import inspect

    from oddeye.store import engine as eng

    _stamp(db, "0001")
    probe = eng.make_engines(eng.store_url(db))[0]
    assert "labels" not in inspect(probe).get_table_names()
    probe.dispose()
    run_id = save_result(db, _result(), kind="score")  # opening upgrades it
    with open_store(db) as st:
        assert st.revision == eng.head_revision() != "0001"
        st.add_label(run_id, "unsure", sample_pk=st.samples(run_id)[0]["id"])
        assert len(st.labels()) == 1


def test_upgrade_to_0004_drops_folders_no_existing_file_needs(db, tmp_path):
    from sqlalchemy import text

    from oddeye.store import engine as eng

    (tmp_path / "arts").mkdir()
    (tmp_path / "arts" / "overlay.png").write_bytes(b"x")
    r = _result()
    r.scores[0].artefacts["overlay"] = str(tmp_path / "arts" / "overlay.png")
    run_id = save_result(db, r, kind="score")
    from alembic import command

    write = eng.make_engines(eng.store_url(db))[1]
    cfg = eng.alembic_config()
    with write.begin() as c:  # back to 0003, then what 0003 wrote: the store's folder and a `synth` source's folder
        cfg.attributes["connection"] = c
        command.downgrade(cfg, "0003")
        for junk in ("/var/lib/oddeye-stores", str(tmp_path / "cwd")):
            c.execute(text("INSERT INTO folders (run_id, path) VALUES (:r, :p)"), {"r": run_id, "p": junk})
    write.dispose()
    with open_store(db) as st:
        assert st.revision == eng.head_revision()
        assert [str(f) for f in st.folders(run_id)] == [str(tmp_path / "arts")]


def test_newer_store_is_refused(db):
    _stamp(db, "future")
    with pytest.raises(StoreError, match="written by a newer oddeye.*9999_from_the_future"):
        open_store(db)


def test_foreign_sqlite_database_is_refused(tmp_path):
    import sqlite3

    other = tmp_path / "app.sqlite"
    with sqlite3.connect(other) as c:
        c.execute("CREATE TABLE customers (id INTEGER)")
    with pytest.raises(StoreError, match="app.sqlite is a database but not an oddeye store"):
        open_store(other)


def test_unreachable_postgres_names_the_host():
    port = _free_port()  # nothing listens there
    with pytest.raises(StoreError, match=f"cannot connect to PostgreSQL at 127.0.0.1:{port}"):
        open_store(f"postgresql://oddeye@127.0.0.1:{port}/nope")
    with pytest.raises(StoreError, match="not supported"):
        open_store("mysql://u@h/db")


def test_paths_outside_artefact_folders_are_refused(tmp_path):
    from oddeye.store.api import PathRefusedError

    arts = tmp_path / "run1"
    arts.mkdir()
    (arts / "overlay.png").write_bytes(b"x")
    outside = tmp_path.parent / f"{tmp_path.name}_secret.txt"
    outside.write_text("secret")
    r = _result()
    r.scores[1].artefacts["overlay"] = str(arts / "overlay.png")
    db = tmp_path / "stores" / "s.db"
    run_id = save_result(db, r, kind="score")
    with open_store(db) as st:
        assert st.safe_path(arts / "overlay.png", run_id) == (arts / "overlay.png").resolve()
        for bad in (outside, arts / ".." / ".." / outside.name, "/etc/passwd"):
            with pytest.raises(PathRefusedError, match="outside the store's artefact folders"):
                st.safe_path(bad, run_id)
        link = arts / "link.txt"
        link.symlink_to(outside)
        with pytest.raises(PathRefusedError):
            st.safe_path(link, run_id)
    outside.unlink()


def test_threshold_suggest_from_labels(db):
    from oddeye.ui.threshold import apply_threshold, suggest_threshold

    run_id = save_result(db, _result(n_frames=600), kind="score")
    with open_store(db) as st:
        with pytest.raises(InputError, match="no events or samples labelled"):
            suggest_threshold(st, run_id)
        evs = sorted(st.events(run_id), key=lambda e: e["score"])
        for e in evs[: len(evs) // 2]:
            st.add_label(run_id, "false_alarm", event_id=e["id"])
        for e in evs[len(evs) // 2:]:
            st.add_label(run_id, "true_anomaly", event_id=e["id"])
        s = suggest_threshold(st, run_id, 0.0)
        assert s["false_alarms_kept"] == 0 and s["true_anomalies_kept"] >= 1
        assert s["threshold"] > max(e["score"] for e in evs[: len(evs) // 2])
        apply_threshold(st, run_id, s)
        assert st.threshold(run_id) == pytest.approx(s["threshold"])
        with pytest.raises(InputError, match="max-false-alarm-rate"):
            suggest_threshold(st, run_id, 1.5)


def test_cli_store_info_and_threshold(tmp_path, capsys):
    import json

    from oddeye.cli import main

    db = str(tmp_path / "s.db")
    run_id = save_result(db, _result(), kind="eval", model="m/")
    with open_store(db) as st:
        e = st.events(run_id)
        st.add_label(run_id, "true_anomaly", event_id=e[0]["id"])
        st.add_label(run_id, "false_alarm", event_id=e[1]["id"])
    assert main(["store", "info", "--db", db]) == 0
    assert f"run {run_id:>4}" in capsys.readouterr().out
    assert main(["threshold", "suggest", "--db", db, "--run", str(run_id), "--apply"]) == 0
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert doc["n_true_anomaly"] == 1 and doc["n_false_alarm"] == 1
    with open_store(db) as st:
        assert st.threshold(run_id) == pytest.approx(doc["threshold"])
    assert main(["store", "info", "--db", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_migrations_build_exactly_the_models(db):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from oddeye.store import engine as eng
    from oddeye.store.models import Base

    open_store(db).close()
    read, _ = eng.make_engines(eng.store_url(db))
    with read.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata)
    read.dispose()
    assert diff == []


def test_packing_and_review_maps(tmp_path):
    from oddeye.store.convert import pack, review_map, unpack

    for a in (np.arange(1000), np.arange(1000) / 30.0, np.random.default_rng(0).random(999).astype(np.float32)):
        blob, tag = pack(a)
        back = unpack(blob, tag, len(a))
        assert back.dtype == a.dtype and np.allclose(back, a, rtol=0, atol=1e-12)
    assert pack(np.arange(1000))[0] == b""  # evenly spaced frame numbers cost nothing
    big = review_map(np.random.default_rng(0).random((1024, 512)))
    assert big.shape == (256, 128) and big.dtype == np.float16
    # input path from --data when the head did not record one
    clip = tmp_path / "clips" / "cam1.mp4"
    clip.parent.mkdir()
    clip.write_bytes(b"x")
    r = Result(head="video-prediction", scores=[Score("cam1.mp4", 1.0, frame_scores=np.zeros(5, np.float32))])
    db = tmp_path / "s.db"
    rid = save_result(db, r, kind="score", data=str(clip.parent))
    with open_store(db) as st:
        assert st.samples(rid)[0]["path"] == str(clip.resolve())
        assert st.safe_path(clip, rid) == clip.resolve()


def test_delete_run_removes_everything(db):
    keep = save_result(db, _result(seed=1), kind="score")
    gone = save_result(db, _result(seed=2), kind="score")
    with open_store(db) as st:
        st.add_label(gone, "unsure", event_id=st.events(gone)[0]["id"])
        st.set_threshold(gone, 1.0)
        before = st.counts()
        st.delete_run(gone)
        after = st.counts()
        assert [r["id"] for r in st.runs()] == [keep]
        assert after["labels"] == after["thresholds"] == 0 and after["samples"] == before["samples"] // 2
        assert after["events"] == len(st.events(keep))


def test_dashboard_on_a_postgres_store(pg_server, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from oddeye.store.sample import video_result

    url = new_pg_db(pg_server)
    ids = {"video": save_result(url, video_result(tmp_path), kind="demo")}
    monkeypatch.setenv("ODDEYE_UI_DB", url)
    monkeypatch.delenv("ODDEYE_UI_PASSWORD", raising=False)
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "oddeye" / "ui" / "app.py"), default_timeout=60)
    at.run()
    at.sidebar.radio(key="page").set_value("Video")
    at.sidebar.selectbox(key="run").set_value(ids["video"])
    at.run()
    assert not at.exception and not at.error
    assert "postgresql://127.0.0.1" in at.sidebar.caption[0].value
    next(b for b in at.button if b.label == "True anomaly").click()
    at.run()
    with open_store(url) as st:
        assert [lab["label"] for lab in st.labels(ids["video"])] == ["true_anomaly"]
