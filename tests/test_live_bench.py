"""`oddeye bench live` end to end with real parts: two generated clips served by ffmpeg as live MPEG-TS streams,
watched by a rules model; the last stdout line is JSON with the documented keys and the injected anomalies found."""

from __future__ import annotations

import json
import subprocess
import sys

from test_live_support import needs_ffmpeg

KEYS = {"sources", "head", "seconds", "fps_in", "fps_scored", "lag_p95_s", "dropped_frames", "reconnects", "events",
        "anomalies_played", "rss_growth_mb"}


@needs_ffmpeg
def test_bench_live_prints_the_figures_as_json_and_finds_the_injected_events():
    done = subprocess.run([sys.executable, "-m", "oddeye", "bench", "live", "--sources", "2", "--seconds", "8",
                           "--head", "rules", "--no-record"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert KEYS <= set(figures), KEYS - set(figures)
    assert figures["sources"] == 2 and figures["head"] == "rules"
    assert figures["events"] >= figures["anomalies_played"] >= 2, figures  # each stream plays its anomaly once
    assert 15 <= figures["fps_in"] <= 25 and figures["fps_scored"] > 10, figures
    assert figures["dropped_frames"] == 0 and figures["reconnects"] == 0
    assert 0 < figures["lag_p95_s"] < 5
