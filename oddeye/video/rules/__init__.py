"""Rule-induction video head (AnomalyRuler style): perception -> readable rules -> per-frame judgement with reasons."""

from oddeye.video.rules.config import RulesConfig
from oddeye.video.rules.head import RulesHead
from oddeye.video.rules.rules import Rule, RuleSet

__all__ = ["RulesHead", "RulesConfig", "Rule", "RuleSet"]
