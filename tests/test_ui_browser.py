"""The dashboard in a real headless Chromium (Debian's, driven by Playwright), served by `oddeye ui` started from
another working directory: every page on a run of its kind shows its picture and no error or warning box."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import pytest

from oddeye.core.head import read_manifest
from oddeye.store.api import open_store, save_result
from oddeye.store.sample import fill_sample_store, image_result
from oddeye.ui.common import page_for_run

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-dev-shm-usage", "--enable-unsafe-swiftshader"]  # WebGL for 3D
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                    reason=f"{CHROMIUM} missing: run `bash scripts/system-deps.sh --test`")
PROBLEMS = '[data-testid="stAlertContainer"][role="alert"], [data-testid="stException"]'  # error / warning boxes
PICTURES = {  # page -> (CSS selector, how many at least)
    "Video": [('[data-testid="stPlotlyChart"] .main-svg', 1), ('[data-testid="stImage"] img', 1)],
    "Images": [('[data-testid="stImage"] img', 2)],
    "3D": [('[data-testid="stPlotlyChart"] .gl-container canvas', 1)],
    "Patrol": [('[data-testid="stImage"] img', 3), ('[data-testid="stPlotlyChart"] .main-svg', 1)],
    "Runs": [('[data-testid="stDataFrame"]', 1)],
    "Labels": [('[data-testid="stDataFrame"]', 1), ('[data-testid="stIFrame"]', 1)],
    "Live": [('[data-testid="stDataFrame"]', 1)],  # walked only on a store with live runs
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_ui(db: Path, cwd: Path, **env: str) -> Iterator[str]:
    """`oddeye ui --db db` started in `cwd` on a free port of 127.0.0.1; its URL; stopped by SIGTERM at the end."""
    port = _free_port()
    cwd.mkdir(parents=True, exist_ok=True)
    full = {k: v for k, v in os.environ.items() if k not in ("ODDEYE_UI_PASSWORD", "ODDEYE_UI_ROOTS")} | env
    log_path = cwd / f"ui_{port}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "oddeye", "ui", "--db", str(db), "--port", str(port)], cwd=cwd,
                                stdout=log, stderr=subprocess.STDOUT, env=full, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 90
            while True:
                try:
                    if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read().strip() == b"ok":
                        break
                except OSError:
                    pass
                if proc.poll() is not None or time.time() > deadline:
                    pytest.fail(f"oddeye ui did not start: {log_path.read_text()[-2000:]}")
                time.sleep(0.3)
            yield url
        finally:
            proc.send_signal(signal.SIGTERM)  # `oddeye ui` is the server itself (exec): nothing else to stop
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@contextlib.contextmanager
def browser_page() -> Iterator:
    """A fresh Chromium page (1400 x 1000)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        finally:
            browser.close()


def settle(page, timeout_s: float = 180) -> None:
    """Wait until the app has drawn and its script stopped running (the status widget gone for a moment)."""
    page.locator('[data-testid="stSidebar"], [data-testid="stTextInput"]').first.wait_for(timeout=timeout_s * 1000)
    deadline, quiet = time.time() + timeout_s, 0
    while quiet < 4 and time.time() < deadline:
        quiet = quiet + 1 if not page.locator('[data-testid="stStatusWidget"]').is_visible() else 0
        time.sleep(0.25)


def check_page(page, url: str, name: str, run_id: int | None, shots: Path) -> dict[str, object]:
    """Open `name` on `run_id`; its problems (error/warning texts), missing pictures and load time in seconds
    (a screenshot under `shots` when something is wrong)."""
    t0 = time.perf_counter()
    page.goto(f"{url}/?page={name}" + (f"&run={run_id}" if run_id else ""), wait_until="domcontentloaded")
    settle(page)
    page.get_by_role("heading", name=name, exact=True).wait_for(timeout=60_000)
    missing = []
    for selector, n in PICTURES[name]:
        try:
            page.locator(selector).nth(n - 1).wait_for(timeout=60_000)
        except Exception:  # noqa: BLE001 - reported below with the page's name
            missing.append(f"{selector} x{n}")
    problems = [t.strip() for t in page.locator(PROBLEMS).all_inner_texts()]
    shot = shots / f"{name}_{run_id}.png"
    if problems or missing:
        page.screenshot(path=str(shot), full_page=True)
    return {"page": name, "run": run_id, "problems": problems, "missing": missing,
            "seconds": round(time.perf_counter() - t0, 1), "shot": str(shot)}


def _has_label(db: Path) -> bool:
    with open_store(db) as st:
        return bool(st.labels())


def walk(page, url: str, db: Path, shots: Path) -> list[dict[str, object]]:
    """Every run on the page of its kind, the Runs page, a label clicked, and the Labels page with its CSV link."""
    with open_store(db) as st:
        runs = st.runs()
    done = [check_page(page, url, "Runs", runs[0]["id"], shots)]
    if any(r["kind"] == "live" for r in runs):  # `oddeye watch` runs: on the Live page (a stream has no frames to show)
        done.append(check_page(page, url, "Live", None, shots))
    for run in runs:
        if page_for_run(run) and run["kind"] != "live":
            done.append(check_page(page, url, page_for_run(run), run["id"], shots))
    page.get_by_role("button", name="Unsure").first.click()  # so that the Labels page has a row
    deadline = time.time() + 60
    while not _has_label(db) and time.time() < deadline:  # the label is in the store, not only on screen
        time.sleep(0.25)
    done.append(check_page(page, url, "Labels", None, shots))
    return done


def _assert_clean(done: list[dict[str, object]]) -> None:
    bad = [d for d in done if d["problems"] or d["missing"]]
    assert not bad, "\n".join(f"{d['page']} run {d['run']}: problems {d['problems']}, missing {d['missing']} "
                              f"(screenshot {d['shot']})" for d in bad)


