"""Alert candidates: first crossings, escalations, rule hits; ids that make storing idempotent."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from ringwatch.graph.alerts import StoredAlert, raise_alerts
from ringwatch.graph.outbox import OutboxKind, message_value
from ringwatch.scoring.alerts import (
    RISK_KIND,
    AlertCandidate,
    alert_candidates,
    alert_id,
    dedup_key,
)
from ringwatch.scoring.reasons import Reason
from ringwatch.scoring.risk import Priority
from tests.unit.fakes import RecordingRunner

CHARGES = Reason("usage.daily_charge_limit", "charges $640 in 24 h (limit $500)", 0.4)
SHARED = Reason("graph.shared_device", "shares a device with 7 subscribers", 0.6)
RULES = frozenset({"usage.daily_charge_limit", "ring.created"})


def candidates(
    priority: Priority,
    alerted: Mapping[str, Priority] | None = None,
    reasons: Sequence[Reason] = (SHARED,),
    risk: float = 0.6,
) -> list[AlertCandidate]:
    return alert_candidates(
        "subscriber",
        "S-1",
        risk=risk,
        priority=priority,
        reasons=reasons,
        alerted=alerted or {},
        rule_codes=RULES,
    )


@pytest.mark.parametrize("priority", [Priority.P1, Priority.P2, Priority.P3])
def test_a_first_crossing_raises_one_risk_alert(priority: Priority) -> None:
    [candidate] = candidates(priority)
    assert candidate.kind == RISK_KIND
    assert candidate.priority is priority
    assert candidate.escalated_from is None
    assert candidate.escalated_from_id is None
    assert candidate.dedup_key == "subscriber:risk:S-1"
    assert candidate.reasons == [SHARED]


def test_the_same_priority_again_raises_nothing() -> None:
    assert candidates(Priority.P2, {RISK_KIND: Priority.P2}) == []


@pytest.mark.parametrize(
    ("before", "now"),
    [(Priority.P3, Priority.P2), (Priority.P2, Priority.P1), (Priority.P3, Priority.P1)],
)
def test_an_escalation_raises_again_and_names_the_alert_it_escalates(
    before: Priority, now: Priority
) -> None:
    [candidate] = candidates(now, {RISK_KIND: before})
    assert candidate.priority is now
    assert candidate.escalated_from is before
    assert candidate.escalated_from_id == alert_id(candidate.dedup_key, before)
    assert candidate.id != candidate.escalated_from_id


@pytest.mark.parametrize(
    ("before", "now"),
    [(Priority.P1, Priority.P2), (Priority.P1, Priority.P3), (Priority.P2, Priority.P3)],
)
def test_a_de_escalation_raises_nothing(before: Priority, now: Priority) -> None:
    assert candidates(now, {RISK_KIND: before}) == []


def test_p4_never_alerts() -> None:
    assert candidates(Priority.P4, risk=0.1) == []
    assert candidates(Priority.P4, {RISK_KIND: Priority.P3}, risk=0.1) == []


def test_a_rule_code_raises_once_per_entity_and_code() -> None:
    first = candidates(Priority.P4, reasons=[SHARED, CHARGES], risk=0.2)
    assert [(c.kind, c.priority) for c in first] == [("usage.daily_charge_limit", Priority.P3)]
    # The rule's own reason first, then the others by weight.
    assert first[0].reasons == [CHARGES, SHARED]
    again = candidates(
        Priority.P1, {"usage.daily_charge_limit": Priority.P3}, reasons=[CHARGES], risk=0.9
    )
    assert [c.kind for c in again] == [RISK_KIND]


def test_a_rule_alert_takes_the_entity_priority_when_it_is_higher() -> None:
    raised = candidates(Priority.P1, reasons=[CHARGES, CHARGES], risk=0.9)
    assert [(c.kind, c.priority) for c in raised] == [
        (RISK_KIND, Priority.P1),
        ("usage.daily_charge_limit", Priority.P1),
    ]
    rule = raised[1]
    assert rule.reason_codes == ["usage.daily_charge_limit"]
    # A rule alert has one id whatever the priority: it is raised once.
    assert rule.id == alert_id(rule.dedup_key, None)


def test_codes_outside_the_rule_set_raise_nothing_of_their_own() -> None:
    assert candidates(Priority.P4, reasons=[SHARED], risk=0.2) == []


def test_ids_are_deterministic_and_distinct_per_entity_kind_and_priority() -> None:
    a = AlertCandidate("subscriber", "S-1", RISK_KIND, Priority.P2, 0.6)
    assert a.id == AlertCandidate("subscriber", "S-1", RISK_KIND, Priority.P2, 0.7, [SHARED]).id
    others = {
        AlertCandidate("subscriber", "S-1", RISK_KIND, Priority.P1, 0.9).id,
        AlertCandidate("ring", "S-1", RISK_KIND, Priority.P2, 0.6).id,
        AlertCandidate("subscriber", "S-2", RISK_KIND, Priority.P2, 0.6).id,
    }
    assert a.id not in others and len(others) == 3
    assert dedup_key("ring", "ring.created", "R:12") == "ring:ring.created:R:12"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"entity_kind": "account"},
        {"entity_id": ""},
        {"kind": "risk:x"},
        {"kind": "Risk"},
        {"risk": 1.5},
    ],
)
def test_malformed_candidates_are_refused(kwargs: dict[str, Any]) -> None:
    fields: dict[str, Any] = {
        "entity_kind": "subscriber",
        "entity_id": "S-1",
        "kind": RISK_KIND,
        "priority": Priority.P2,
        "risk": 0.6,
    }
    with pytest.raises(ValueError):
        AlertCandidate(**{**fields, **kwargs})


def test_raise_alerts_sends_values_as_parameters_with_labels_from_the_mapping() -> None:
    hostile = "S-1'}) DETACH DELETE (n) //"
    runner = RecordingRunner(
        responder=lambda q, p: [{"id": i} for i in p.get("ids", [])] if "RETURN e.id" in q else []
    )
    now = datetime(2026, 1, 2, tzinfo=UTC)
    raised = raise_alerts(
        runner,
        [
            AlertCandidate("ring", "R-1", RISK_KIND, Priority.P1, 0.9),
            AlertCandidate("subscriber", hostile, RISK_KIND, Priority.P2, 0.6, [SHARED]),
            AlertCandidate("subscriber", hostile, RISK_KIND, Priority.P2, 0.6, [SHARED]),
        ],
        now,
    )
    assert raised == []  # the fake creates nothing
    statements = [q for q, _ in runner.writes]
    assert all(hostile not in q for q in statements)
    merges = [(q, p) for q, p in runner.writes if "MERGE (a:Alert" in q]
    assert {("(e:Subscriber" in q, "(e:Ring" in q) for q, _ in merges} == {
        (True, False),
        (False, True),
    }
    rows = [row for _, p in merges for row in p["rows"]]
    assert len(rows) == 2  # the duplicate candidate is one row
    subscriber_row = next(row for row in rows if row["entity_kind"] == "subscriber")
    assert json.loads(subscriber_row["reasons"])[0]["code"] == SHARED.code
    assert subscriber_row["reason_codes"] == [SHARED.code]


def test_raise_alerts_refuses_a_naive_time() -> None:
    with pytest.raises(ValueError, match="timezone"):
        raise_alerts(RecordingRunner(), [], datetime(2026, 1, 2))


def test_stored_alert_reads_back_reasons_and_times() -> None:
    now = datetime(2026, 1, 2, tzinfo=UTC)
    stored = StoredAlert.from_properties(
        {
            "id": "alert-1",
            "dedup_key": "subscriber:risk:S-1",
            "kind": RISK_KIND,
            "entity_kind": "subscriber",
            "entity_id": "S-1",
            "priority": "P2",
            "risk": 0.6,
            "reasons": json.dumps([SHARED.to_dict()]),
            "reason_codes": [SHARED.code],
            "status": "open",
            "created_at": now,
            "updated_at": now,
            "published": False,
            "delivery": "pending",
            "delivery_next_at": now,
        }
    )
    assert stored.priority is Priority.P2
    assert stored.reasons == [SHARED]
    assert stored.escalated_from is None
    assert stored.extra == {"delivery_next_at": now}


def test_outbox_messages_are_json_with_iso_times_and_no_outbox_bookkeeping() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    value = message_value(
        OutboxKind.ALERT,
        {
            "id": "alert-1",
            "reasons": json.dumps([SHARED.to_dict()]),
            "created_at": at,
            "published": False,
            "published_at": at,
        },
    )
    assert json.loads(value) == {
        "id": "alert-1",
        "reasons": [SHARED.to_dict()],
        "created_at": "2026-01-02T03:04:05+00:00",
    }
    ring_event = message_value(
        OutboxKind.RING_EVENT, {"id": "e-1", "ring_id": "R-1", "members": ["a", "b"], "at": at}
    )
    assert json.loads(ring_event)["members"] == ["a", "b"]
