"""`oddeye watch` pieces without a running watcher: the config and its errors, the event tracker across chunks,
the newest-first queue, the folder poller and the command line's two forms."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from oddeye.cli import main
from oddeye.core.errors import ConfigError, InputError
from oddeye.core.head import write_manifest
from oddeye.core.types import Event
from oddeye.live.config import load_config, one_source
from oddeye.live.events import EventTracker
from oddeye.live.sources import Chunk, FolderPoller, NewestQueue


@pytest.fixture()
def place(tmp_path: Path) -> Path:
    """A folder with a video model, an image model, a clip file and an incoming folder."""
    write_manifest(tmp_path / "rules", "video-rules")
    write_manifest(tmp_path / "gauss", "gaussian")
    (tmp_path / "clip.mp4").write_bytes(b"\0" * 16)
    (tmp_path / "incoming").mkdir()
    return tmp_path


def _config(place: Path, text: str) -> Path:
    path = place / "watch.yaml"
    path.write_text(text)
    return path


def test_a_good_config_resolves_paths_from_its_folder_and_infers_kinds(place, monkeypatch):
    monkeypatch.chdir("/")
    cfg = load_config(_config(place, """
db: results/store.db
sources:
  - {name: gate-1, model: rules, source: "rtsp://10.0.0.5/stream1"}
  - {name: cam-0, model: rules, source: 0}
  - {name: demo, model: rules, source: clip.mp4, loop: true, chunk_s: 1}
  - {name: line-3, model: gauss, source: incoming, glob: "*.png", poll_s: 0.5}
