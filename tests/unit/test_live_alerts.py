"""Live alerts with fakes: which rings and subscribers are checked, what is raised, and that no
failure in alerting reaches ingestion."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka import Message

from ringwatch.config import USAGE_RULE_CODES, IngestConfig, ScoringConfig, Settings
from ringwatch.graph.alerts import StoredAlert
from ringwatch.graph.db import Record
from ringwatch.graph.live_alerts import LiveAlerter
from ringwatch.graph.rings import RingEvent
from ringwatch.graph.writer import GraphWriter, WriteResult
from ringwatch.ingest.after_batch import AfterBatch
from ringwatch.ingest.events import EventFamily
from ringwatch.ingest.prepare import PreparedEvent, Preparer
from ringwatch.ingest.worker import IngestWorker
from ringwatch.scoring.alerts import RISK_KIND
from ringwatch.scoring.reasons import Reason
from ringwatch.scoring.risk import Priority
from ringwatch.scoring.usage import Component, UsageScore
from tests.factories import T0, identity, prepared, transaction
from tests.unit.fakes import RecordingRunner
from tests.unit.test_worker import FakeConsumer, FakeDeadLetters

CONFIG = ScoringConfig()
DEFAULT_RULES = IngestConfig().live_alert_usage_rules
MS = timedelta(milliseconds=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ms(value: datetime) -> int:
    return (value - EPOCH) // MS


def _member(
    sid: str, *, created: datetime, shared: list[list[Any]], label: str | None = None
) -> dict[str, Any]:
    return {
        "id": sid,
        "label": label,
        "usage_risk": None,
        "created_at": _ms(created),
        "seen": _ms(created),
        "shared": shared,
    }


def _farm(ring_id: str = "R-7", size: int = 4) -> Record:
    """A ring of new accounts opened the same day on one handset."""
    device = ["USES_DEVICE", "356938035640017", size]
    members = [
        _member(f"farm-{n}", created=T0 + timedelta(hours=n), shared=[device]) for n in range(size)
    ]
    return {"id": ring_id, "risk": None, "reasons": None, "members": members}


class Graph:
    """Answers the live-alert statements from canned rows; records every statement."""

    def __init__(
        self,
        *,
        rings: list[Record] | None = None,
        alerted: list[Record] | None = None,
        bounds: list[Record] | None = None,
        rings_of: list[Record] | None = None,
    ) -> None:
        self.rings = rings or []
        self.alerted = alerted or []
        self.bounds = bounds or []
        self.rings_of = rings_of or []
        self.runner = RecordingRunner(responder=self.respond)

    def respond(self, query: str, params: Mapping[str, Any]) -> list[Record]:
        if "MEMBER_OF]->(r)" in query:
            return [
                {**ring, "alerted": self._alerted(ring["id"])}
                for ring in self.rings
                if ring["id"] in params["ids"]
            ]
        if "UsageBucket" in query:
            # One row per subscriber asked about, as the statement answers.
            given = {row["sid"]: row for row in self.bounds}
            return [
                {"spend": 0.0, "around": 0, **given.get(row["sid"], {}), "sid": row["sid"],
                 "alerted": self._alerted(row["sid"])}
                for row in params["rows"]
            ]  # fmt: skip
        if "s.ring_id IS NOT NULL" in query:
            return self.rings_of
        if "MERGE (a:Alert" in query:
            return [{"alert": _stored(row)} for row in params["rows"]]
        if "MATCH (e:" in query:  # raise_alerts: which entities exist
            return [{"id": entity_id} for entity_id in params["ids"]]
        return []

    def _alerted(self, entity_id: str) -> list[list[str]]:
        return [
            [row["kind"], priority]
            for row in self.alerted
            if row["entity_id"] == entity_id
            for priority in row["priorities"]
        ]

    def raised(self) -> list[dict[str, Any]]:
        return [row for q, p in self.runner.writes if "MERGE (a:Alert" in q for row in p["rows"]]


def _stored(row: Mapping[str, Any]) -> dict[str, Any]:
    return {**row, "status": "open", "created_at": T0, "updated_at": T0, "published": False,
            "delivery": "pending"}  # fmt: skip


def _alerter(graph: Graph, rules: frozenset[str] | tuple[str, ...] = DEFAULT_RULES) -> LiveAlerter:
    return LiveAlerter(graph.runner, CONFIG, usage_rules=rules, clock=lambda: T0)


# ------------------------------------------------------------------------------------ rings


def test_a_ring_formed_live_raises_one_risk_alert_with_what_changed() -> None:
    graph = Graph(rings=[_farm()])
    created = RingEvent("R-7", "created", "live", members_added=[f"farm-{n}" for n in range(4)])
    raised = _alerter(graph).check_rings([], WriteResult(identity=4, ring_events=[created]))
    [alert] = raised
    assert (alert.entity_kind, alert.entity_id, alert.kind) == ("ring", "R-7", RISK_KIND)
    assert alert.priority is Priority.P1  # signup burst of new accounts + one handset for four
    assert {"ring.signup_burst", "ring.shared_identifier", "ring.live"} <= set(alert.reason_codes)
    live = next(reason for reason in alert.reasons if reason.code == "ring.live")
    assert live.text == "ring R-7 formed live from 4 subscribers"
    assert "farm-0" not in json.dumps(live.evidence)


def test_a_ring_already_alerted_at_its_priority_raises_nothing() -> None:
    graph = Graph(
        rings=[_farm()],
        alerted=[{"entity_id": "R-7", "kind": RISK_KIND, "priorities": ["P3", "P1"]}],
    )
    grew = RingEvent("R-7", "grew", "live", members_added=["farm-3"])
    assert _alerter(graph).check_rings([], WriteResult(ring_events=[grew])) == []
    assert graph.raised() == []


def test_a_ring_alerted_lower_is_escalated() -> None:
    graph = Graph(
        rings=[_farm()], alerted=[{"entity_id": "R-7", "kind": RISK_KIND, "priorities": ["P3"]}]
    )
    grew = RingEvent("R-7", "grew", "live", members_added=["farm-3"])
    [alert] = _alerter(graph).check_rings([], WriteResult(ring_events=[grew]))
    assert alert.priority is Priority.P1
    assert alert.escalated_from is not None


def test_a_household_ring_is_not_alerted() -> None:
    address = ["HAS_ADDRESS", "12 elm st springfield", 3]
    members = [
        _member(f"home-{n}", created=T0 - timedelta(days=400 * n), shared=[address])
        for n in range(3)
    ]
    graph = Graph(rings=[{"id": "R-2", "risk": None, "reasons": None, "members": members}])
    created = RingEvent("R-2", "created", "live", members_added=["home-0", "home-1", "home-2"])
    assert _alerter(graph).check_rings([], WriteResult(ring_events=[created])) == []


def test_a_higher_batch_risk_stands() -> None:
    ring = _farm("R-9", size=3)
    for member in ring["members"]:  # old accounts: the live formula alone finds little
        member["created_at"] = _ms(T0 - timedelta(days=900))
    ring["members"][0]["shared"] = []
    ring.update(risk=0.9, reasons=json.dumps([{"code": "ring.labelled_fraud", "text": "x",
                                                "weight": 0.9, "evidence": {}}]))  # fmt: skip
    graph = Graph(rings=[ring])
    grew = RingEvent("R-9", "grew", "live", members_added=["farm-2"])
    [alert] = _alerter(graph).check_rings([], WriteResult(ring_events=[grew]))
    assert alert.priority is Priority.P1 and alert.risk == 0.9
    assert alert.reason_codes[0] == "ring.labelled_fraud"
    assert "ring.live" in alert.reason_codes


def test_only_surviving_rings_are_checked_and_redelivery_rechecks_the_batch_rings() -> None:
    graph = Graph(rings_of=[{"ring_id": "R-3"}])
    alerter = _alerter(graph)
    events = [
        RingEvent("R-1", "merged", "live", into_ring="R-2"),  # absorbed: its survivor is checked
        RingEvent("R-2", "merged", "live", from_rings=["R-1"], members_added=["a"]),
        RingEvent("R-4", "created", "live", members_added=["b", "c", "d"]),
    ]
    assert sorted(alerter.rings_to_check([], WriteResult(ring_events=events))) == ["R-2", "R-4"]
    assert graph.runner.reads == []
    batch = prepared(identity("e1", "s1"), identity("e2", "s2"))
    again = alerter.rings_to_check(batch, WriteResult(duplicates=2))
    assert again == {"R-3": []}
    [(query, params)] = graph.runner.reads
    assert params == {"ids": ["s1", "s2"]} and "s1" not in query  # ids only as parameters


# ------------------------------------------------------------------------------------ usage


def _transactions() -> list[PreparedEvent]:
    return prepared(
        transaction("t1", "spender", amount=300.0, hours=1),
        transaction("t2", "spender", amount=300.0, hours=2),
        transaction("t3", "calm", amount=20.0, hours=2),
        transaction("t4", "busy", type="sms", hours=3),
    )


def test_only_subscribers_past_a_bound_are_suspects() -> None:
    graph = Graph(
        bounds=[
            {"sid": "spender", "spend": 600.0, "around": 2},
            {"sid": "calm", "spend": 480.0, "around": 19},
            {"sid": "busy", "spend": 0.0, "around": 20},
        ]
    )
    suspects = _alerter(graph).usage_suspects(_transactions())
    assert sorted(suspects) == ["busy", "spender"]
    spender = suspects["spender"].span
    assert spender.as_of == T0 + timedelta(hours=2) and spender.first == T0 + timedelta(hours=1)
    [(query, params)] = graph.runner.reads
    assert "spender" not in query
    row = next(r for r in params["rows"] if r["sid"] == "spender")
    assert row["as_of"] == _ms(T0 + timedelta(hours=2))
    # The buckets of the day before as well: the 24 h window starts then.
    assert row["day_from"] == _ms(datetime(2026, 10, 31, tzinfo=UTC))
    assert params["hour_ms"] == 3_600_000 and params["burst"] == 20


def test_a_rule_without_a_bound_makes_every_transacting_subscriber_a_suspect() -> None:
    graph = Graph()
    rules = (*DEFAULT_RULES, Component.NEW_DEVICE.code)
    suspects = _alerter(graph, rules).usage_suspects(_transactions())
    assert sorted(suspects) == ["busy", "calm", "spender"]


def _score(risk: float, *reasons: Reason) -> Callable[..., UsageScore]:
    def score(_runner: Any, sid: str, _config: Any, as_of: datetime) -> UsageScore:
        return UsageScore(sid, risk, {}, list(reasons))

    return score


CHARGE = Reason("usage.daily_charge_limit", "charges $600 in the 24 h from ... (limit $500)", 0.6,
                {"spend": 600.0, "limit": 500.0})  # fmt: skip
BURST = Reason("usage.burst", "21 transactions in 1 h from ... (threshold 20)", 0.3)
NEW_IP = Reason("usage.new_ip", "first use of IP ...", 0.1)


def test_a_breach_raises_its_rule_alert_and_no_risk_alert(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ringwatch.graph.live_alerts.usage_score_for", _score(0.7, CHARGE, NEW_IP))
    graph = Graph(bounds=[{"sid": "spender", "spend": 600.0, "around": 2}])
    [alert] = _alerter(graph).check_usage(_transactions())
    assert (alert.entity_id, alert.kind) == ("spender", "usage.daily_charge_limit")
    assert alert.priority is Priority.P2  # the usage risk's band (0.7)
    assert alert.reasons[0] == CHARGE


def test_a_burst_is_at_least_p3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ringwatch.graph.live_alerts.usage_score_for", _score(0.3, BURST))
    graph = Graph(bounds=[{"sid": "busy", "spend": 0.0, "around": 21}])
    [alert] = _alerter(graph).check_usage(_transactions())
    assert (alert.entity_id, alert.kind, alert.priority) == ("busy", "usage.burst", Priority.P3)


def test_subscribers_alerted_on_every_rule_are_not_scored_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def never(*_args: Any) -> UsageScore:
        raise AssertionError("scored again")

    monkeypatch.setattr("ringwatch.graph.live_alerts.usage_score_for", never)
    graph = Graph(
        bounds=[{"sid": "spender", "spend": 600.0, "around": 25}],
        alerted=[
            {"entity_id": "spender", "kind": "usage.daily_charge_limit", "priorities": ["P2"]},
            {"entity_id": "spender", "kind": "usage.burst", "priorities": ["P3"]},
        ],
    )
    assert _alerter(graph).check_usage(_transactions()) == []


def test_a_rule_already_alerted_is_not_raised_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ringwatch.graph.live_alerts.usage_score_for", _score(0.7, CHARGE, BURST))
    graph = Graph(
        bounds=[{"sid": "spender", "spend": 600.0, "around": 25}],
        alerted=[
            {"entity_id": "spender", "kind": "usage.daily_charge_limit", "priorities": ["P2"]}
        ],
    )
    [alert] = _alerter(graph).check_usage(_transactions())
    assert alert.kind == "usage.burst"


def test_unknown_rules_are_refused() -> None:
    with pytest.raises(ValueError, match=r"usage\.typo"):
        _alerter(Graph(), ("usage.typo",))


# ------------------------------------------------------------------------------- settings


def test_usage_rule_codes_are_the_usage_components() -> None:
    assert {component.code for component in Component} == USAGE_RULE_CODES


def test_live_alert_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().ingest.live_alerts is True
    assert DEFAULT_RULES == ("usage.daily_charge_limit", "usage.burst")
    monkeypatch.setenv("RINGWATCH_INGEST__LIVE_ALERTS", "false")
    monkeypatch.setenv("RINGWATCH_INGEST__LIVE_ALERT_USAGE_RULES", "usage.burst, usage.new_ip")
    ingest = Settings().ingest
    assert ingest.live_alerts is False
    assert ingest.live_alert_usage_rules == ("usage.burst", "usage.new_ip")
    monkeypatch.setenv("RINGWATCH_INGEST__LIVE_ALERT_USAGE_RULES", "usage.nope")
    with pytest.raises(ValueError, match="unknown usage rule"):
        Settings()


# ------------------------------------------------------------------------- after the batch


class FakeAlerter:
    """Candidates named by alert id, or an error; `raise_` stores them all."""

    def __init__(self, *, rings: Exception | list[str], usage: Exception | list[str]) -> None:
        self.rings, self.usage = rings, usage
        self.raise_error: Exception | None = None

    @staticmethod
    def _answer(value: Exception | list[str]) -> list[str]:
        if isinstance(value, Exception):
            raise value
        return value

    def ring_alert_candidates(self, _events: Any, _result: Any) -> list[str]:
        return self._answer(self.rings)

    def usage_candidates(self, _events: Any) -> list[str]:
        return self._answer(self.usage)

    def raise_(self, candidates: list[str]) -> list[StoredAlert]:
        if self.raise_error is not None:
            raise self.raise_error
        return [_alert(alert_id) for alert_id in candidates]


def _alert(alert_id: str) -> StoredAlert:
    return StoredAlert(alert_id, "k", "risk", "ring", "R-1", Priority.P1, 0.9, [], [], "open",
                       T0, T0, None, False, "pending")  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _after_batch(
    alerter: FakeAlerter, monkeypatch: pytest.MonkeyPatch, publish: list[Any]
) -> tuple[AfterBatch, Clock]:
    def publish_ids(*args: Any, **_kwargs: Any) -> int:
        outcome = publish.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return int(outcome)

    monkeypatch.setattr("ringwatch.ingest.after_batch.publish_ids", publish_ids)
    clock = Clock()
    after = AfterBatch(
        RecordingRunner(),
        alerter=alerter,  # type: ignore[arg-type]
        producer=object(),  # type: ignore[arg-type]
        alerts_topic="alerts",
        rings_topic=None,
        clock=clock,
    )
    return after, clock


def test_a_failing_check_is_logged_without_values_and_the_other_still_runs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    alerter = FakeAlerter(rings=RuntimeError("subscriber sub-secret-42 broke"), usage=["a-1"])
    after, _ = _after_batch(alerter, monkeypatch, [1])
    with caplog.at_level(logging.WARNING):
        after(prepared(identity("e1", "sub-secret-42")), WriteResult(identity=1))
    assert after.stats.alert_failures == 1 and after.stats.alerts_raised == 1
    assert after.stats.alerts_published == 1 and after.unpublished == set()
    assert "RuntimeError" in caplog.text and "sub-secret-42" not in caplog.text


def test_a_failing_store_is_logged_and_ingestion_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    alerter = FakeAlerter(rings=["a-1"], usage=["a-2"])
    alerter.raise_error = RuntimeError("Neo4j down")
    after, _ = _after_batch(alerter, monkeypatch, [])
    with caplog.at_level(logging.WARNING):
        after([], WriteResult())
    assert after.stats.alert_failures == 1 and after.unpublished == set()
    assert "raising live alerts skipped" in caplog.text


def test_alerts_not_published_are_kept_and_tried_again_after_a_pause(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alerter = FakeAlerter(rings=["a-1"], usage=[])
    after, clock = _after_batch(alerter, monkeypatch, [RuntimeError("broker down"), 2])
    after([], WriteResult())
    assert after.unpublished == {"a-1"} and after.stats.publish_failures == 1
    alerter.rings = ["a-2"]
    after([], WriteResult())  # within the pause: no second wait on the broker
    assert after.unpublished == {"a-1", "a-2"}
    clock.now += 1.5
    alerter.rings = []
    after([], WriteResult())
    assert after.unpublished == set() and after.stats.alerts_published == 2


def test_a_failing_after_write_step_does_not_stop_the_offsets_commit() -> None:
    def respond(_query: str, params: Any) -> list[dict[str, Any]]:
        return [{"id": r.get("event_id")} for r in params.get("rows", [])]

    def broken(_events: Any, _result: Any) -> None:
        raise RuntimeError("boom")

    consumer = FakeConsumer()
    worker = IngestWorker(
        consumer=consumer,  # type: ignore[arg-type]
        writer=GraphWriter(RecordingRunner(responder=respond), hub_cap=50),
        preparer=Preparer(),
        dead_letters=FakeDeadLetters(),  # type: ignore[arg-type]
        topics={"identity": EventFamily.IDENTITY},
        after_write=broken,
    )
    value = json.dumps(identity("e1", "s1")).encode()
    message = Message(topic="identity", partition=0, offset=3, key=b"s1", value=value)
    assert worker.process([message], lambda: False)
    assert [tp.offset for tp in consumer.commits[0]] == [4]
    assert worker.stats.written.identity == 1
