"""Pages on runs recorded the older way or from memory: a clear caption, never an error box or a file outside the store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

from oddeye.core import synth
from oddeye.core.types import AnomalyMap, Result, Score
from oddeye.store.api import save_result

APP = str(Path(__file__).resolve().parents[1] / "oddeye" / "ui" / "app.py")


def _open(db: Path, page: str, run_id: int, monkeypatch) -> AppTest:
    monkeypatch.setenv("ODDEYE_UI_DB", str(db))
    monkeypatch.delenv("ODDEYE_UI_PASSWORD", raising=False)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.sidebar.radio(key="page").set_value(page)
    at.sidebar.selectbox(key="run").set_value(run_id)
    at.run()
    assert not at.exception and not at.error and not at.warning, ([e.value for e in at.error], at.exception)
    return at


def test_patrol_reference_from_meta_only_where_it_may_be_read(tmp_path, monkeypatch):
    route = synth.make_route(seed=1, n_frames=4, size=(48, 64), n_objects=1)
    ref_dir = synth.write_frames(route.reference, tmp_path / "elsewhere" / "reference")
    qry_dir = synth.write_frames(route.query, tmp_path / "runs" / "query")
    scores = [Score(f"q/{t:06d}", float(t), maps={"change": AnomalyMap("pixel", np.full((12, 16), t, np.float32))},
                    meta={"kind": "patrol_pair", "index": t, "ref_index": t, "source": str(qry_dir)}) for t in range(4)]
    db = tmp_path / "runs" / "store.db"  # an older run: the reference only in meta, no `reference` artefact
    rid = save_result(db, Result(head="patrol", scores=scores, meta={"reference": str(ref_dir)}), kind="patrol")
    monkeypatch.delenv("ODDEYE_UI_ROOTS", raising=False)
    at = _open(db, "Patrol", rid, monkeypatch)
    assert at.slider(key=f"route_{rid}").value == 3  # the highest change
    assert [i.proto.imgs[0].caption for i in at.get("image")][0] == "query"  # no reference: not allowed, not shown
    assert any(c.value.startswith("no reference") for c in at.caption)
    monkeypatch.setenv("ODDEYE_UI_ROOTS", str(ref_dir))
    at = _open(db, "Patrol", rid, monkeypatch)
    caps = [i.proto.imgs[0].caption for i in at.get("image")]
    assert caps[:2] == ["reference", "query"] and caps[2].startswith("change map")


def test_3d_page_on_a_cloud_scored_from_memory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    c = synth.make_point_cloud(seed=0, n_points=500, shape="sphere")
    sc = Score("sphere", 1.0, maps={"points": AnomalyMap("point", np.linalg.norm(c.points, axis=1))},
               meta={"source": "synth"})
    db = tmp_path / "store.db"
    rid = save_result(db, Result(head="pointcloud", scores=[sc]), kind="pointcloud")
    at = _open(db, "3D", rid, monkeypatch)
    assert any("scored from memory" in c.value for c in at.caption)
    assert not at.get("plotly_chart") and len(at.dataframe[0].value) == 20  # the top points, without positions
