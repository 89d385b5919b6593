"""`oddeye ui` as a process: a SIGTERM or SIGINT to it (not to its group) stops the dashboard server with it."""

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

from oddeye.store.api import save_result
from oddeye.store.sample import image_result


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _processes_with(text: str) -> list[int]:
    """Pids of live processes whose command line contains `text`."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                state = next((ln for ln in (d / "status").read_text().splitlines() if ln.startswith("State:")), "")
            except OSError:
                continue
            if text in cmd and "zombie" not in state:
                pids.append(int(d.name))
    return pids


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find processes")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_oddeye_ui_stops_the_server(tmp_path, sig):
    db = tmp_path / f"store_{sig.name}.db"
    save_result(db, image_result(tmp_path), kind="demo")
    port = _free_port()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "ODDEYE_UI_PASSWORD"}
    log = (tmp_path / "ui.log").open("w")
    # its own session only so that the clean-up below can reach anything left; the signal goes to the pid alone
    proc = subprocess.Popen([sys.executable, "-m", "oddeye", "ui", "--db", str(db), "--port", str(port)], cwd=elsewhere,
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.time() + 90
        while True:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).read().strip() == b"ok":
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.time() < deadline, (tmp_path / "ui.log").read_text()[-2000:]
            time.sleep(0.3)
        assert _processes_with(str(db))
        os.kill(proc.pid, sig)
        proc.wait(timeout=20)
        deadline = time.time() + 10
        while (_listening(port) or _processes_with(str(db))) and time.time() < deadline:
            time.sleep(0.2)
        assert not _listening(port), "the Streamlit server still listens after `oddeye ui` was stopped"
        assert not _processes_with(str(db)), "a process serving the store was left running"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)
        log.close()
