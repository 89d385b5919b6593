"""Core types, errors, manifests, image I/O and the CLI's error handling."""

from __future__ import annotations

import json
import platform

import numpy as np
import pytest

from oddeye.cli import main
from oddeye.core.errors import InputError, ModelError, require_dir, require_file
from oddeye.core.head import read_manifest, write_manifest
from oddeye.core.imageio import read_image, read_mask, write_image
from oddeye.core.report import eval_line, finish_benchmark, print_eval
from oddeye.core.types import AnomalyMap, Event, Result, Score, events_from_scores


def test_result_roundtrip_keeps_maps_series_and_events(tmp_path):
    rng = np.random.default_rng(0)
    pix = rng.random((8, 9)).astype(np.float32)
    s = Score("a", 0.7, label=1, maps={"pixel": AnomalyMap("pixel", pix)},
              frame_scores=np.arange(5.0), frame_times=np.arange(5) / 10.0, reason="too fast")
    r = Result("test", [s, Score("b", float("nan"), label=0)],
               [Event("a", 0.9, start=0.1, end=0.3, box=(1, 2, 3, 4), reason="too fast")], threshold=0.5)
    r.save(tmp_path)
    back = Result.load(tmp_path)
    assert back.head == "test" and back.threshold == 0.5
    np.testing.assert_array_equal(back.get("a").maps["pixel"].values, pix)
    np.testing.assert_array_equal(back.get("a").frame_scores, np.arange(5.0))
    assert back.events[0].box == (1, 2, 3, 4) and back.events[0].duration == pytest.approx(0.2)
    assert np.isnan(back.get("b").score)  # NaN is written as null and read back as NaN
    assert back.labels().tolist() == [1, 0]


def test_result_load_rejects_foreign_file(tmp_path):
    (tmp_path / "result.json").write_text("{not json")
    with pytest.raises(ModelError, match="not an oddeye result"):
        Result.load(tmp_path)
    with pytest.raises(InputError, match="no result.json"):
        Result.load(tmp_path / "missing")


def test_anomaly_map_checks_dims():
    with pytest.raises(ValueError, match="pixel map must have 2 dims"):
        AnomalyMap("pixel", np.zeros(5))


def test_events_from_scores_runs_merge_and_min_length():
    s = np.array([0, 1, 1, 0, 1, 0, 0, 0, 1, 1, 1, 0], dtype=float)
    ev = events_from_scores(s, 0.5, "v", times=np.arange(12) * 0.5)
    assert [(e.start_frame, e.end_frame) for e in ev] == [(1, 2), (4, 4), (8, 10)]
    assert ev[2].start == 4.0 and ev[2].end == 5.0
    merged = events_from_scores(s, 0.5, "v", merge_gap=1)
    assert [(e.start_frame, e.end_frame) for e in merged] == [(1, 4), (8, 10)]
    long_only = events_from_scores(s, 0.5, "v", min_length=2)
    assert [(e.start_frame, e.end_frame) for e in long_only] == [(1, 2), (8, 10)]


def test_manifest_names_the_other_head(tmp_path):
    write_manifest(tmp_path, "image-patchcore")
    assert read_manifest(tmp_path, "image-patchcore")["head"] == "image-patchcore"
    with pytest.raises(ModelError, match="holds a 'image-patchcore' model"):
        read_manifest(tmp_path, "video-prediction")
    with pytest.raises(ModelError, match="not an oddeye model directory"):
        read_manifest(tmp_path / "..", "x")


def test_require_helpers_name_the_path(tmp_path):
    with pytest.raises(InputError, match="nowhere.png"):
        require_file(tmp_path / "nowhere.png")
    (tmp_path / "zero.png").write_bytes(b"")
    with pytest.raises(InputError, match="0 bytes"):
        require_file(tmp_path / "zero.png")
    with pytest.raises(InputError, match="not a directory"):
        require_dir(tmp_path / "zero.png")


@pytest.mark.parametrize("shape,dtype", [((20, 30), np.uint8), ((20, 30, 3), np.uint8),
                                         ((20, 30, 4), np.uint8), ((21, 17), np.uint16)])
def test_read_image_any_format_to_rgb(tmp_path, shape, dtype):
    rng = np.random.default_rng(1)
    img = rng.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype)
    p = tmp_path / "x.png"
    import cv2

    cv2.imwrite(str(p), img)
    rgb = read_image(p)
    assert rgb.shape == (*shape[:2], 3) and rgb.dtype == np.uint8
    assert read_image(p, "gray").shape == shape[:2]


def test_unreadable_image_and_mask_size(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 this is not a jpeg")
    with pytest.raises(InputError, match="bad.jpg"):
        read_image(bad)
    m = write_image(tmp_path / "m.png", np.full((10, 12), 255, np.uint8))
    assert read_mask(m).all()
    with pytest.raises(InputError, match="mask .*m.png is 12x10"):
        read_mask(m, shape=(10, 13))


def test_eval_json_is_last_line(capsys, tmp_path):
    doc = eval_line({"image_auroc": 0.91}, "toy", 10, 1.23456)
    print_eval(doc, json_path=tmp_path / "e.json")
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last) == {"image_auroc": 0.91, "dataset": "toy", "n_samples": 10, "wall_s": 1.235}
    assert json.loads((tmp_path / "e.json").read_text())["n_samples"] == 10


def test_finish_benchmark_records_then_ends_with_the_json_line(capsys, monkeypatch):
    recorded = []
    monkeypatch.setattr("oddeye.core.report.record_benchmark", lambda *a, **kw: recorded.append((a, kw)))
    figures = {"image_auroc": np.float32(0.5), "n": 3}
    assert finish_benchmark("t", "toy", figures, notes="n.b.") == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert json.loads(lines[-1]) == {"image_auroc": 0.5, "n": 3}
    assert lines[0].split() == ["image_auroc", "0.5"], "the table comes first, one figure per line"
    assert recorded == [(("t", "toy", None, {"image_auroc": 0.5, "n": 3}), {"notes": "n.b."})]
    assert finish_benchmark("t", "toy", figures, record=False, table=False) == 0
    assert len(recorded) == 1 and len(capsys.readouterr().out.strip().splitlines()) == 1


def test_cli_help_and_user_error_exit_code(capsys):
    assert main(["--help"]) == 0
    assert "oddeye" in capsys.readouterr().out
    assert main(["no-such-command"]) == 2


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_trim_malloc_hands_back_the_pages_of_freed_mid_sized_arrays():
    from oddeye.core.memory import trim_malloc

    trim_malloc()
    big = np.ones(64 << 20, np.uint8)  # freed, it raises glibc's mmap threshold: the next arrays come from the heap
    del big
    arrays = [np.ones(600_000, np.uint8) for _ in range(64)]
    del arrays[:-1]  # the last one stays: the freed pages sit below it and cannot simply shrink the heap
    assert trim_malloc(), "nothing was handed back"
    assert arrays[0].sum() == 600_000