"""))
    assert cfg.db == str(place / "results" / "store.db")
    assert [s.kind for s in cfg.sources] == ["stream", "webcam", "file", "folder"]
    assert cfg.sources[2].source == str(place / "clip.mp4") and cfg.sources[2].loop
    assert cfg.sources[3].model == str(place / "gauss") and cfg.sources[3].glob == "*.png"
    assert cfg.sources[0].out == str(place / "oddeye-live" / "gate-1")
    assert load_config(place / "watch.yaml", db="postgresql://u@h/db").db == "postgresql://u@h/db"


@pytest.mark.parametrize("entry, field, words", [
    ("{name: cam-3, model: nowhere, source: clip.mp4}", "sources[1] (cam-3).model", "not found"),
    ("{name: cam-3, model: rules, source: clip.mp4, chunk_s: -1}", "sources[1] (cam-3).chunk_s", "> 0"),
    ("{name: cam-3, model: rules, source: clip.mp4, colour: red}", "sources[1] (cam-3).colour", "unknown key"),
    ("{name: cam-3, model: rules}", "sources[1] (cam-3).source", "missing"),
    ("{name: cam-3, model: rules, source: incoming, kind: file}", "sources[1] (cam-3).source", "folder"),
    ("{name: cam-3, model: gauss, source: clip.mp4}", "sources[1] (cam-3).model", "not video"),
    ("{name: cam-3, model: rules, source: 'ftp://x', kind: stream}", "sources[1] (cam-3).source", "not a stream"),
    ("{name: cam-3, model: rules, source: incoming, loop: true}", "sources[1] (cam-3).loop", "kind file only"),
    ("{name: cam-3, model: rules, source: clip.mp4, fps: many}", "sources[1] (cam-3).fps", "expected float"),
    ("{name: a, model: rules, source: clip.mp4}", "sources[1] (a).name", "also the name of sources[0]"),
    ("{name: 'cam 3!', model: rules, source: clip.mp4}", "sources[1] (cam 3!).name", "not a usable name"),
])
def test_every_config_error_names_the_source_and_the_key(place, entry, field, words):
    path = _config(place, f"sources:\n  - {{name: a, model: rules, source: clip.mp4}}\n  - {entry}\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert e.value.field == field
    assert words in e.value.message and e.value.message.startswith(field)


def test_top_level_and_yaml_errors_name_the_file(place):
    with pytest.raises(ConfigError, match="sources: missing or empty"):
        load_config(_config(place, "db: x.db\n"))
    with pytest.raises(ConfigError, match="^dbb: unknown key"):
        load_config(_config(place, "dbb: x.db\nsources: []\n"))
    with pytest.raises(InputError, match=r"watch.yaml is not valid YAML \(at line \d+, column \d+: "):
        load_config(_config(place, "sources:\n  - {name: a, model: rules\n"))
    with pytest.raises(InputError, match="watch config not found"):
        load_config(place / "missing.yaml")


def test_the_one_source_form_names_command_line_options(place, monkeypatch):
    monkeypatch.chdir(place)
    cfg = one_source("rules", "tcp://127.0.0.1:5000", chunk_s=1.0)
    assert cfg.sources[0].name == "127.0.0.1-5000" and cfg.sources[0].kind == "stream"
    assert cfg.db == str(place / "oddeye-live" / "store.db")
    with pytest.raises(ConfigError) as e:
        one_source("rules", "clip.mp4", chunk_s=0.0)
    assert e.value.field == "--chunk-s"
    with pytest.raises(ConfigError, match="^--model: .*not found"):
        one_source("nowhere", "clip.mp4")


def _ev(a: int, b: int, score: float = 1.0, reason: str = "") -> Event:
    return Event(sample_id="cam", score=score, start=a / 25, end=b / 25, start_frame=a, end_frame=b, reason=reason)


def test_an_event_across_chunk_boundaries_is_one_event_open_until_a_chunk_ends_it():
    t = EventTracker("cam", merge_gap=3)
    first = t.update([_ev(40, 49, 0.5, "slow")], 0, 49)
    assert [(e.key, e.start_frame, e.end_frame, e.open) for e in first] == [("cam:40", 40, 49, True)]
    # the next chunk was scored with 8 context frames: its part starts before the chunk and is cut at frame 50
    second = t.update([_ev(42, 99, 0.9, "fast")], 50, 99, first_time=2.0)
    assert [(e.key, e.start_frame, e.end_frame, e.open, e.score, e.reason) for e in second] == \
        [("cam:40", 40, 99, True, 0.9, "fast")]
    third = t.update([_ev(100, 110, 0.7), _ev(130, 135, 0.4)], 100, 149)
    assert [(e.key, e.end_frame, e.open) for e in third] == [("cam:40", 110, False), ("cam:130", 135, False)]
    assert t.open == []
    fourth = t.update([_ev(190, 199)], 150, 199)
    assert [(e.key, e.open) for e in fourth] == [("cam:190", True)]
    assert [(e.key, e.open) for e in t.close_all()] == [("cam:190", False)]


def test_after_a_gap_in_the_stream_an_open_event_ends_and_a_new_one_starts():
    t = EventTracker("cam", merge_gap=3)
    t.update([_ev(90, 99)], 50, 99)
    out = t.update([_ev(500, 549)], 500, 549)  # frames 100..499 never arrived (stream lost)
    assert [(e.key, e.start_frame, e.end_frame, e.open) for e in out] == \
        [("cam:90", 90, 99, False), ("cam:500", 500, 549, True)]


def _chunk(first: int, n: int) -> Chunk:
    idx = np.arange(first, first + n)
    return Chunk(np.zeros((n, 4, 4, 3), np.uint8), idx, idx / 25.0, time.time())


def test_the_queue_keeps_the_newest_chunks_and_counts_the_frames_it_drops():
    q = NewestQueue(2)
    for k in range(5):
        q.put(_chunk(10 * k, 10))
    assert len(q) == 2 and q.dropped_frames == 30
    assert q.get(0).indices[0] == 30 and q.get(0).indices[0] == 40
    assert q.get(0.01) is None and not q.finished
    q.close()
    assert q.finished and q.get(5) is None


def test_the_folder_poller_waits_until_a_file_stops_growing_and_skips_hidden_ones(tmp_path):
    poll = FolderPoller(tmp_path, "*.png")
    (tmp_path / "a.png").write_bytes(b"12")
    (tmp_path / ".b.png").write_bytes(b"12")
    (tmp_path / "c.txt").write_bytes(b"12")
    assert poll.ready() == []  # seen once: maybe still being written
    with (tmp_path / "a.png").open("ab") as f:
        f.write(b"34")
    assert poll.ready() == []  # it grew
    (tmp_path / "d.png").write_bytes(b"1")
    os.utime(tmp_path / "d.png", ns=(1, 1))  # older than a.png: comes first
    assert poll.ready() == [tmp_path / "a.png"]
    assert poll.ready() == [tmp_path / "d.png", tmp_path / "a.png"]


def test_the_command_line_tells_a_config_file_from_the_status_subcommand(place, capsys):
    assert main(["watch", str(place / "none.yaml")]) == 2
    assert "watch config not found" in capsys.readouterr().err
    assert main(["watch", "status", "--db", str(place / "none.db")]) == 2
    assert "no store at" in capsys.readouterr().err
    assert main(["watch", "--chunk-s", "1", str(_config(place, "sources: []\n"))]) == 2
    assert "--chunk-s belong to the one-source form" in capsys.readouterr().err
    assert main(["watch", "--model", str(place / "rules")]) == 2
    assert "give a config file, or --model and --source" in capsys.readouterr().err
    assert main(["watch", "--help"]) == 0
    out = capsys.readouterr().out
    assert "oddeye watch status" in out and "--model DIR --source SRC" in out
