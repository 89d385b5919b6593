"""`--auto`, for every head: settings chosen from the user's normal data and synthetic anomalies, never test labels.

Normal samples are split (seeded) into a part to fit on and a part to validate on; each candidate of the head's
declared search space (partial configs) is fitted on the first and scored on the validation normals plus synthetic
anomalies made from them (oddeye.core.anomalies); the best AUROC wins, and a candidate within `TIE` of the best
that is faster (to score, then to fit) wins instead. A space may add candidates made from the first results (its
`combine`: e.g. the best backbone with the best other settings). A time budget stops the loop early; the table of
every candidate (tried or not) and the choice go into the model's manifest (`record`), where `oddeye model info DIR`
prints them.

    space = SearchSpace("mine", [{}, {"k": 3}, {"k": 5, "mode": "mean"}])
    found = search(space, base_config, make_head, fit_part, val_samples, val_labels, minutes=5)
    found.chosen_settings                     # {"k": 3}
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import numpy as np

from oddeye.core import metrics
from oddeye.core.errors import InputError, OddeyeError
from oddeye.core.head import Head, RunContext, read_manifest, write_manifest
from oddeye.core.headconfig import HeadConfig
from oddeye.core.memory import trim_malloc
from oddeye.core.types import Result

TIE = 0.005  # AUROC differences within this are near-ties, broken toward the faster candidate
SPEED_TOL = 0.2  # scoring times within this share of the fastest count as equal (timings are noisy)
DEFAULT_MINUTES = 10.0
METRIC = "AUROC of one score per sample on validation normals + synthetic anomalies"
TIMES = "CPU seconds of this process (wall time varies with other jobs on the machine)"
C = TypeVar("C", bound=HeadConfig)
T = TypeVar("T")


def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`base` with `changes` applied; nested dicts are merged key by key (a partial nested config changes only the
    keys it names)."""
    out = dict(base)
    for k, v in changes.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def without(settings: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """`settings` less the keys in `given`, nested dicts key by key (a nested dict left empty is dropped)."""
    out = {}
    for k, v in settings.items():
        if isinstance(v, dict) and isinstance(given.get(k), dict):
            v = without(v, given[k])
            if v:
                out[k] = v
        elif k not in given:
            out[k] = v
    return out


def apply(config: C, settings: dict[str, Any]) -> C:
    """`config` with the partial settings applied (nested configs merged) and checked (ConfigError names the field)."""
    return type(config).from_dict(merge(config.to_dict(), settings))


def _key(settings: dict[str, Any]) -> str:
    return json.dumps(settings, sort_keys=True, default=list)


@dataclass
class SearchSpace:
    """A head's candidate settings, tried in order (put the head's defaults, {}, first): partial config dicts,
    e.g. {"border": 2, "extractor": {"layers": [3, 8]}}."""

    name: str
    candidates: list[dict[str, Any]]
    combine: Callable[[list[Trial]], list[dict[str, Any]]] | None = None  # after the candidates: more, from results

    def __post_init__(self) -> None:
        if not self.candidates:
            raise InputError(f"search space {self.name!r} has no candidates")
        unique = {_key(c): dict(c) for c in self.candidates}
        self.candidates = list(unique.values())

    @classmethod
    def grid(cls, name: str, **values: Sequence[Any]) -> SearchSpace:
        """Every combination of the values given per setting (the first value of each first)."""
        names = list(values)
        return cls(name, [dict(zip(names, combo)) for combo in itertools.product(*(values[n] for n in names))])

    def fixing(self, given: dict[str, Any]) -> SearchSpace:
        """The space without the settings the user gave (nested ones too): the base config keeps those; candidates
        that become the same are dropped."""
        if not given:
            return self
        combine = None if self.combine is None else (
            lambda trials: [without(c, given) for c in self.combine(trials)])  # type: ignore[misc]
        return SearchSpace(self.name, [without(c, given) for c in self.candidates], combine)

    def check(self, base: HeadConfig) -> None:
        """Raise ConfigError (naming the field) if a candidate does not apply to `base`."""
        for c in self.candidates:
            apply(base, c)


def validation_parts(n: int, fraction: float = 0.2, seed: int = 0, count: int = 1, max_val: int | None = None,
                     min_fit: int = 1) -> list[list[int]]:
    """Up to `count` disjoint seeded validation parts of n normal samples (sorted indices), each `fraction` of them
    (at most `max_val`, at least 1, leaving at least `min_fit` to fit); the first is split_normals' part."""
    if n < min_fit + 1:
        raise InputError(f"--auto needs at least {min_fit + 1} normal samples to split into fit and validation "
                         f"parts, got {n}", "give more normal samples, or leave --auto out")
    if not 0 < fraction < 1:
        raise InputError(f"the validation fraction must be strictly between 0 and 1, got {fraction}")
    k = min(max(1, int(round(fraction * n))), n - min_fit, max_val or n)
    order = np.random.default_rng([seed, 80]).permutation(n).tolist()
    return [sorted(order[i * k:(i + 1) * k]) for i in range(min(count, n // k))]


def split_normals(samples: Sequence[T], fraction: float = 0.2, seed: int = 0, max_val: int | None = None,
                  min_fit: int = 1, max_fit: int | None = None) -> tuple[list[T], list[T]]:
    """A seeded split of normal samples into (fit part, validation part), each in the input order: `fraction` of
    them validate (at most `max_val`, at least 1), at least `min_fit` fit; beyond `max_fit`, a seeded subset of the
    rest fits (the search's time then stays bounded however many normals there are)."""
    val = set(validation_parts(len(samples), fraction, seed, 1, max_val, min_fit)[0])
    fit = [i for i in range(len(samples)) if i not in val]
    if max_fit is not None and len(fit) > max_fit:
        fit = sorted(np.random.default_rng([seed, 81]).choice(fit, max_fit, replace=False).tolist())
    return [samples[i] for i in fit], [s for i, s in enumerate(samples) if i in val]


@dataclass
class Trial:
    """One candidate: its settings, AUROC on the validation set, CPU seconds to fit and to score, and its status
    ("ok", "skipped: ..." when the budget ran out first, "failed: ..." when it raised a user error)."""

    settings: dict[str, Any]
    auroc: float | None = None
    fit_s: float | None = None
    score_s: float | None = None
    status: str = "ok"


@dataclass
class SearchResult:
    """Every candidate of a search (in the order of the space) and the chosen one."""

    space: str
    trials: list[Trial]
    chosen: int
    reason: str
    budget_s: float
    elapsed_s: float
    metric: str = METRIC

    @property
    def chosen_settings(self) -> dict[str, Any]:
        """The settings of the chosen candidate."""
        return self.trials[self.chosen].settings

    @property
    def skipped(self) -> list[dict[str, Any]]:
        """The settings of the candidates the budget left untried."""
        return [t.settings for t in self.trials if t.status.startswith("skipped")]

    def to_dict(self) -> dict[str, Any]:
        """The manifest's "auto" entry: the table of every candidate, the choice and why."""
        return {"space": self.space, "metric": self.metric, "times": TIMES, "tie": TIE,
                "budget_s": round(self.budget_s, 1),
                "elapsed_s": round(self.elapsed_s, 1),
                "chosen": self.chosen, "chosen_settings": self.chosen_settings, "reason": self.reason,
                "trials": [{"settings": t.settings, "auroc": t.auroc, "fit_s": _r(t.fit_s), "score_s": _r(t.score_s),
                            "status": t.status} for t in self.trials]}

    def lines(self) -> list[str]:
        """The table and the choice, for a person."""
        return table_lines(self.to_dict())


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 3)


def table_lines(auto: dict[str, Any]) -> list[str]:
    """A manifest's "auto" entry as lines: one row per candidate (the chosen one starred), then the choice."""
    rows = [("", "#", "auroc", "fit_s", "score_s", "settings")]
    for i, t in enumerate(auto.get("trials", [])):
        num = (lambda v, f: "-" if v is None else format(v, f))  # noqa: E731
        settings = json.dumps(t["settings"], sort_keys=True) if t["settings"] else "{} (defaults)"
        status = "" if t["status"] == "ok" else f"  [{t['status']}]"
        rows.append(("*" if i == auto.get("chosen") else "", str(i + 1), num(t["auroc"], ".4f"),
                     num(t["fit_s"], ".1f"), num(t["score_s"], ".1f"), settings + status))
    widths = [max(len(r[c]) for r in rows) for c in range(5)]
    out = ["  ".join(r[c].rjust(widths[c]) for c in range(5)) + "  " + r[5] for r in rows]
    chosen = auto.get("chosen_settings")
    out.append(f"chosen: {json.dumps(chosen, sort_keys=True) if chosen else '{} (defaults)'} "
               f"({auto.get('reason', '')}); {auto.get('elapsed_s', 0):.0f} s of a {auto.get('budget_s', 0):.0f} s "
               "budget")
    return out


def choose(trials: Sequence[Trial], tie: float = TIE) -> tuple[int, str]:
    """(index, reason) of the best trial by AUROC; among those within `tie` of it, the fastest: those within
    SPEED_TOL of the fastest to score, then the fastest of them to fit (then the earliest)."""
    done = [(i, t) for i, t in enumerate(trials) if t.status == "ok" and t.auroc is not None and np.isfinite(t.auroc)]
    if not done:
        raise InputError("--auto: no candidate could be scored", "see the table of failures; leave --auto out")
    best_i, best = max(done, key=lambda it: (it[1].auroc, -it[0]))
    near = [(i, t) for i, t in done if t.auroc >= best.auroc - tie]
    fastest = min(t.score_s or 0.0 for _, t in near)
    quick = [(i, t) for i, t in near if (t.score_s or 0.0) <= fastest * (1 + SPEED_TOL)]
    pick = min(quick, key=lambda it: (it[1].fit_s or 0.0, it[0]))[0]
    if pick == best_i:
        return pick, f"best AUROC {best.auroc:.4f}"
    p = trials[pick]
    if best_i not in {i for i, _ in quick}:
        why = "faster to score"
    elif (p.fit_s or 0.0) < (best.fit_s or 0.0):
        why = "as fast to score and faster to fit"
    else:
        why = "as fast, and earlier in the space"
    return pick, (f"AUROC {p.auroc:.4f}, within {tie} of the best {best.auroc:.4f} (candidate {best_i + 1}), "
                  f"and {why}")


def search(space: SearchSpace, base: C, make: Callable[[C], Head], fit: Sequence[Any], val: Sequence[Any],
           labels: Sequence[int] | np.ndarray, minutes: float = DEFAULT_MINUTES,
           scores: Callable[[Result], np.ndarray] | None = None,
           prepare: Callable[[C], tuple[float, float]] | None = None,
           same_fit: Callable[[C], Any] | None = None,
           log: Callable[[str], None] | None = None, metric: str = METRIC) -> SearchResult:
    """Fit every candidate (`make(apply(base, settings))`) on `fit`, score `val` (labels 0 normal, 1 synthetic
    anomaly), AUROC of `scores(result)` (default: one score per sample) against `labels`; pick by `choose`.

    `prepare(config)`, if given, runs untimed before a candidate (e.g. computing features candidates share) and
    returns seconds to add to its fit and score times (what that preparation costs a candidate on its own).
    `same_fit(config)`, if given, is a key (None: fit anyway): a candidate whose key an earlier one had reuses that
    fitted head with its own config (the settings that differ only change scoring; its fit time is the earlier's).
    Before each candidate after the first, the loop stops if the time spent plus the mean time of a candidate so
    far would pass `minutes`; the rest are marked skipped. A candidate raising an OddeyeError is marked failed.
    A space with `combine` gets, once its candidates are done, the new candidates `combine(trials)` makes of their
    results (e.g. the best backbone with the best other settings); they run under the same budget.
    """
    labels = np.asarray(labels)
    if labels.min(initial=1) != 0 or labels.max(initial=0) != 1:
        raise InputError("--auto needs validation samples of both kinds (normal and synthetic anomalies)")
    space.check(base)
    budget, t_start = 60.0 * minutes, time.perf_counter()
    trials = [Trial(dict(s)) for s in space.candidates]
    fitted: dict[str, tuple[Head, float]] = {}
    say = log or (lambda _: None)

    def run(i: int, trial: Trial) -> None:
        cfg = apply(base, trial.settings)
        key = same_fit(cfg) if same_fit else None
        key = None if key is None else _key(key)
        try:
            extra = prepare(cfg) if prepare else (0.0, 0.0)
            if key in fitted:
                head, fit_s = fitted[key]
                head.config = cfg
            else:
                head = make(cfg)
                t0 = time.process_time()
                head.fit(list(fit), ctx=RunContext(progress=False))
                fit_s = time.process_time() - t0
                if key is not None:
                    fitted[key] = head, fit_s
            t1 = time.process_time()
            result = head.score(list(val), ctx=RunContext(progress=False, keep_maps=False))
            t2 = time.process_time()
        except OddeyeError as e:  # a user error of this candidate (e.g. weights of its backbone not installed)
            trial.status = f"failed: {e.message}"
            say(f"auto: candidate {i + 1} {json.dumps(trial.settings, sort_keys=True)} failed: {e.message}")
            return
        s = np.asarray(scores(result) if scores else result.sample_scores(), dtype=np.float64)
        if s.shape != labels.shape:
            raise InputError(f"--auto: {len(s)} scores for {len(labels)} validation labels")
        trial.auroc = metrics.auroc(labels, s)
        trial.fit_s, trial.score_s = fit_s + extra[0], t2 - t1 + extra[1]
        say(f"auto: candidate {i + 1}/{len(trials)} AUROC {trial.auroc:.4f} (fit {trial.fit_s:.1f} s, score "
            f"{trial.score_s:.1f} s) {json.dumps(trial.settings, sort_keys=True)}")

    i, combined = 0, space.combine is None
    while i < len(trials):
        spent = time.perf_counter() - t_start
        if i > 0 and spent + spent / i > budget:
            for t in trials[i:]:
                t.status = f"skipped: budget of {minutes:g} min spent"
            say(f"auto: budget spent after {i} of {len(trials)} candidates; {len(trials) - i} not tried")
            break
        run(i, trials[i])
        trim_malloc()  # a candidate's features and fits, freed, leave the heap fragmented: hand the pages back
        i += 1
        if i == len(trials) and not combined:  # the first pass is done: add the space's combinations of its results
            combined, seen = True, {_key(t.settings) for t in trials}
            for c in space.combine(trials):  # type: ignore[misc]
                if _key(c) not in seen:
                    seen.add(_key(c))
                    apply(base, c)  # a combination that does not apply raises ConfigError (naming the field)
                    trials.append(Trial(dict(c)))
    pick, reason = choose(trials)
    return SearchResult(space.name, trials, pick, reason, budget, time.perf_counter() - t_start, metric)


def record(directory: str | Path, found: SearchResult, **meta: Any) -> Path:
    """Add the search table and choice (and `meta`, e.g. the validation sizes) to a saved model's manifest."""
    doc = read_manifest(directory)
    rest = {k: v for k, v in doc.items() if k not in ("head", "format_version", "auto")}
    return write_manifest(directory, doc["head"], doc.get("format_version", 1), **rest,
                          auto={**found.to_dict(), **meta})
