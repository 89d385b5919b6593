"""Review store on SQLite: save_result round trip, labels, thresholds, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from oddeye.core.errors import InputError, StoreError
from oddeye.core.types import AnomalyMap, Result, Score, events_from_scores
from oddeye.ui.store import open_store, save_result


def _result(n_frames: int = 500, seed: int = 0) -> Result:
    rng = np.random.default_rng(seed)
    fs = rng.random(n_frames).astype(np.float32)
    times = np.arange(n_frames) / 25.0
    return Result(head="video-rules",
                  scores=[Score("clip", float(fs.max()), label=1, frame_scores=fs, frame_times=times,
                                reason="a walker ran"),
                          Score("still", 0.2, maps={"anomaly": AnomalyMap("pixel", rng.random((16, 24)))})],
                  events=events_from_scores(fs, 0.9, "clip", times=times), threshold=0.9, metrics={"auroc": 0.7})


def test_save_result_round_trip(tmp_path):
    r = _result()
    db = tmp_path / "store.db"
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


def test_labels_and_threshold(tmp_path):
    db = tmp_path / "s.db"
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
