"""Rules are data: what normal looks like, as ranges and sets a person can read and edit in rules.yaml."""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from oddeye.core.errors import InputError, ModelError, yaml_problem

RULES_VERSION = 1
# attribute -> (unit, scope). "zone" and "kind" are set rules (allowed zones / shape kinds); the others ranges.
ATTRIBUTES: dict[str, tuple[str, str]] = {
    "speed": ("px/frame", "object"),
    "track_speed": ("px/frame", "object"),
    "area": ("px^2", "object"),
    "height": ("px", "object"),
    "width": ("px", "object"),
    "aspect": ("height/width", "object"),
    "appearance": ("", "object"),  # distance of the object's crop to the nearest normal one (appearance.py)
    "zone": ("", "object"),
    "kind": ("", "object"),
    "count": ("objects", "frame"),
}
SET_ATTRIBUTES = ("zone", "kind")
KINDS = ("tall", "compact", "wide")  # object shape kinds: height/width > 1.6, 0.8..1.6, < 0.8
_WORDS = {"speed": "move at", "track_speed": "travel at", "area": "cover", "height": "stand", "width": "span",
          "aspect": "have a height/width ratio of", "count": "be"}


class RuleFileError(ModelError):
    """An edited rules file is malformed; the message names the file, the rule index and the field."""


@dataclass
class Rule:
    """One rule of normality: `attribute` of objects in `zone` stays in [low, high] (or in `allowed`).

    score of a value x = how far outside the range it is, in units of `margin` (> 0 breaks the rule).
    """

    id: str
    attribute: str
    zone: str = "anywhere"  # a zone name, a row band ("lower band") or "anywhere"
    low: float | None = None
    high: float | None = None
    allowed: list[str] | None = None  # for set rules (attributes "zone" and "kind")
    margin: float = 1.0
    weight: float = 1.0  # judgement of a breach (0..1]: a rule that matters less flags a frame less strongly
    text: str = ""
    support: float = 1.0  # share of the induction subsets in which this rule recurred
    n: int = 0  # observations it was induced from
    source: str = "offline"  # "offline", "llm" or "user"

    @property
    def scope(self) -> str:
        """'object' or 'frame'."""
        return ATTRIBUTES[self.attribute][1]

    def score(self, value: float | str) -> float:
        """Distance of `value` outside the allowed range in margin units (negative inside the range)."""
        if self.allowed is not None:
            return -float("inf") if value in self.allowed else 1.0
        x = float(value)
        s = -float("inf")
        if self.high is not None:
            s = max(s, (x - self.high) / self.margin)
        if self.low is not None:
            s = max(s, (self.low - x) / self.margin)
        return s

    def describe(self) -> str:
        """The rule in words (its `text`, or one made from the fields)."""
        if self.text:
            return self.text
        return default_text(self)

    def broken_text(self, value: float | str) -> str:
        """Why `value` breaks this rule, in words."""
        unit = ATTRIBUTES[self.attribute][0]
        if self.allowed is not None and self.attribute == "kind":
            return f"a {value} object, a kind normal footage does not show here ({self.describe()})"
        if self.allowed is not None:
            return f"seen in the {value}, where normal footage has nobody ({self.describe()})"
        v = float(value)
        if self.attribute == "appearance" and self.high is not None and v > self.high:
            return (f"that looks like none in the normal footage: distance {v:.3g} to the nearest normal object, "
                    f"above the normal {self.high:.3g} ({self.describe()})")
        if self.high is not None and v > self.high:
            return f"{self.attribute} {v:.3g} {unit} above the normal {self.high:.3g} ({self.describe()})"
        if self.low is not None and v < self.low:
            return f"{self.attribute} {v:.3g} {unit} below the normal {self.low:.3g} ({self.describe()})"
        return f"{self.attribute} {v:.3g} {unit} within the rule ({self.describe()})"


def default_text(rule: Rule) -> str:
    """A sentence for a rule from its fields: 'objects in the lower left walkway move at most 2.1 px/frame'."""
    where = "anywhere" if rule.zone == "anywhere" else f"in the {rule.zone}"
    if rule.allowed is not None and rule.attribute == "kind":
        return f"objects {where} are {' or '.join(rule.allowed)}"
    if rule.allowed is not None:
        return f"objects appear only in: {', '.join(rule.allowed)}"
    if rule.attribute == "appearance" and rule.high is not None and rule.low is None:
        return (f"objects {where} look like those in the normal footage: distance to the nearest normal object at "
                f"most {rule.high:.3g}")
    unit = ATTRIBUTES.get(rule.attribute, ("", ""))[0]
    verb = _WORDS.get(rule.attribute, rule.attribute)
    who = "frames have" if rule.attribute == "count" else f"objects {where}"
    if rule.attribute == "count":
        rng = f"at most {int(rule.high)} moving objects" if rule.high is not None else "any number of objects"
        return f"{who} {rng}"
    if rule.low is not None and rule.high is not None:
        return f"{who} {verb} {rule.low:.3g} to {rule.high:.3g} {unit}"
    if rule.high is not None:
        return f"{who} {verb.removesuffix(' at')} at most {rule.high:.3g} {unit}"
    return f"{who} {verb} at least {rule.low:.3g} {unit}"


