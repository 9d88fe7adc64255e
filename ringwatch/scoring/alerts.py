"""Alert candidates: which alerts a new score should raise, given what was raised before.

An alert is about one entity (a subscriber or a ring) and has a *kind*:

- ``risk``: the entity's priority crossed into P3, P2 or P1. It is raised the first time and
  again only when the priority escalates (P3 -> P2 -> P1); staying at, or falling back from, a
  priority already alerted raises nothing. P4 never alerts.
- a rule code (a reason code from the configured set of rule codes, e.g.
  ``usage.daily_charge_limit`` or ``ring.created``): raised once per entity and code, whatever
  the priority does afterwards.

Deduplication rests on two deterministic values: the *dedup key* (entity kind, kind, entity id)
and the *alert id* (a hash of the dedup key and, for ``risk``, the priority). Storing an alert
MERGEs on that id, so the same candidate raised twice, by a re-run or by two processes at once,
is one alert. This module is pure: the previous alerts come from the caller
(`ringwatch.graph.alerts.alerted_priorities`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ringwatch.scoring.reasons import Reason, ranked
from ringwatch.scoring.risk import Priority

EntityKind = Literal["subscriber", "ring"]
ENTITY_KINDS: tuple[EntityKind, ...] = ("subscriber", "ring")

RISK_KIND = "risk"
"""The kind of an alert raised by a priority crossing."""

ALERTING_PRIORITIES = frozenset({Priority.P1, Priority.P2, Priority.P3})

DEFAULT_RULE_CODES: frozenset[str] = frozenset({"usage.daily_charge_limit", "ring.created"})
"""Reason codes that raise an alert of their own the first time they fire for an entity."""

RULE_MIN_PRIORITY = Priority.P3
"""A rule hit is worth an analyst's look even when the entity's merged risk is still P4."""

# Kinds are reason codes ("usage.daily_charge_limit"): no ':' so the dedup key is unambiguous.
_KIND = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,127}$")


def dedup_key(entity_kind: EntityKind, kind: str, entity_id: str) -> str:
    """``<entity_kind>:<kind>:<entity_id>``: one alert series per entity and kind."""
    return f"{entity_kind}:{kind}:{entity_id}"


def alert_id(key: str, priority: Priority | None) -> str:
    """Deterministic id: the dedup key, plus the priority for ``risk`` alerts (one per level)."""
    material = key if priority is None else f"{key}\x1f{priority.value}"
    return "alert-" + hashlib.sha256(material.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class AlertCandidate:
    """An alert to raise. `escalated_from` is the priority already alerted for a ``risk`` kind."""

    entity_kind: EntityKind
    entity_id: str
    kind: str
    priority: Priority
    risk: float
    reasons: list[Reason] = field(default_factory=list)
    escalated_from: Priority | None = None

    def __post_init__(self) -> None:
        if self.entity_kind not in ENTITY_KINDS:
            raise ValueError(f"entity_kind must be one of {ENTITY_KINDS}, not {self.entity_kind!r}")
        if not self.entity_id:
            raise ValueError("entity_id must not be empty")
        if not _KIND.match(self.kind):
            raise ValueError(f"alert kind {self.kind!r} is not a reason code")
        if not 0.0 <= self.risk <= 1.0:
            raise ValueError(f"risk must be in [0, 1], not {self.risk}")

    @property
    def dedup_key(self) -> str:
        return dedup_key(self.entity_kind, self.kind, self.entity_id)

    @property
    def id(self) -> str:
        """The stored alert's id: the same candidate always maps to the same alert."""
        return alert_id(self.dedup_key, self.priority if self.kind == RISK_KIND else None)

    @property
    def escalated_from_id(self) -> str | None:
        """The id of the alert this one escalates, if any."""
        if self.escalated_from is None:
            return None
        return alert_id(self.dedup_key, self.escalated_from)

    @property
    def reason_codes(self) -> list[str]:
        return list(dict.fromkeys(reason.code for reason in self.reasons))


def alert_candidates(
    entity_kind: EntityKind,
    entity_id: str,
    *,
    risk: float,
    priority: Priority,
    reasons: Sequence[Reason],
    alerted: Mapping[str, Priority],
    rule_codes: Collection[str] = DEFAULT_RULE_CODES,
    rule_min_priority: Priority = RULE_MIN_PRIORITY,
) -> list[AlertCandidate]:
    """The alerts an entity's new score raises.

    `alerted` maps each kind already alerted for this entity to the highest priority alerted
    for it. A ``risk`` candidate comes when `priority` is P3 or above and higher than what was
    alerted; one candidate per rule code among `reasons` that was never alerted, at `priority`
    or `rule_min_priority`, whichever is more urgent. Reasons are strongest first; a rule
    alert lists the reasons of its own code first.
    """
    strongest = ranked(reasons)
    candidates: list[AlertCandidate] = []
    previous = alerted.get(RISK_KIND)
    if priority in ALERTING_PRIORITIES and (previous is None or priority.rank > previous.rank):
        candidates.append(
            AlertCandidate(entity_kind, entity_id, RISK_KIND, priority, risk, strongest, previous)
        )
    rule_priority = priority if priority.rank >= rule_min_priority.rank else rule_min_priority
    for code in dict.fromkeys(reason.code for reason in strongest):
        if code not in rule_codes or code == RISK_KIND or code in alerted:
            continue
        own = [reason for reason in strongest if reason.code == code]
        others = [reason for reason in strongest if reason.code != code]
        candidates.append(
            AlertCandidate(entity_kind, entity_id, code, rule_priority, risk, own + others)
        )
    return candidates
