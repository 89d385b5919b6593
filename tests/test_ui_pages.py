"""Pages on runs recorded the older way or from memory: a clear caption, never an error box or a file outside the store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

from oddeye.core import synth
from oddeye.core.head import MANIFEST
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


def _searched_model(folder: Path) -> Path:
    """A model folder whose manifest holds an --auto search: 3 candidates, the second chosen, the third skipped."""
    from oddeye.core.auto import SearchResult, Trial

    trials = [Trial({}, 0.81, 1.0, 0.5), Trial({"border": 2}, 0.9, 1.0, 0.5),
              Trial({"retrieve": 30}, status="skipped: budget of 1 min spent")]
    found = SearchResult("patchcore", trials, 1, "best AUROC 0.9", 60.0, 55.0)
    folder.mkdir(parents=True)
    (folder / MANIFEST).write_text(json.dumps({"head": "patchcore", "auto": found.to_dict()}))
    return folder


def test_search_figure_marks_the_choice_and_the_untried(tmp_path):
    from oddeye.ui.search import CHOSEN, TRIED, UNTRIED, search_figure, search_rows

    auto = json.loads((_searched_model(tmp_path / "m") / MANIFEST).read_text())["auto"]
    bar = search_figure(auto).data[0]
    assert list(bar.marker.color) == [TRIED, CHOSEN, UNTRIED]
    assert list(bar.text)[:2] == ["0.810", "0.900"] and bar.text[2].startswith("skipped")
    assert bar.x[2] == min(bar.x) and bar.y[1] == "2. border: 2" and bar.y[0] == "1. defaults"
    assert [r["chosen"] for r in search_rows(auto)] == [False, True, False]


def test_runs_page_shows_how_auto_chose_the_runs_model(tmp_path, monkeypatch):
    model = _searched_model(tmp_path / "models" / "tiles")
    plain = tmp_path / "models" / "plain"  # a model without a search, and one whose manifest is not JSON
    plain.mkdir()
    (plain / MANIFEST).write_text(json.dumps({"head": "patchcore"}))
    broken = tmp_path / "models" / "broken"
    broken.mkdir()
    (broken / MANIFEST).write_text("{not json")
    db = tmp_path / "runs" / "store.db"
    rid = save_result(db, Result(head="patchcore", scores=[Score(f"im{i}", float(i)) for i in range(3)]),
                      kind="score", model=",".join(map(str, (plain, broken, model))))
    monkeypatch.delenv("ODDEYE_UI_ROOTS", raising=False)
    at = _open(db, "Runs", rid, monkeypatch)
    boxes = [e.label for e in at.expander if "--auto chose" in e.label]
    assert boxes == ["How --auto chose the model's settings: 2 of 3 candidates tried"]
    assert len(at.get("plotly_chart")) == 1
    table = next(d.value for d in at.dataframe if "settings" in d.value.columns)
    assert list(table["settings"]) == ["defaults", "border: 2", "retrieve: 30"] and list(table["chosen"]) == [0, 1, 0]
