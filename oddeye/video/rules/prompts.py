"""AnomalyRuler's three prompts (induction, aggregation, deduction), asking for JSON we can parse into rules."""

from __future__ import annotations

from typing import Sequence

from oddeye.video.rules.rules import ATTRIBUTES, Rule

SYSTEM = ("You are a careful surveillance analyst. You read short descriptions of camera frames and reason about "
          "what is normal in the scene. Always answer with JSON only, no prose around it.")

# appearance is a distance between crop embeddings: nothing an LLM reading descriptions can put a number on
RULE_SCHEMA = ('[{"attribute": one of ' + ", ".join(f'"{a}"' for a in ATTRIBUTES if a != "appearance")
               + ', "zone": a zone name or '
               '"anywhere", "low": number or null, "high": number or null, "allowed": list of zone names (for '
               '"zone") or of kinds tall/compact/wide (for "kind"), "text": "the rule in one sentence"}]')


def induction_messages(descriptions: Sequence[str], zones: Sequence[str], hints: Sequence[Rule] = ()) -> list[dict]:
    """Induction: normal frame descriptions -> rules for normality (and what would be anomalous)."""
    lines = "\n".join(f"- {d}" for d in descriptions)
    measured = "\n".join(f"- {r.describe()}" for r in hints[:12])
    user = (f"These are descriptions of NORMAL frames of one camera:\n{lines}\n\n"
            f"Scene zones: {', '.join(zones)}.\n"
            + (f"Measured facts about normal frames:\n{measured}\n\n" if measured else "")
            + "Induce rules of normality: which objects, speeds (px/frame), sizes (px) and places are normal, and "
              "therefore what would be anomalous. Answer with a JSON list of rules: " + RULE_SCHEMA)
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def aggregation_messages(rule_lists: Sequence[Sequence[Rule]]) -> list[dict]:
    """Aggregation: several induced rule lists -> the rules that recur."""
    blocks = []
    for k, rules in enumerate(rule_lists):
        blocks.append(f"Rule list {k + 1}:\n" + "\n".join(f"- {r.describe()}" for r in rules))
    user = ("Several rule lists were induced from different normal frames of the same camera.\n\n"
            + "\n\n".join(blocks)
            + "\n\nKeep only the rules that recur in most lists, merged into one list. Answer with a JSON list of "
              "rules: " + RULE_SCHEMA)
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def deduction_messages(description: str, rules: Sequence[Rule]) -> list[dict]:
    """Deduction: one frame description + the rules -> judgement and the broken rule."""
    listed = "\n".join(f"{r.id}: {r.describe()}" for r in rules)
    user = (f"Rules of normality for this camera:\n{listed}\n\nFrame: {description}\n\n"
            'Does the frame break a rule? Answer with JSON: {"anomalous": true or false, "rule": "the id of the '
            'broken rule or null", "reason": "one sentence"}')
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
