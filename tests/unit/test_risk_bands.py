"""Priority and decision bands: P1 > 0.8, P2 > 0.5, P3 > 0.3, P4 otherwise;
APPROVE < 0.3 <= REVIEW <= 0.7 < BLOCK."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringwatch.config import ScoringConfig
from ringwatch.scoring.risk import Decision, Priority, decision, priority

CONFIG = ScoringConfig()


def above(x: float) -> float:
    return math.nextafter(x, math.inf)


def below(x: float) -> float:
    return math.nextafter(x, -math.inf)


@pytest.mark.parametrize(
    ("risk", "expected"),
    [
        (0.0, Priority.P4),
        (0.3, Priority.P4),  # exactly 0.3 is not above 0.3
        (above(0.3), Priority.P3),
        (0.5, Priority.P3),
        (above(0.5), Priority.P2),
        (0.8, Priority.P2),
        (above(0.8), Priority.P1),
        (1.0, Priority.P1),
    ],
)
def test_priority_bands_are_open_above_each_threshold(risk: float, expected: Priority) -> None:
    assert priority(risk, CONFIG) is expected


@pytest.mark.parametrize(
    ("risk", "expected"),
    [
        (0.0, Decision.APPROVE),
        (below(0.3), Decision.APPROVE),
        (0.3, Decision.REVIEW),  # 0.3 <= REVIEW
        (0.5, Decision.REVIEW),
        (0.7, Decision.REVIEW),  # REVIEW <= 0.7
        (above(0.7), Decision.BLOCK),
        (1.0, Decision.BLOCK),
    ],
)
def test_decision_bands_close_review_at_both_ends(risk: float, expected: Decision) -> None:
    assert decision(risk, CONFIG) is expected


def test_default_thresholds_are_the_specified_ones() -> None:
    assert (CONFIG.priority_p1, CONFIG.priority_p2, CONFIG.priority_p3) == (0.8, 0.5, 0.3)
    assert (CONFIG.decision_review, CONFIG.decision_block) == (0.3, 0.7)


def test_thresholds_come_from_the_configuration() -> None:
    strict = ScoringConfig(
        priority_p1=0.6, priority_p2=0.4, priority_p3=0.2, decision_review=0.1, decision_block=0.5
    )
    assert priority(0.65, strict) is Priority.P1  # 0.65 > 0.6
    assert priority(0.65, CONFIG) is Priority.P2  # 0.5 < 0.65 <= 0.8
    assert priority(0.25, strict) is Priority.P3
    assert decision(0.55, strict) is Decision.BLOCK  # 0.55 > 0.5
    assert decision(0.55, CONFIG) is Decision.REVIEW
    assert decision(0.1, strict) is Decision.REVIEW
    assert decision(0.29, CONFIG) is Decision.APPROVE


def test_rank_orders_priorities_by_urgency() -> None:
    assert [p.rank for p in (Priority.P1, Priority.P2, Priority.P3, Priority.P4)] == [4, 3, 2, 1]


@given(st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_higher_risk_never_gets_a_lower_band(a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert priority(low, CONFIG).rank <= priority(high, CONFIG).rank
    order = [Decision.APPROVE, Decision.REVIEW, Decision.BLOCK]
    assert order.index(decision(low, CONFIG)) <= order.index(decision(high, CONFIG))
