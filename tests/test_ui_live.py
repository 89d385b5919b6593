"""The Live page: AppTest on a store with live runs (a stream with an open and a closed event, a stale source, a
folder source), and in headless Chromium a new event written to the store showing up by itself within 5 s."""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from oddeye.core.imageio import write_image
from oddeye.core.types import Result
from oddeye.store import live as store_live
from oddeye.store.api import open_store
from oddeye.store.sample import image_result
from oddeye.ui.page_live import EVENTS_SHOWN, health_table, score_plot
from test_ui_browser import browser_page, needs_chromium, serve_ui, settle

APP = str(Path(__file__).resolve().parents[1] / "oddeye" / "ui" / "app.py")
FPS = 10.0


def _stream(store, run_id: int, source: str, n: int, bump: tuple[int, int]) -> None:
    """Append n frames of a stream's scores in 50-frame chunks: 0.1 baseline, 1.0 inside `bump`."""
    frames = np.arange(n)
    scores = np.where((frames >= bump[0]) & (frames <= bump[1]), 1.0, 0.1).astype(np.float32)
    for a in range(0, n, 50):
        store.append_series(run_id, source, {"frame_scores": scores[a:a + 50], "frame_indices": frames[a:a + 50],
                                             "frame_times": frames[a:a + 50] / FPS})


def _health(store, source: str, run_id: int, state: str, **kw: float) -> None:
    values = dict(fps_in=10.0, fps_scored=10.0, lag_s=0.3, dropped_frames=0, reconnects=0, frames=200, items=0,
                  errors=0, last_event=None) | kw
    store.set_health(source, run_id=run_id, state=state, **values)


def make_live_store(root: Path) -> tuple[Path, dict[str, int]]:
    """A store with three live sources: cam-1 (a stream, running: a closed event with a recorded picture, an open
    one without), cam-2 (a stream whose watcher stopped reporting: stale) and line-1 (a folder of images, closed).
    Returns (db, {name: id}) with run ids and the event ids `closed` and `open`."""
    db = root / "store.db"
    ids: dict[str, int] = {}
    with open_store(db) as st:
        cam1 = ids["cam-1"] = st.open_live_run("cam-1", head="video-rules", model="models/rules", source_kind="stream")
        _stream(st, cam1, "cam-1", 200, (40, 60))
        pic = np.zeros((48, 64, 3), np.uint8)
        pic[10:30, 20:40] = (255, 255, 0)
        thumb = write_image(root / "cam-1" / "event_40.png", pic)
        st.add_artefact(cam1, "thumbnail_40", thumb)  # run-level: makes its folder readable
        ids["closed"] = st.upsert_event(cam1, "cam-1:40", sample_id="cam-1", score=1.0, start_frame=40, end_frame=60,
                                        start=4.0, end=6.0, reason="a walker runs", open=False,
                                        meta={"thumbnail": str(thumb)})
        ids["open"] = st.upsert_event(cam1, "cam-1:180", sample_id="cam-1", score=0.9, start_frame=180,
                                      end_frame=199, start=18.0, end=19.9, reason="a car stops", open=True)
        st.log_live(cam1, "reconnect", "tcp://127.0.0.1:9999: connection refused (retry in 0.5 s)")
        _health(st, "cam-1", cam1, "running", reconnects=1, last_event=dt.datetime.now(dt.timezone.utc))
        cam2 = ids["cam-2"] = st.open_live_run("cam-2", head="video-rules", model="models/rules", source_kind="stream")
        _stream(st, cam2, "cam-2", 50, (99, 99))
        line = ids["line-1"] = st.open_live_run("line-1", head="image-patchcore", model="models/pc",
                                                source_kind="folder")
        res = image_result(root / "line-1")
        for sc in res.scores:
            st.add_live_result(line, Result(head=res.head, scores=[sc], threshold=res.threshold,
                                            events=[e for e in res.events if e.sample_id == sc.sample_id]),
                               item=str(sc.meta["path"]))
        _health(st, "line-1", line, "running", items=len(res.scores))
        st.close_live_run(line)
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=60)
    with pytest.MonkeyPatch.context() as mp, open_store(db) as st:  # cam-2 last reported a minute ago
        mp.setattr(store_live, "utcnow", lambda: past)
        _health(st, "cam-2", cam2, "reconnecting", fps_in=0.0, fps_scored=0.0, reconnects=4)
    return db, ids


