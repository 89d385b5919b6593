"""The LLM's part in the rules head: rules induced from sampled normal frames, a second opinion on flagged frames.
The head never loses work to the LLM: a failing backend only warns and the offline rules and scores stay."""

from __future__ import annotations

import warnings
from typing import Any, Callable, Sequence

import numpy as np

from oddeye.core.errors import BackendError
from oddeye.video.rules.captioner import Captioner
from oddeye.video.rules.config import RulesConfig
from oddeye.video.rules.deduction import Verdict
from oddeye.video.rules.llm import LLMBackend
from oddeye.video.rules.perception import FrameObs
from oddeye.video.rules.rules import RuleSet
from oddeye.video.rules.zones import ZoneMap


def llm_induce(llm: LLMBackend, captioner: Captioner | None, rules: RuleSet, zones: ZoneMap, frames: Sequence[FrameObs],
               frame_h: int, image_of: Callable[[FrameObs], np.ndarray], config: RulesConfig) -> RuleSet:
    """The offline `rules` plus the LLM's, induced from descriptions of up to config.llm.induce_frames normal
    `frames` (captioned by `captioner` when given; image_of(frame) -> (H, W) uint8); on failure `rules`, noted."""
    cfg = config.llm
    rng = np.random.default_rng(config.induction.seed)
    pick = rng.choice(len(frames), min(len(frames), cfg.induce_frames), replace=False) if frames else []
    chosen = [frames[i] for i in sorted(pick)]
    descriptions = [f.description(frame_h) for f in chosen]
    if captioner is not None and chosen:
        captions = captioner.caption([image_of(f) for f in chosen])
        descriptions = [f"{c} (measured: {d})" for c, d in zip(captions, descriptions)]
    try:
        extra = llm.induce(descriptions, zones.all_names(), rules, subsets=cfg.subsets, seed=config.induction.seed)
    except BackendError as e:
        warnings.warn(f"LLM induction failed, keeping the offline rules: {e.message}", stacklevel=4)
        rules.meta["llm_error"] = e.message
        return rules
    return llm.merge(rules, extra)


def llm_deduce(llm: LLMBackend, rules: RuleSet, verdicts: list[Verdict], described: dict[int, str],
               meta: dict[str, Any], n: int) -> None:
    """Ask the LLM about the `n` most anomalous flagged frames (position in `verdicts` -> description); its
    verdicts go to meta["llm_judgements"] and a broken rule joins the worst breach's words."""
    out = []
    for k in sorted(described, key=lambda j: -verdicts[j].judgement)[:n]:
        try:
            j = llm.deduce(described[k], rules.rules)
        except BackendError as e:
            meta["llm_error"] = e.message
            warnings.warn(f"LLM deduction stopped, the offline scores are kept: {e.message}", stacklevel=4)
            break
        out.append({"frame": verdicts[k].index, "anomalous": j.anomalous, "rule": j.rule.id if j.rule else None,
                    "reason": j.reason})
        if j.anomalous and verdicts[k].breaches:
            b = verdicts[k].breaches[0]
            b.text += f"; LLM: {j.reason}" + (f" [rule {j.rule.id}]" if j.rule else "")
    meta["llm_judgements"] = out