@dataclass
class RuleSet:
    """All rules of a model plus how they were made (induction params, backend)."""

    rules: list[Rule] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rules)

    def by_key(self) -> dict[tuple[str, str], Rule]:
        """Rules indexed by (attribute, zone)."""
        return {(r.attribute, r.zone): r for r in self.rules}

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for YAML: version, meta and rules without empty fields."""
        rows = []
        for r in self.rules:
            d = {k: v for k, v in asdict(r).items() if v is not None}
            for k in ("low", "high", "margin", "weight", "support"):
                if k in d:
                    d[k] = round(float(d[k]), 4)
            rows.append(d)
        return {"version": RULES_VERSION, "meta": self.meta, "rules": rows}

    def save(self, path: str | Path) -> Path:
        """Write the rules as readable YAML (one block per rule, text first)."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        header = ("# oddeye video-rules: what normal looks like. Edit freely: change low/high/margin, delete a rule,\n"
                  "# or add one (id, attribute, zone, low/high or allowed, margin, text). Attributes: "
                  + ", ".join(ATTRIBUTES) + ".\n")
        p.write_text(header + yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True, width=110))
        return p

    @classmethod
    def load(cls, path: str | Path) -> RuleSet:
        """Read and validate a rules file; a typo is a RuleFileError naming the file, rule index and field."""
        p = Path(path)
        if not p.is_file():
            raise ModelError(f"rules file not found: {p}", "restore rules.yaml, or refit with `oddeye fit video-rules`")
        try:
            doc = yaml.safe_load(p.read_text())
        except yaml.YAMLError as e:
            raise RuleFileError(f"{p}: not valid YAML ({yaml_problem(e)})",
                                "fix the indentation or quoting there") from None
        return cls.from_dict(doc, str(p))

    @classmethod
    def from_dict(cls, doc: Any, source: str = "rules") -> RuleSet:
        """Validate a parsed rules document (see save()) and build the RuleSet."""
        if not isinstance(doc, dict) or "rules" not in doc:
            raise RuleFileError(f"{source}: expected a mapping with a 'rules' list", "see `oddeye rules show`")
        if int(doc.get("version", 1)) > RULES_VERSION:
            raise RuleFileError(f"{source}: written by a newer oddeye (version {doc['version']})", "upgrade oddeye")
        if not isinstance(doc["rules"], list):
            raise RuleFileError(f"{source}: 'rules' must be a list of rules")
        rules = [validate_rule(d, i, source) for i, d in enumerate(doc["rules"])]
        ids = [r.id for r in rules]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise RuleFileError(f"{source}: duplicate rule id(s) {dup}", "give every rule its own id")
        return cls(rules=rules, meta=dict(doc.get("meta") or {}))


_FIELDS = {f.name: f for f in fields(Rule)}


def validate_rule(d: Any, index: int, source: str = "rules") -> Rule:
    """Check one rule mapping; errors name `source`, the rule index (0-based) and the bad field."""
    where = f"{source}: rule {index}"
    if not isinstance(d, dict):
        raise RuleFileError(f"{where}: expected a mapping of fields, got {type(d).__name__}")
    if "id" in d:
        where += f" (id {d['id']!r})"
    for k in d:
        if k not in _FIELDS:
            close = difflib.get_close_matches(str(k), list(_FIELDS), n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"fields are: {', '.join(_FIELDS)}"
            raise RuleFileError(f"{where}: unknown field '{k}'", hint)
    for k in ("id", "attribute"):
        if k not in d:
            raise RuleFileError(f"{where}: missing field '{k}'")
    attr = d["attribute"]
    if attr not in ATTRIBUTES:
        close = difflib.get_close_matches(str(attr), list(ATTRIBUTES), n=1)
        raise RuleFileError(f"{where}: field 'attribute' has unknown value {attr!r}",
                            f"did you mean '{close[0]}'?" if close else f"use one of {', '.join(ATTRIBUTES)}")
    kw: dict[str, Any] = {}
    for k, v in d.items():
        if k in ("low", "high", "margin", "weight", "support"):
            if v is None and k in ("low", "high"):
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise RuleFileError(f"{where}: field '{k}' must be a number, got {v!r}")
            kw[k] = float(v)
        elif k == "n":
            if isinstance(v, bool) or not isinstance(v, int):
                raise RuleFileError(f"{where}: field 'n' must be a whole number, got {v!r}")
            kw[k] = v
        elif k == "allowed":
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise RuleFileError(f"{where}: field 'allowed' must be a list of zone names, got {v!r}")
            kw[k] = list(v)
        else:
            if not isinstance(v, str):
                raise RuleFileError(f"{where}: field '{k}' must be text, got {v!r}")
            kw[k] = v
    rule = Rule(**kw)
    if attr in SET_ATTRIBUTES:
        if rule.allowed is None:
            raise RuleFileError(f"{where}: a '{attr}' rule needs field 'allowed' (a list of "
                                f"{'zone names' if attr == 'zone' else 'kinds: ' + ', '.join(KINDS)})")
        if attr == "kind" and set(rule.allowed) - set(KINDS):
            raise RuleFileError(f"{where}: field 'allowed' has unknown kind(s) {sorted(set(rule.allowed) - set(KINDS))}",
                                f"kinds are {', '.join(KINDS)}")
    else:
        if rule.allowed is not None:
            raise RuleFileError(f"{where}: field 'allowed' only goes with attributes 'zone' and 'kind'")
        if rule.low is None and rule.high is None:
            raise RuleFileError(f"{where}: needs field 'low' or 'high'")
        if rule.low is not None and rule.high is not None and rule.low > rule.high:
            raise RuleFileError(f"{where}: field 'low' ({rule.low}) is above 'high' ({rule.high})", "swap them")
    for k in ("margin", "weight"):
        if not getattr(rule, k) > 0:
            raise RuleFileError(f"{where}: field '{k}' must be > 0, got {getattr(rule, k)}")
    return rule


def check_attribute(name: str) -> str:
    """Return `name` if it is a rule attribute, else InputError listing them."""
    if name not in ATTRIBUTES:
        raise InputError(f"unknown rule attribute {name!r}", f"use one of {', '.join(ATTRIBUTES)}")
    return name
