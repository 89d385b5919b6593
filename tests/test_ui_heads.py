"""The 3D page on a store filled by a real (small, generated) run of the point-cloud head, when it exists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from oddeye.core.synth import make_point_cloud
from oddeye.store.api import open_store, save_result

APP = str(Path(__file__).resolve().parents[1] / "oddeye" / "ui" / "app.py")


def test_3d_page_on_a_pointcloud_head_run(tmp_path, monkeypatch):
    head_mod = pytest.importorskip("oddeye.pointcloud.head", reason="the point-cloud head is not in this tree")
    train = [make_point_cloud(seed=i, n_points=2000, shape="plate").points for i in range(2)]
    test = make_point_cloud(seed=9, n_points=2000, shape="plate", defect="bulge", defect_size=0.1)
    np.save(tmp_path / "part.npy", test.points)
    from oddeye.core.head import RunContext

    quiet = RunContext(progress=False)
    head = head_mod.PointCloudHead(adapt=False, target_points=1500).fit(train, ctx=quiet)
    result = head.score([str(tmp_path / "part.npy")], ctx=quiet)
    db = tmp_path / "store.db"
    run_id = save_result(db, result, kind="score", model="in-test", data=str(tmp_path))
    monkeypatch.setenv("ODDEYE_UI_DB", str(db))
    monkeypatch.delenv("ODDEYE_UI_PASSWORD", raising=False)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.sidebar.radio(key="page").set_value("3D")
    at.sidebar.selectbox(key="run").set_value(run_id)
    at.run()
    assert not at.exception and not at.error and not at.warning
    assert "scatter3d" in at.get("plotly_chart")[0].proto.spec
    regions = at.dataframe[0].value
    assert len(regions) == len(result.events) >= 1 and regions["where"].notna().all()
    next(b for b in at.button if b.label == "False alarm").click()
    at.run()
    with open_store(db) as st:
        assert st.labels(run_id)[0]["label"] == "false_alarm"


def test_video_page_on_a_rules_head_run(tmp_path, monkeypatch):
    rules = pytest.importorskip("oddeye.video.rules", reason="the video rules head is not in this tree")
    from oddeye.core.synth import make_video, write_frames
    from oddeye.ui.page_video import boxes_at

    normal = write_frames(make_video(seed=7, n_frames=100, anomaly=None).frames, tmp_path / "data" / "normal")
    test = write_frames(make_video(seed=7, n_frames=80, anomaly="fast", anomaly_span=(40, 70)).frames,
                        tmp_path / "data" / "test_fast")
    head = rules.RulesHead().fit([normal])
    result = head.score([test])
    db = tmp_path / "store.db"
    run_id = save_result(db, result, kind="score", model="in-test", data=str(tmp_path / "data"))
    monkeypatch.setenv("ODDEYE_UI_DB", str(db))
    monkeypatch.delenv("ODDEYE_UI_PASSWORD", raising=False)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.sidebar.radio(key="page").set_value("Video")
    at.sidebar.selectbox(key="run").set_value(run_id)
    at.run()
    assert not at.exception and not at.error and not at.warning
    with open_store(db) as st:
        sample = st.samples(run_id)[0]
        assert sample["path"] == str(test.resolve())  # found from --data
        events = st.events(run_id)
        assert events and events[0]["reason"]
        cols = st.event_arrays(run_id, sample["id"])
        assert any(boxes_at(st, cols, f) for f in range(events[0]["start_frame"], events[0]["end_frame"] + 1))
    next(b for b in at.button if b.label.startswith("Jump to event")).click()
    at.run()
    assert at.get("image") and "frame" in at.get("image")[0].proto.imgs[0].caption
    assert any(events[0]["reason"][:30] in m.value for m in at.markdown)
