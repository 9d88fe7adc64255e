"""Priority and decision bands from a risk in [0, 1] (thresholds from `ScoringConfig`)."""

from __future__ import annotations

from enum import StrEnum

from ringwatch.config import ScoringConfig


class Priority(StrEnum):
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"

    @property
    def rank(self) -> int:
        """4 for P1 down to 1 for P4: higher is more urgent."""
        return 5 - int(self.value[1])


class Decision(StrEnum):
    APPROVE = "APPROVE"
    REVIEW = "REVIEW"
    BLOCK = "BLOCK"


def priority(risk: float, config: ScoringConfig) -> Priority:
    """P1 above `priority_p1`, P2 above `priority_p2`, P3 above `priority_p3`, P4 otherwise."""
    if risk > config.priority_p1:
        return Priority.P1
    if risk > config.priority_p2:
        return Priority.P2
    if risk > config.priority_p3:
        return Priority.P3
    return Priority.P4


def decision(risk: float, config: ScoringConfig) -> Decision:
    """APPROVE below `decision_review`, BLOCK above `decision_block`, REVIEW in between."""
    if risk < config.decision_review:
        return Decision.APPROVE
    if risk > config.decision_block:
        return Decision.BLOCK
    return Decision.REVIEW
