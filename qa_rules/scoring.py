"""The call score: one formula for the live scorecard, audits and rule tests."""

from __future__ import annotations

from collections.abc import Iterable

from qa_rules.events import RuleOutcome


def score_of(lines: Iterable[RuleOutcome]) -> float:
    """100 x weight of passed rules / weight of passed + failed rules, to one decimal.

    Rules that did not apply (``not_applicable``, ``pending``) do not count either way; a call
    where no rule with weight applied scores 100.
    """
    applicable = [o for o in lines if o.status in ("passed", "failed")]
    total = sum(o.weight for o in applicable)
    got = sum(o.weight for o in applicable if o.status == "passed")
    return round(100.0 * got / total, 1) if total else 100.0
