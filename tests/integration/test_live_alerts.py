"""Live alerts from the Kafka ingest worker on the real stack.

Identity events that form a ring and transactions that break the daily charge limit and the
burst rule go through Kafka; the worker must raise exactly one alert per entity and kind, in
the graph and on the alerts topic, and nothing more when the same events are delivered again.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer

from ringwatch.config import Settings
from ringwatch.graph.alerts import StoredAlert, list_alerts
from ringwatch.graph.db import Neo4jRunner
from ringwatch.ingest.kafka import ensure_topics
from ringwatch.ingest.normalize import luhn_check_digit
from ringwatch.scoring.alerts import RISK_KIND
from ringwatch.scoring.risk import Priority
from tests.factories import identity, transaction
from tests.integration.test_ingest_kafka import WorkerThread, lag, produce, wait_for

Payload = dict[str, Any]
YEAR_H = 24 * 365


def _imei(body: str) -> str:
    return body + luhn_check_digit(body)


def scenario() -> list[Payload]:
    """A ring of new accounts, a household, a big spender, a burst and ordinary subscribers."""
    events: list[Payload] = []
    farm_device = _imei("35693803564001")
    for n in range(4):  # four accounts opened within the hour on one handset: a ring
        events.append(
            identity(f"reg-farm-{n}", f"farm-{n}", hours=n * 0.1, devices=[farm_device],
                     emails=[f"farm{n}@example.com"])
        )  # fmt: skip
    for n in range(3):  # a family at one address, accounts years apart: a ring, not a risk
        events.append(
            identity(f"reg-home-{n}", f"home-{n}", hours=-(n + 1) * YEAR_H,
                     addresses=["12 Elm Street, Springfield"], emails=[f"home{n}@example.com"])
        )  # fmt: skip
    for n in range(5):
        sid = f"plain-{n}"
        events.append(identity(f"reg-plain-{n}", sid, hours=-YEAR_H, emails=[f"p{n}@example.com"]))
        events.extend(
            transaction(f"plain-{n}-{t}", sid, type="payment", hours=1 + t, amount=40.0)
            for t in range(3)
        )
    # $600 of charges within three hours: over the $500 daily limit.
    events.append(identity("reg-spender", "spender", hours=-YEAR_H, emails=["s@example.com"]))
    events.extend(
        transaction(f"spend-{t}", "spender", type="payment", hours=1 + t, amount=200.0)
        for t in range(3)
    )
    # 24 texts in under half an hour: a burst (threshold 20 an hour).
    events.append(identity("reg-burst", "burster", hours=-YEAR_H, emails=["b@example.com"]))
    events.extend(
        transaction(f"sms-{t}", "burster", type="sms", hours=2 + t * 0.02) for t in range(24)
    )
    return events


@pytest.fixture
def live_settings(settings: Settings, unique_name: Callable[[str], str]) -> Iterator[Settings]:
    base = unique_name("live")
    kafka = settings.kafka.under_prefix(base)
    ensure_topics(kafka, kafka.topics(), partitions=3)
    # Small batches: the ring and the breaches build up over several batches.
    yield settings.model_copy(
        update={
            "kafka": kafka,
            "ingest": settings.ingest.model_copy(update={"batch_size": 7}),
        }
    )


class AlertsTopic:
    """Reads the alerts topic from the start, keeping every message."""

    def __init__(self, settings: Settings) -> None:
        self.consumer = Consumer(
            {
                **settings.kafka.librdkafka(),
                "group.id": settings.kafka.consumer_group + "-alerts",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        self.consumer.subscribe([settings.kafka.topic_alerts])
        self.messages: list[dict[str, Any]] = []

    def read(self, *, until: Callable[[], bool], quiet_s: float, timeout_s: float = 120) -> None:
        """Poll until `until()` holds and then nothing arrived for `quiet_s` seconds."""
        deadline = time.monotonic() + timeout_s
        last = time.monotonic()
        while time.monotonic() < deadline:
            message = self.consumer.poll(0.2)
            if message is not None and message.error() is None:
                value = message.value()
                assert value is not None
                self.messages.append(json.loads(value))
                last = time.monotonic()
            elif until() and time.monotonic() - last >= quiet_s:
                return
        raise AssertionError(f"alerts topic: {len(self.messages)} messages, condition not met")

    def close(self) -> None:
        self.consumer.close()


def _keys(alerts: list[StoredAlert]) -> Counter[tuple[str, str, str]]:
    return Counter((a.entity_kind, a.entity_id, a.kind) for a in alerts)


def test_ring_and_usage_alerts_are_raised_once_and_not_again_on_redelivery(
    graph: Neo4jRunner, live_settings: Settings
) -> None:
    events = scenario()
    produce(live_settings, events)
    topic = AlertsTopic(live_settings)
    try:
        with WorkerThread(live_settings):
            wait_for(lambda: lag(live_settings) == 0, what="the worker to catch up")
            topic.read(until=lambda: len(topic.messages) >= 3, quiet_s=3)

            farm_ring = graph.read(
                "MATCH (:Subscriber {id: 'farm-0'})-[:MEMBER_OF]->(r:Ring) RETURN r.id AS id"
            )[0]["id"]
            home_ring = graph.read(
                "MATCH (:Subscriber {id: 'home-0'})-[:MEMBER_OF]->(r:Ring) RETURN r.id AS id"
            )[0]["id"]
            first = list_alerts(graph)
            expected = Counter(
                {
                    ("ring", farm_ring, RISK_KIND): 1,
                    ("subscriber", "spender", "usage.daily_charge_limit"): 1,
                    ("subscriber", "burster", "usage.burst"): 1,
                }
            )
            assert _keys(first) == expected
            assert home_ring != farm_ring  # the household is a ring, but not a risky one
            on_topic = Counter(
                (m["entity_kind"], m["entity_id"], m["kind"]) for m in topic.messages
            )
            assert on_topic == expected
            assert all(alert.published for alert in list_alerts(graph))

            # The same events again: nothing new in the graph, nothing new on the topic.
            produce(live_settings, events)
            wait_for(lambda: lag(live_settings) == 0, what="the redelivery to be consumed")
            topic.read(until=lambda: True, quiet_s=4)
        assert _keys(list_alerts(graph)) == expected
        assert len(topic.messages) == 3
    finally:
        topic.close()

    by_kind = {alert.kind: alert for alert in first}
    ring = by_kind[RISK_KIND]
    assert ring.priority is Priority.P1
    codes = ring.reason_codes
    assert "ring.signup_burst" in codes and "ring.shared_identifier" in codes
    assert "ring.live" in codes
    live = next(r for r in ring.reasons if r.code == "ring.live")
    # Raised as soon as the ring formed: with three members or, if one batch brought all four,
    # with four; growing to four later changed nothing (still P1).
    assert live.evidence["size"] in (3, 4) and live.evidence["changes"][0] == "created"

    charge = by_kind["usage.daily_charge_limit"]
    assert charge.priority in (Priority.P1, Priority.P2)
    reason = charge.reasons[0]
    assert reason.code == "usage.daily_charge_limit"
    assert reason.evidence["spend"] == 600.0 and reason.evidence["limit"] == 500.0
    assert "$600" in reason.text and "in the 24 h from" in reason.text
    assert "(limit $500)" in reason.text

    burst = by_kind["usage.burst"]
    assert burst.priority is Priority.P3  # a rule hit is at least P3
    assert burst.reasons[0].code == "usage.burst"
    # Raised by the batch that crossed the threshold, counting what was stored by then.
    count = burst.reasons[0].evidence["count"]
    assert 20 <= count <= 24
    assert f"{count} transactions in 1 h" in burst.reasons[0].text

    message = next(m for m in topic.messages if m["kind"] == "usage.daily_charge_limit")
    assert message["reasons"][0]["evidence"]["spend"] == 600.0  # reasons as JSON, not a string


def test_no_live_alerts_when_switched_off(graph: Neo4jRunner, live_settings: Settings) -> None:
    off = live_settings.model_copy(
        update={"ingest": live_settings.ingest.model_copy(update={"live_alerts": False})}
    )
    produce(off, scenario())
    with WorkerThread(off):
        wait_for(lambda: lag(off) == 0, what="the worker to catch up")
    assert list_alerts(graph) == []
    # Rings are still tracked live.
    assert graph.read("MATCH (r:Ring) RETURN count(r) AS n")[0]["n"] == 2
