"""The head-agnostic --auto search (oddeye.core.auto) on a toy head: split, candidates, budget, choice, manifest."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from oddeye.core import auto as A
from oddeye.core.errors import ConfigError, InputError
from oddeye.core.head import RunContext, read_manifest, write_manifest
from oddeye.core.headconfig import HeadConfig, param
from oddeye.core.types import Result, Score


@dataclass
class Inner(HeadConfig):
    scale: float = param(1.0, gt=0)
    name: str = "x"


@dataclass
class ToyConfig(HeadConfig):
    feature: int = param(0, ge=0, le=1, doc="which coordinate of a sample is looked at")
    delay: float = param(0.0, ge=0, doc="seconds score() sleeps")
    inner: Inner = param(default_factory=Inner)


class ToyHead:
    """Distance of one coordinate of 2-D samples from its normal mean."""

    name = "toy"

    def __init__(self, config: ToyConfig) -> None:
        self.config = config
        self.mean = 0.0
        self.fitted_on = 0

    def fit(self, samples: Any, *, ctx: RunContext | None = None) -> ToyHead:
        x = np.array(list(samples))[:, self.config.feature]
        self.mean, self.fitted_on = float(x.mean()), len(x)
        return self

    def score(self, samples: Any, *, ctx: RunContext | None = None) -> Result:
        time.sleep(self.config.delay)
        x = np.array(list(samples))[:, self.config.feature] * self.config.inner.scale
        return Result(head=self.name, scores=[Score(str(i), float(abs(v - self.mean))) for i, v in enumerate(x)])

    def save(self, directory: Any) -> Path:
        write_manifest(directory, self.name, config=self.config.to_dict(), mean=self.mean)
        return Path(directory)


def _data(seed: int = 0) -> tuple[list, list, np.ndarray]:
    """Normal 2-D samples; anomalies differ only in coordinate 1."""
    rng = np.random.default_rng(seed)
    normal = rng.normal(0, 1, (60, 2))
    fit, val = A.split_normals(list(normal), 0.25, seed=seed)
    odd = np.array(val) + np.array([0.0, 4.0])
    return fit, list(val) + list(odd), np.array([0] * len(val) + [1] * len(odd))


def test_split_is_seeded_disjoint_and_bounded() -> None:
    items = list(range(40))
    fit, val = A.split_normals(items, 0.2, seed=3)
    assert len(val) == 8 and sorted(fit + val) == items and not set(fit) & set(val)
    assert fit == sorted(fit) and val == sorted(val)  # input order kept
    assert A.split_normals(items, 0.2, seed=3) == (fit, val) and A.split_normals(items, 0.2, seed=4)[1] != val
    assert len(A.split_normals(items, 0.5, seed=0, max_val=5)[1]) == 5
    few, same_val = A.split_normals(items, 0.2, seed=3, max_fit=10)  # a capped fit part: a seeded subset
    assert same_val == val and len(few) == 10 and set(few) < set(fit) and few == sorted(few)
    assert A.split_normals(items, 0.2, seed=3, max_fit=10)[0] == few and A.split_normals(items, 0.2, seed=3,
                                                                                         max_fit=32)[0] == fit
    with pytest.raises(InputError, match="at least 3 normal samples"):
        A.split_normals([1, 2], min_fit=2)


def test_space_grid_merge_fix_and_check() -> None:
    space = A.SearchSpace.grid("toy", feature=(0, 1), delay=(0.0, 0.01))
    assert space.candidates[0] == {"feature": 0, "delay": 0.0} and len(space.candidates) == 4
    fixed = space.fixing({"delay": 0.5})  # the user's value stays in the base config; candidates that then agree
    assert fixed.candidates == [{"feature": 0}, {"feature": 1}]  # are one
    nested = A.SearchSpace("toy", [{}, {"inner": {"scale": 2.0}}, {"inner": {"scale": 3.0, "name": "y"}}])
    assert nested.fixing({"inner": {"scale": 9.0}}).candidates == [{}, {"inner": {"name": "y"}}]
    base = ToyConfig(inner=Inner(scale=2.0, name="kept"))
    cfg = A.apply(base, {"inner": {"scale": 3.0}})  # a partial nested config changes only what it names
    assert cfg.inner == Inner(scale=3.0, name="kept") and cfg.feature == 0
    with pytest.raises(ConfigError, match="ToyConfig.inner.scale"):
        A.SearchSpace("bad", [{}, {"inner": {"scale": -1.0}}]).check(base)
    with pytest.raises(ConfigError, match="ToyConfig.nope"):
        A.apply(base, {"nope": 1})


def test_search_picks_the_best_by_validation_auroc() -> None:
    fit, val, labels = _data()
    space = A.SearchSpace("toy", [{}, {"feature": 1}])
    found = A.search(space, ToyConfig(), ToyHead, fit, val, labels, minutes=1)
    assert [t.status for t in found.trials] == ["ok", "ok"]
    assert found.trials[0].auroc < 0.8 and found.trials[1].auroc > 0.95
    assert found.chosen == 1 and found.chosen_settings == {"feature": 1} and "best AUROC" in found.reason
    assert all(t.fit_s >= 0 and t.score_s >= 0 for t in found.trials)


def test_near_ties_go_to_the_faster_candidate() -> None:
    trials = [A.Trial({}, 0.950, 1.0, 3.0), A.Trial({"a": 1}, 0.953, 1.0, 9.0), A.Trial({"a": 2}, 0.940, 0.1, 0.1)]
    pick, reason = A.choose(trials)
    assert pick == 0 and "within 0.005 of the best 0.9530 (candidate 2)" in reason  # 0.940 is not a near-tie
    assert reason.endswith("and faster to score")
    # scoring times within 20 % are equal: then the faster fit
    trials = [A.Trial({}, 0.95, 9.0, 1.1), A.Trial({"a": 1}, 0.951, 2.0, 1.2), A.Trial({"a": 2}, 0.951, 0.5, 2.0)]
    assert A.choose(trials)[0] == 1
    trials = [A.Trial({}, 0.95, 1.0, 1.1), A.Trial({"a": 1}, 0.951, 2.0, 1.0)]
    assert A.choose(trials) == (0, "AUROC 0.9500, within 0.005 of the best 0.9510 (candidate 2), and as fast to "
                                   "score and faster to fit")
    trials = [A.Trial({}, 0.95, 1.0, 1.0), A.Trial({"a": 1}, 0.951, 1.0, 1.0)]
    assert A.choose(trials)[1].endswith("and as fast, and earlier in the space")
    assert A.choose([A.Trial({}, 0.95, 1.0, 1.0), A.Trial({"a": 1}, 0.99, 1.0, 5.0)]) == (1, "best AUROC 0.9900")
    assert A.choose([A.Trial({}, 0.9, 1, 1, "failed: x"), A.Trial({"a": 1}, 0.8, 1, 1)])[0] == 1
    with pytest.raises(InputError, match="no candidate"):
        A.choose([A.Trial({}, None, None, None, "skipped: budget")])


def test_a_space_combines_its_first_results_into_more_candidates() -> None:
    fit, val, labels = _data()
    seen: list[list[dict]] = []

    def combine(trials: list[A.Trial]) -> list[dict]:
        seen.append([t.settings for t in trials])
        best = max(trials, key=lambda t: t.auroc)
        return [{**best.settings, "inner": {"scale": 2.0}}, {"feature": 1}]  # the second is already in the table

    space = A.SearchSpace("toy", [{}, {"feature": 1}], combine)
    found = A.search(space, ToyConfig(), ToyHead, fit, val, labels, minutes=1)
    assert seen == [[{}, {"feature": 1}]]  # called once, after the first pass, with its results
    assert [t.settings for t in found.trials] == [{}, {"feature": 1}, {"feature": 1, "inner": {"scale": 2.0}}]
    assert all(t.status == "ok" and t.auroc is not None for t in found.trials)
    fixed = space.fixing({"inner": {"scale": 5.0}})  # what the user gave is taken out of the combinations too
    assert fixed.combine is not None and fixed.combine(found.trials) == [{"feature": 1}, {"feature": 1}]
    # a budget spent in the first pass leaves no time for combinations: none is made
    seen.clear()
    slow = A.SearchSpace("toy", [{"delay": 0.3}, {"feature": 1}], combine)
    found = A.search(slow, ToyConfig(), ToyHead, fit, val, labels, minutes=0.2 / 60)
    assert len(found.trials) == 2 and seen == []


def test_budget_skips_and_says_which() -> None:
    fit, val, labels = _data()
    space = A.SearchSpace("toy", [{"delay": 0.3}, {"feature": 1}, {"feature": 1, "delay": 0.01}])
    lines: list[str] = []
    found = A.search(space, ToyConfig(), ToyHead, fit, val, labels, minutes=0.2 / 60, log=lines.append)
    assert [t.status.split(":")[0] for t in found.trials] == ["ok", "skipped", "skipped"]
    assert found.skipped == [{"feature": 1}, {"feature": 1, "delay": 0.01}] and found.chosen == 0
    assert any("2 not tried" in line for line in lines)
    assert any("skipped" in line for line in found.lines())


def test_failed_candidate_is_recorded_and_prepare_adds_its_cost() -> None:
    fit, val, labels = _data()

    class Picky(ToyHead):
        def fit(self, samples: Any, *, ctx: RunContext | None = None) -> Picky:
            if self.config.feature == 0:
                raise InputError("feature 0 is not allowed here")
            return super().fit(samples, ctx=ctx)

    found = A.search(A.SearchSpace("toy", [{}, {"feature": 1}]), ToyConfig(), Picky, fit, val, labels,
                     prepare=lambda cfg: (10.0, 20.0))
    assert found.trials[0].status.startswith("failed: feature 0") and found.chosen == 1
    assert found.trials[1].fit_s >= 10.0 and found.trials[1].score_s >= 20.0


def test_record_puts_the_table_in_the_manifest(tmp_path: Path) -> None:
    fit, val, labels = _data()
    found = A.search(A.SearchSpace("toy", [{}, {"feature": 1}]), ToyConfig(), ToyHead, fit, val, labels)
    head = ToyHead(A.apply(ToyConfig(), found.chosen_settings)).fit(fit)
    head.save(tmp_path)
    A.record(tmp_path, found, n_val=len(val))
    doc = read_manifest(tmp_path, head="toy")
    assert doc["config"]["feature"] == 1 and doc["mean"] == head.mean  # the head's own manifest is kept
    auto = doc["auto"]
    assert auto["chosen"] == 1 and auto["chosen_settings"] == {"feature": 1} and auto["n_val"] == len(val)
    assert [t["settings"] for t in auto["trials"]] == [{}, {"feature": 1}]
    assert {"auroc", "fit_s", "score_s", "status"} <= set(auto["trials"][0])
    json.dumps(auto)


def test_model_info_prints_any_manifest(tmp_path: Path) -> None:
    from oddeye.core.modelinfo import info_lines

    fit, val, labels = _data()
    found = A.search(A.SearchSpace("toy", [{}, {"feature": 1}]), ToyConfig(), ToyHead, fit, val, labels)
    ToyHead(ToyConfig(feature=1)).fit(fit).save(tmp_path / "auto")
    A.record(tmp_path / "auto", found)
    text = "\n".join(info_lines(tmp_path / "auto"))
    assert "head: toy" in text and "feature = 1" in text and "inner.scale = 1.0" in text
    rows = [line.split() for line in text.splitlines()]
    assert ["*", "2", "1.0000"] == [r for r in rows if r[-2:] == ['{"feature":', "1}"]][0][:3]  # the chosen, starred
    assert [r for r in rows if r[-2:] == ["{}", "(defaults)"]][0][0] != "*"
    assert 'chosen: {"feature": 1} (best AUROC 1.0000)' in text
    ToyHead(ToyConfig()).save(tmp_path / "plain")
    assert "auto: not fitted with --auto" in info_lines(tmp_path / "plain")


def test_candidates_that_differ_only_in_scoring_share_one_fit() -> None:
    fit, val, labels = _data()
    fits: list[int] = []

    class Counted(ToyHead):
        def fit(self, samples: Any, *, ctx: RunContext | None = None) -> Counted:
            fits.append(self.config.feature)
            return super().fit(samples, ctx=ctx)

    space = A.SearchSpace("toy", [{}, {"inner": {"scale": 2.0}}, {"feature": 1}, {"feature": 1, "delay": 0.01}])
    found = A.search(space, ToyConfig(), Counted, fit, val, labels,
                     same_fit=lambda cfg: {"feature": cfg.feature} if cfg.delay == 0 else None)
    assert fits == [0, 1, 1]  # the scale only changes scoring: candidate 2 reuses candidate 1's fit
    assert found.trials[1].fit_s == found.trials[0].fit_s and all(t.status == "ok" for t in found.trials)
    assert found.trials[1].auroc == found.trials[0].auroc  # AUROC ignores a scale of the scores
