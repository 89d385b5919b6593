"""The Head contract, once for every head: same signatures, fit -> save -> load -> score identical, foreign model
folders refused naming the right command, bad config values refused naming the field. `pytest -k contract`."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from contract_image import CASES as IMAGE_CASES
from contract_patrol import CASES as PATROL_CASES
from contract_pointcloud import CASES as POINTCLOUD_CASES
from contract_prediction import CASES as PREDICTION_CASES
from contract_rules import CASES as RULES_CASES
from contract_support import ContractCase, assert_same_result
from oddeye.core.errors import ConfigError, ModelError
from oddeye.core.head import HEADS, MANIFEST, Head, load_head, score_command, write_manifest
from oddeye.core.headconfig import HeadConfig

CASES: list[ContractCase] = [*IMAGE_CASES, *PREDICTION_CASES, *RULES_CASES, *POINTCLOUD_CASES, *PATROL_CASES]
METHODS = ("fit", "score", "save", "load")


def test_contract_covers_every_head():
    assert sorted(c.head for c in CASES) == sorted(HEADS)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_contract_signatures(case: ContractCase):
    head = case.make()
    assert isinstance(head, Head)
    assert head.name == case.head
    assert isinstance(head.config, HeadConfig)
    for m in METHODS:
        want = inspect.signature(getattr(Head, m))
        got = inspect.signature(getattr(type(head), m))
        params = [(p.name, p.kind) for p in got.parameters.values()]
        assert params == [(p.name, p.kind) for p in want.parameters.values()], f"{type(head).__name__}.{m}{got}"


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """Each head fitted once on its synthetic data, saved, and its test samples (cached per case)."""
    cache: dict[str, tuple] = {}

    def get(case: ContractCase):
        if case.head not in cache:
            root = tmp_path_factory.mktemp(case.head)
            head = case.make().fit(case.train(root / "data"), ctx=case.ctx(root / "fit"))
            model = head.save(root / "model")
            cache[case.head] = (head, Path(model), case.test(root / "data"), root)
        return cache[case.head]

    return get


@pytest.mark.parametrize("case", CASES, ids=str)
def test_contract_fit_save_load_score_is_identical(case: ContractCase, fitted):
    head, model, samples, root = fitted(case)
    before = head.score(samples, ctx=case.ctx(root / "score-a"))
    loaded = type(head).load(model)
    after = loaded.score(samples, ctx=case.ctx(root / "score-b"))
    assert before.scores, "the head scored nothing"
    assert_same_result(before, after)
    assert loaded.config == head.config
    again = load_head(model)
    assert type(again) is type(head)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_contract_manifest_holds_the_config(case: ContractCase, fitted):
    head, model, _, _ = fitted(case)
    doc = json.loads((model / MANIFEST).read_text())
    assert doc["head"] == case.head
    assert doc["config"] == head.config.to_dict()
    assert type(head.config).from_dict(doc["config"]) == head.config


@pytest.mark.parametrize("case", CASES, ids=str)
def test_contract_foreign_model_folder_names_its_command(case: ContractCase, tmp_path):
    other = next(h for h in HEADS if HEADS[h][0] != HEADS[case.head][0])
    write_manifest(tmp_path / "other", other)
    cls = type(case.make())
    with pytest.raises(ModelError, match=f"`{score_command(other)}`"):
        cls.load(tmp_path / "other")


@pytest.mark.parametrize("case", CASES, ids=str)
def test_contract_bad_config_value_names_the_field(case: ContractCase, fitted, tmp_path):
    field, value = case.bad
    head = case.make()
    cls = type(head.config)
    with pytest.raises(ConfigError, match=rf"{cls.__name__}\.{field}"):
        head.config.replace(**{field: value})
    with pytest.raises(ConfigError, match=rf"{cls.__name__}\.{field}"):
        cls.from_dict({**head.config.to_dict(), field: value})
    with pytest.raises(ConfigError, match="no_such_setting"):
        head.config.replace(no_such_setting=1)
    # a model folder whose manifest carries the bad value is refused on load, naming the field
    _, model, _, _ = fitted(case)
    import shutil

    broken = Path(shutil.copytree(model, tmp_path / "broken"))
    doc = json.loads((broken / MANIFEST).read_text())
    doc["config"][field] = value
    (broken / MANIFEST).write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=rf"{cls.__name__}\.{field}"):
        type(head).load(broken)