@pytest.fixture(scope="module")
def live_store(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """make_live_store in a module-wide temp folder."""
    return make_live_store(tmp_path_factory.mktemp("live_store"))


def _live_page(db: Path, monkeypatch) -> AppTest:
    monkeypatch.setenv("ODDEYE_UI_DB", str(db))
    monkeypatch.delenv("ODDEYE_UI_PASSWORD", raising=False)
    monkeypatch.delenv("ODDEYE_UI_ROOTS", raising=False)
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["page"] = "Live"
    at.run()
    assert not at.exception, at.exception
    assert not at.error and not at.warning, ([e.value for e in at.error], [w.value for w in at.warning])
    return at


def test_live_page_sources_events_and_logs(live_store, monkeypatch):
    db, _ = live_store
    at = _live_page(db, monkeypatch)
    assert at.sidebar.radio(key="page").value == "Live" and not at.sidebar.info  # no "pick another page" hint
    sources = at.dataframe[0].value
    assert sources["source"].tolist() == ["cam-1", "cam-2", "line-1"]
    assert sources["state"].tolist() == ["running", "reconnecting", "closed"]
    assert sources["stale"].tolist() == ["", "STALE", ""]  # closed is never stale
    assert sources["reconnects"].tolist() == [1, 4, 0] and sources["last event"][0].endswith("s ago)")
    styles = at.dataframe[0].proto.arrow_data.styler.styles
    painted = re.findall(r"_row(\d+)_col(\d+)", styles)  # the stale row (cam-2), every cell of it, nothing else
    assert "background-color: #ffd6d6" in styles and sorted(painted) == sorted(("1", str(c)) for c in range(14))
    assert sources.shape[1] == 14
    marks = [m.value for m in at.markdown]
    assert any(m.startswith(":red[**Stale:** cam-2") for m in marks)
    cards = [m for m in marks if "**event #" in m]
    with open_store(db) as st:
        newest = st.recent_events(limit=EVENTS_SHOWN)
    assert len(cards) == len(newest) == 6 <= EVENTS_SHOWN  # 2 stream events + 4 image regions, newest first
    assert [int(c.split("**event #")[1].split("**")[0]) for c in cards] == [e["id"] for e in newest]


def test_live_page_open_and_closed_events_with_pictures(live_store, monkeypatch):
    db, ids = live_store
    at = _live_page(db, monkeypatch)
    cards = {int(m.split("**event #")[1].split("**")[0]): m for m in (x.value for x in at.markdown) if "**event #" in m}
    assert ids["open"] in cards and cards[ids["open"]].startswith(":red-badge[● open]")
    assert "source **cam-1**" in cards[ids["open"]] and "frames 180-199 (18.0-19.9 s)" in cards[ids["open"]]
    assert all(m.startswith(":gray-badge[closed]") for i, m in cards.items() if i != ids["open"])
    imgs = [img for el in at.get("image") for img in el.proto.imgs]
    assert len(imgs) == len(cards) and all(i.url.startswith("data:image/") for i in imgs)  # inline, never /media
    caption = dict(zip(cards, (i.caption for i in imgs)))  # one thumbnail per card, in page order
    assert caption.pop(ids["closed"]) == "event_40.png"  # the picture the stream recorded for it
    assert caption.pop(ids["open"]) == "scores around frames 180-199"  # none recorded: the scores around it
    assert len(caption) == 4 and all(c.startswith("img") and c.endswith(".png") for c in caption.values())  # overlays


def test_live_page_label_button_and_log(live_store, monkeypatch):
    db, _ = live_store
    at = _live_page(db, monkeypatch)
    logs = [d.value for d in at.dataframe[1:]]
    assert any("reconnect" in df["what"].tolist() for df in logs)
    assert any(c.value.startswith("Nothing logged for cam-2") for c in at.caption)
    with open_store(db) as st:
        top = st.recent_events(limit=1)[0]
    next(b for b in at.button if b.label == "False alarm").click()  # the first card: the newest event
    at.run()
    assert not at.exception, at.exception
    with open_store(db) as st:
        labels = st.labels(top["run_id"])
    assert labels[0]["event_id"] == top["id"] and labels[0]["label"] == "false_alarm"
    assert any(f"event {top['id']}: False alarm" in c.value for c in at.caption)


def test_live_page_on_a_store_without_live_runs(tmp_path, monkeypatch):
    from oddeye.store.api import save_result

    save_result(tmp_path / "store.db", image_result(tmp_path), kind="demo")
    at = _live_page(tmp_path / "store.db", monkeypatch)
    assert "oddeye watch" in at.info[0].value
    assert any(c.value.startswith("No source has reported yet") for c in at.caption)


def test_score_plot_and_health_table():
    frames = np.arange(1000)
    scores = np.where((frames >= 500) & (frames <= 520), 2.0, 0.5)
    pic = score_plot(scores, frames, 500, 520, threshold=1.0, width=200, height=60)
    assert pic.shape == (60, 200, 3) and pic.dtype == np.uint8
    shaded = np.all(pic == (255, 214, 214), axis=2).any(axis=0)
    cols = np.flatnonzero(shaded)
    assert cols.size and 60 < cols.mean() < 140  # the event in the middle of its window (25 frames each side)
    assert np.all(pic == (255, 127, 14), axis=2).any()  # the threshold line
    assert score_plot(scores, frames, 5000, 5010, threshold=None) is None  # no scores there
    assert score_plot(np.full(10, np.nan), np.arange(10), 2, 3, threshold=None) is None
    now = dt.datetime(2026, 1, 1, 12, 0, 30, tzinfo=dt.timezone.utc)
    row = dict(source="a", run_id=1, state="running", fps_in=9.96, fps_scored=9.5, lag_s=0.123, dropped_frames=2,
               reconnects=1, last_event=None, frames=10, items=0, errors=0, stale=True,
               updated=dt.datetime(2026, 1, 1, 12, 0, 0))  # naive: UTC, as SQLite gives it
    df = health_table([row], now)
    assert df.iloc[0]["dropped frames"] == 2 and df.iloc[0]["last event"] == "-"
    assert df.iloc[0]["updated"].endswith("(30 s ago)") and df.iloc[0]["stale"] == "STALE"


# ---- in a real browser -------------------------------------------------------------------------------------------
@needs_chromium
@pytest.mark.slow
def test_new_event_appears_without_reload_within_5_s(tmp_path):
    db, ids = make_live_store(tmp_path / "live")
    with serve_ui(db, tmp_path / "elsewhere") as url, browser_page() as page:
        page.goto(f"{url}/?page=Live", wait_until="domcontentloaded")
        page.get_by_role("heading", name="Live", exact=True).wait_for(timeout=90_000)
        settle(page)
        page.get_by_text("a car stops").first.wait_for(timeout=30_000)
        page.evaluate("window.__same_page = true")  # gone if the page reloads
        with open_store(db) as st:
            _stream(st, ids["cam-1"], "cam-1", 300, (250, 270))  # frames 200-299 appended (earlier chunks: no-ops)
            new = st.upsert_event(ids["cam-1"], "cam-1:250", sample_id="cam-1", score=1.0, start_frame=250,
                                  end_frame=270, start=25.0, end=27.0, reason="a bicycle on the pavement", open=True)
        t0 = time.perf_counter()
        page.get_by_text("a bicycle on the pavement").wait_for(timeout=5_000)
        took = time.perf_counter() - t0
        card = page.locator('[data-testid="stMarkdownContainer"]', has_text=f"event #{new} ").first.inner_text()
        assert page.evaluate("window.__same_page === true")
        page.screenshot(path=str(tmp_path / "live.png"), full_page=True)
    assert took < 5.0 and card.startswith("● open")
    print(f"\nnew event #{new} on the Live page {took:.2f} s after it was written")
