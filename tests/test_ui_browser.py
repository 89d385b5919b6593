"""End to end in a real headless Chromium: `oddeye ui` serves, a label button is clicked, the label is stored."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from oddeye.store.sample import image_result
from oddeye.store.api import open_store, save_result

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path):
    """`oddeye ui` on a filled store, on a free port of 127.0.0.1; stopped at the end."""
    db = tmp_path / "run" / "store.db"
    ids = {"images": save_result(db, image_result(tmp_path / "run"), kind="demo")}
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "ODDEYE_UI_PASSWORD"}
    log = (tmp_path / "ui.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "oddeye", "ui", "--db", str(db), "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read().strip() == b"ok":
                break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            pytest.fail(f"oddeye ui did not start: {(tmp_path / 'ui.log').read_text()[-2000:]}")
        time.sleep(0.3)
    yield url, db, ids
    os.killpg(proc.pid, signal.SIGTERM)  # the oddeye process and the streamlit server it started
    try:
        proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    log.close()


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing: run `bash scripts/system-deps.sh --test`")
def test_label_button_in_real_browser(served, tmp_path):
    from playwright.sync_api import sync_playwright

    url, db, ids = served
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{url}/?page=Images&run={ids['images']}", wait_until="domcontentloaded")
            page.get_by_text("Side by side").wait_for(timeout=60_000)
            page.get_by_role("button", name="True anomaly").first.click()
            page.get_by_text("Labelled sample").first.wait_for(timeout=30_000)
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            if os.environ.get("ODDEYE_UI_SHOT"):
                page.screenshot(path=os.environ["ODDEYE_UI_SHOT"], full_page=False)
        finally:
            browser.close()
    with open_store(db) as st:
        labels = st.labels(ids["images"])
    assert [lab["label"] for lab in labels] == ["true_anomaly"]
    top = max(s["score"] for s in open_store(db).samples(ids["images"]))
    assert labels[0]["score"] == pytest.approx(top)  # the image shown first: the most anomalous
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000