@needs_chromium
@pytest.mark.slow
def test_every_page_of_a_sample_store_from_another_folder(tmp_path):
    ids = fill_sample_store(tmp_path / "made")
    with serve_ui(tmp_path / "made" / "store.db", tmp_path / "elsewhere") as url, browser_page() as page:
        done = walk(page, url, tmp_path / "made" / "store.db", tmp_path)
        with page.expect_download() as dl:  # the CSV comes from inside the page, not from /media
            page.frame_locator('[data-testid="stIFrame"]').get_by_text("Export CSV").click()
        csv_text = Path(dl.value.path()).read_text()
    _assert_clean(done)
    assert {d["page"] for d in done} == set(PICTURES) - {"Live"} and len(done) == len(ids) + 2
    assert csv_text.startswith("id,run_id,head") and ",unsure," in csv_text
    print("\n" + "\n".join(f"{d['page']:<7} run {d['run']}: {d['seconds']} s" for d in done))


PASSWORD_PAGES = (("Patrol", "patrol", 3), ("Images", "images", 10), ("Video", "video", 2))  # page, run, pictures


def _log_in(page, url: str, name: str, run_id: int, password: str, pictures: int) -> list[str]:
    """Open `name` on `run_id` behind the password gate; the src of every picture it shows, once it shows at least
    `pictures` (or after 60 s)."""
    page.goto(f"{url}/?page={name}&run={run_id}", wait_until="domcontentloaded")
    box = page.get_by_label("Password", exact=True)
    box.fill(password)
    box.press("Enter")
    page.get_by_role("heading", name=name, exact=True).wait_for(timeout=60_000)
    settle(page)
    from playwright.sync_api import Error as PlaywrightError

    shown = '[data-testid="stImage"] img'
    try:  # a page may still be drawing its last pictures when the script has stopped
        page.wait_for_function(f"n => document.querySelectorAll('{shown}').length >= n", arg=pictures,
                               timeout=60_000)
    except PlaywrightError:
        pass  # the caller's count assertion says what is missing
    return page.locator(shown).evaluate_all("els => els.map(e => e.src)")


@needs_chromium
@pytest.mark.slow
def test_with_a_password_no_file_is_served_without_it(tmp_path):
    ids = fill_sample_store(tmp_path / "made")
    media, srcs = [], []
    with serve_ui(tmp_path / "made" / "store.db", tmp_path / "elsewhere", ODDEYE_UI_PASSWORD="pw-1") as url, \
            browser_page() as page:
        page.on("request", lambda r: media.append(r.url) if urlsplit(r.url).path.startswith("/media/") else None)
        page.goto(f"{url}/?page=Patrol&run={ids['patrol']}", wait_until="domcontentloaded")
        box = page.get_by_label("Password", exact=True)
        box.fill("wrong")
        box.press("Enter")
        page.get_by_text("Wrong password").wait_for(timeout=30_000)
        assert not page.get_by_test_id("stSidebar").count()
        time.sleep(1.1)  # the first wrong password costs a second
        for name, kind, pictures in PASSWORD_PAGES:
            srcs += _log_in(page, url, name, ids[kind], "pw-1", pictures)
    assert len(srcs) >= sum(p for *_, p in PASSWORD_PAGES) and all(s.startswith("data:image/") for s in srcs)
    assert media == []  # pictures travel inside the password-gated session: /media/ has nothing to give away


@needs_chromium
def test_label_button_in_real_browser(tmp_path):
    db = tmp_path / "run" / "store.db"
    run_id = save_result(db, image_result(tmp_path / "run"), kind="demo")
    with serve_ui(db, tmp_path / "elsewhere") as url, browser_page() as page:
        page.goto(f"{url}/?page=Images&run={run_id}", wait_until="domcontentloaded")
        page.get_by_text("Side by side").wait_for(timeout=60_000)
        page.get_by_role("button", name="True anomaly").first.click()
        page.get_by_text("Labelled sample").first.wait_for(timeout=30_000)
        page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        if os.environ.get("ODDEYE_UI_SHOT"):
            page.screenshot(path=os.environ["ODDEYE_UI_SHOT"], full_page=False)
    with open_store(db) as st:
        labels = st.labels(run_id)
        top = max(s["score"] for s in st.samples(run_id))
    assert [lab["label"] for lab in labels] == ["true_anomaly"]
    assert labels[0]["score"] == pytest.approx(top)  # the image shown first: the most anomalous
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000


@needs_chromium
@pytest.mark.slow
def test_the_demo_store_in_real_browser(tmp_path):
    """`oddeye demo` as a new user runs it, then every page of its store, served from another folder."""
    t0 = time.perf_counter()
    demo = subprocess.run([sys.executable, "-m", "oddeye", "demo", "--out", str(tmp_path / "demo")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=1800)
    took = time.perf_counter() - t0
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    auto = read_manifest(tmp_path / "demo" / "images" / "model")["auto"]
    assert "--auto chose" in demo.stdout and len(auto["trials"]) > 1 and auto["trials"][auto["chosen"]]["auroc"] > 0.9
    db = tmp_path / "demo" / "store.db"
    with serve_ui(db, tmp_path / "elsewhere") as url, browser_page() as page:
        done = walk(page, url, db, tmp_path)
    print(f"\noddeye demo took {took:.0f} s\n" + "\n".join(f"{d['page']:<7} run {d['run']}: {d['seconds']} s"
                                                          for d in done))
    _assert_clean(done)
    with open_store(db) as st:
        kinds = {page_for_run(r) for r in st.runs()}
    assert kinds >= {"Video", "Images", "3D", "Patrol"}
