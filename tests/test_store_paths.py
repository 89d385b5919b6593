"""What the store records as paths, and which folders it lets the dashboard read."""

from __future__ import annotations

import os

import numpy as np
import pytest

from oddeye.core.types import AnomalyMap, Result, Score
from oddeye.store.api import PathRefusedError, open_store, save_result


def _cloud(sid: str, **meta) -> Score:
    return Score(sid, 1.0, maps={"points": AnomalyMap("point", np.zeros(5, np.float32))}, meta=meta)


@pytest.mark.parametrize("source", ["synth", "0", 0, "rtsp://cam.local/stream", "http://example.com/a.png", "", None])
def test_an_input_that_is_not_a_file_stores_no_path_and_allows_no_folder(tmp_path, monkeypatch, source):
    monkeypatch.chdir(tmp_path)  # the working directory holds other files: none may become readable
    (tmp_path / "notes.txt").write_text("private")
    monkeypatch.delenv("ODDEYE_UI_ROOTS", raising=False)
    db = tmp_path / "store" / "s.db"
    rid = save_result(db, Result(head="pointcloud", scores=[_cloud("c0", source=source)]), kind="score",
                      data="oddeye.core.synth boxes")
    with open_store(db) as st:
        assert st.samples(rid)[0]["path"] is None and st.run(rid)["data"] == "oddeye.core.synth boxes"
        assert st.artefacts(rid) == [] and st.folders(rid) == [] and st.folders() == []
        for p in (tmp_path / "notes.txt", tmp_path / "synth", db):
            with pytest.raises(PathRefusedError):
                st.safe_path(p, rid)


def test_a_webcam_index_is_not_a_file_even_when_one_has_its_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "0").write_text("x")
    db = tmp_path / "s.db"
    rid = save_result(db, Result(head="video-rules", scores=[Score("cam0", 1.0, meta={"source": 0})]), kind="score")
    with open_store(db) as st:
        assert st.samples(rid)[0]["path"] is None and st.folders(rid) == []


def test_paths_are_stored_absolute_resolved_at_write_time(tmp_path, monkeypatch):
    work = tmp_path / "work"
    (work / "imgs").mkdir(parents=True)
    (work / "imgs" / "a.png").write_bytes(b"x")
    (work / "out").mkdir()
    (work / "out" / "a_overlay.png").write_bytes(b"x")
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "b.png").write_bytes(b"x")
    (work / "link").symlink_to(tmp_path / "real")
    monkeypatch.chdir(work)
    r = Result(head="image-patchcore", scores=[
        Score("a", 1.0, artefacts={"overlay": "out/a_overlay.png"}, meta={"path": "imgs/a.png"}),
        Score("b", 0.5, meta={"path": "link/b.png"})], meta={"artefacts": {"report": "out"}})
    db = "s.db"
    rid = save_result(db, r, kind="score", model="out", data="imgs,link")
    monkeypatch.chdir(tmp_path)  # read back from elsewhere: nothing depends on the working directory any more
    with open_store(work / "s.db") as st:
        run = st.run(rid)
        assert run["model"] == str(work / "out") and run["data"] == f"{work / 'imgs'},{tmp_path / 'real'}"
        paths = {s["sample_id"]: s["path"] for s in st.samples(rid)}
        assert paths == {"a": str(work / "imgs" / "a.png"), "b": str(tmp_path / "real" / "b.png")}  # link followed
        arts = {(a["name"], a["path"]) for a in st.artefacts(rid)}
        assert ("overlay", str(work / "out" / "a_overlay.png")) in arts and ("report", str(work / "out")) in arts
        assert all(os.path.isabs(p) for _, p in arts)
        assert sorted(map(str, st.folders(rid))) == sorted([str(work / "imgs"), str(work / "out"), str(tmp_path / "real")])


def test_the_store_folder_is_not_readable_by_default_and_roots_add_folders(tmp_path, monkeypatch):
    monkeypatch.delenv("ODDEYE_UI_ROOTS", raising=False)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.png").write_bytes(b"x")
    secret = tmp_path / "store" / "notes.txt"
    secret.parent.mkdir()
    secret.write_text("private")
    db = secret.parent / "s.db"
    rid = save_result(db, Result(head="image-x", scores=[Score("x", 1.0, meta={"path": str(tmp_path / "data" / "x.png")})]),
                      kind="score")
    with open_store(db) as st:
        assert st.safe_path(tmp_path / "data" / "x.png", rid) == tmp_path / "data" / "x.png"
        with pytest.raises(PathRefusedError):
            st.safe_path(secret, rid)
        monkeypatch.setenv("ODDEYE_UI_ROOTS", f"{secret.parent}{os.pathsep}{tmp_path / 'nowhere'}")
        assert st.safe_path(secret, rid) == secret


def test_an_artefact_that_does_not_exist_is_not_recorded(tmp_path):
    (tmp_path / "ok.png").write_bytes(b"x")
    r = Result(head="image-x", scores=[Score("x", 1.0, artefacts={"overlay": str(tmp_path / "ok.png"),
                                                                    "heatmap": str(tmp_path / "gone" / "h.png")})])
    db = tmp_path / "s.db"
    with pytest.warns(UserWarning, match="'heatmap' is not a file or folder"):
        rid = save_result(db, r, kind="score")
    with open_store(db) as st:
        assert [a["name"] for a in st.artefacts(rid)] == ["overlay"]
        assert st.folders(rid) == [tmp_path]


def test_map_names_of_a_run(tmp_path):
    r = Result(head="patrol", scores=[Score("p0", 1.0, maps={"change": AnomalyMap("pixel", np.ones((4, 4)))}),
                                      Score("p1", 0.5)])
    db = tmp_path / "s.db"
    rid = save_result(db, r, kind="score")
    with open_store(db) as st:
        pk0 = st.samples(rid, order="id")[0]["id"]
        assert st.map_names(rid) == {pk0: ["change"]}
