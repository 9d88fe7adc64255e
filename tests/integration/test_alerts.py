"""Alerts and the outbox on the real stack: one alert per crossing, each published exactly once."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import Consumer, Message

from ringwatch.config import Settings
from ringwatch.graph.alerts import (
    StoredAlert,
    alert_on_score,
    alerted_priorities,
    list_alerts,
    raise_alerts,
)
from ringwatch.graph.db import Neo4jRunner
from ringwatch.graph.outbox import (
    OutboxError,
    OutboxKind,
    create_outbox_producer,
    outbox_topics,
    publish_pending,
)
from ringwatch.graph.schema import migrate
from ringwatch.scoring.alerts import RISK_KIND, AlertCandidate
from ringwatch.scoring.reasons import Reason
from ringwatch.scoring.risk import Priority

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SHARED = Reason("graph.shared_device", "shares device 3567... with 7 subscribers", 0.6)
CHARGES = Reason("usage.daily_charge_limit", "charges $640 in 24 h (limit $500)", 0.4)


@pytest.fixture
def alerts_graph(graph: Neo4jRunner) -> Neo4jRunner:
    """An empty graph with the schema (the unique Alert.id) and a few entities to alert on."""
    migrate(graph)
    graph.write("UNWIND $ids AS id CREATE (:Subscriber {id: id})", {"ids": ["S-1", "S-2", "S-3"]})
    graph.write("CREATE (:Ring {id: 'R-1', size: 3})")
    return graph


def _score(graph: Neo4jRunner, priority: Priority, risk: float, at: datetime) -> list[StoredAlert]:
    return alert_on_score(
        graph,
        "subscriber",
        "S-1",
        risk=risk,
        priority=priority,
        reasons=[SHARED, CHARGES],
        now=at,
    )


def _alert_count(graph: Neo4jRunner) -> int:
    return int(graph.read("MATCH (a:Alert) RETURN count(a) AS n")[0]["n"])


def test_rescoring_the_same_entity_creates_one_alert(alerts_graph: Neo4jRunner) -> None:
    first = _score(alerts_graph, Priority.P2, 0.6, NOW)
    assert sorted((a.kind, a.priority) for a in first) == [
        (RISK_KIND, Priority.P2),
        ("usage.daily_charge_limit", Priority.P2),
    ]
    again = _score(alerts_graph, Priority.P2, 0.62, NOW + timedelta(minutes=5))
    assert again == []
    assert _alert_count(alerts_graph) == 2

    risk = next(a for a in first if a.kind == RISK_KIND)
    assert risk.status == "open" and risk.published is False and risk.delivery == "pending"
    assert risk.created_at == NOW == risk.updated_at
    assert risk.reasons == [SHARED, CHARGES]
    assert risk.reason_codes == [SHARED.code, CHARGES.code]
    about = alerts_graph.read(
        "MATCH (a:Alert {id: $id})-[:ABOUT]->(s:Subscriber) RETURN s.id AS id", {"id": risk.id}
    )
    assert about == [{"id": "S-1"}]
    assert alerted_priorities(alerts_graph, "subscriber", "S-1") == {
        RISK_KIND: Priority.P2,
        "usage.daily_charge_limit": Priority.P2,
    }


def test_escalation_creates_a_second_alert_that_names_the_first(
    alerts_graph: Neo4jRunner,
) -> None:
    def score(priority: Priority, risk: float, hours: int) -> list[StoredAlert]:
        return alert_on_score(
            alerts_graph,
            "subscriber",
            "S-1",
            risk=risk,
            priority=priority,
            reasons=[SHARED],
            now=NOW + timedelta(hours=hours),
        )

    [p3] = score(Priority.P3, 0.35, 0)
    [p1] = score(Priority.P1, 0.9, 1)
    assert (p3.priority, p3.escalated_from) == (Priority.P3, None)
    assert (p1.priority, p1.escalated_from) == (Priority.P1, p3.id)
    assert p1.dedup_key == p3.dedup_key
    # Falling back to P2 and re-crossing to P1 raise nothing more.
    assert score(Priority.P2, 0.6, 2) == []
    assert score(Priority.P1, 0.95, 3) == []
    assert [a.id for a in list_alerts(alerts_graph, entity_id="S-1")] == [p1.id, p3.id]


def test_ring_alerts_and_missing_entities(alerts_graph: Neo4jRunner) -> None:
    created = raise_alerts(
        alerts_graph,
        [
            AlertCandidate("ring", "R-1", "ring.created", Priority.P2, 0.7),
            AlertCandidate("ring", "R-404", "ring.created", Priority.P2, 0.7),
            AlertCandidate("subscriber", "S-404", RISK_KIND, Priority.P1, 0.9),
        ],
        NOW,
    )
    assert [(a.entity_kind, a.entity_id) for a in created] == [("ring", "R-1")]
    about = alerts_graph.read("MATCH (:Alert)-[:ABOUT]->(r:Ring) RETURN r.id AS id")
    assert about == [{"id": "R-1"}]


def test_concurrent_raises_of_the_same_candidate_make_one_node(
    alerts_graph: Neo4jRunner,
) -> None:
    threads = 8
    candidates = [
        AlertCandidate("subscriber", entity, RISK_KIND, priority, 0.9, [SHARED])
        for entity in ("S-1", "S-2", "S-3")
        for priority in (Priority.P3, Priority.P2, Priority.P1)
    ]
    barrier = threading.Barrier(threads)
    runner = Neo4jRunner(alerts_graph.driver)

    def raise_each(_worker: int) -> list[str]:
        created: list[str] = []
        for candidate in candidates:
            # Every worker raises the same candidate at the same moment.
            barrier.wait(timeout=60)
            created.extend(alert.id for alert in raise_alerts(runner, [candidate], NOW))
        return created

    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(raise_each, range(threads)))
    created = [alert_id for result in results for alert_id in result]
    # Every candidate was created by exactly one worker, and exists once with one ABOUT.
    assert sorted(created) == sorted(c.id for c in candidates)
    rows = alerts_graph.read(
        "MATCH (a:Alert) OPTIONAL MATCH (a)-[r:ABOUT]->() "
        "RETURN a.id AS id, count(r) AS about ORDER BY id"
    )
    assert [(row["id"], row["about"]) for row in rows] == sorted((c.id, 1) for c in candidates)

    # Whole batches at once, each worker listing them in another order: one new node.
    batch = [AlertCandidate("ring", "R-1", "ring.created", Priority.P2, 0.7), *candidates]

    def raise_batch(worker: int) -> int:
        rotated = batch[worker % len(batch) :] + batch[: worker % len(batch)]
        barrier.wait(timeout=60)
        return len(raise_alerts(runner, rotated, NOW))

    with ThreadPoolExecutor(threads) as pool:
        assert sum(pool.map(raise_batch, range(threads))) == 1
    assert _alert_count(alerts_graph) == len(candidates) + 1


def test_list_alerts_filters(alerts_graph: Neo4jRunner) -> None:
    raise_alerts(
        alerts_graph,
        [
            AlertCandidate("subscriber", "S-1", RISK_KIND, Priority.P1, 0.9),
            AlertCandidate("subscriber", "S-2", RISK_KIND, Priority.P3, 0.4),
            AlertCandidate("ring", "R-1", "ring.created", Priority.P2, 0.7),
        ],
        NOW,
    )
    assert {a.entity_id for a in list_alerts(alerts_graph)} == {"S-1", "S-2", "R-1"}
    assert [a.entity_id for a in list_alerts(alerts_graph, priority=Priority.P1)] == ["S-1"]
    assert [a.entity_id for a in list_alerts(alerts_graph, entity_kind="ring")] == ["R-1"]
    assert [a.entity_id for a in list_alerts(alerts_graph, kind="ring.created")] == ["R-1"]
    assert list_alerts(alerts_graph, status="resolved") == []
    assert len(list_alerts(alerts_graph, status="open", limit=2)) == 2


def _consume(settings: Settings, topic: str, group: str, idle_s: float) -> list[Message]:
    """Everything on the topic: reads until nothing new has arrived for `idle_s`."""
    consumer = Consumer(
        {
            **settings.kafka.librdkafka(),
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    received: list[Message] = []
    try:
        idle = 0.0
        while idle < idle_s:
            message = consumer.poll(0.5)
            if message is None:
                idle += 0.5
                continue
            assert message.error() is None, message.error()
            received.append(message)
            idle = 0.0
    finally:
        consumer.close()
    return received


def test_outbox_publishes_each_pending_alert_exactly_once(
    alerts_graph: Neo4jRunner,
    settings: Settings,
    kafka_topic: Callable[..., str],
    unique_name: Callable[[str], str],
) -> None:
    topic = kafka_topic("alerts", partitions=3)
    created = raise_alerts(
        alerts_graph,
        [
            AlertCandidate("subscriber", entity, RISK_KIND, priority, 0.9, [SHARED, CHARGES])
            for entity in ("S-1", "S-2", "S-3")
            for priority in (Priority.P2, Priority.P1)
        ]
        + [AlertCandidate("ring", "R-1", "ring.created", Priority.P2, 0.7)],
        NOW,
    )
    assert len(created) == 7
    producer = create_outbox_producer(settings.kafka)
    # Batches smaller than the backlog: the publisher drains them all.
    assert publish_pending(alerts_graph, producer, OutboxKind.ALERT, topic, batch_size=3) == 7
    assert publish_pending(alerts_graph, producer, "Alert", topic, batch_size=3) == 0

    messages = _consume(settings, topic, unique_name("group"), idle_s=5.0)
    by_id = {json.loads(m.value() or b"")["id"]: m for m in messages}
    assert len(messages) == len(by_id) == 7
    assert set(by_id) == {a.id for a in created}
    for alert in created:
        message = by_id[alert.id]
        assert message.key() == alert.entity_id.encode()
        assert dict(message.headers() or []) == {
            "ringwatch.type": b"Alert",
            "ringwatch.id": alert.id.encode(),
        }
        body = json.loads(message.value() or b"")
        assert body["priority"] == alert.priority.value
        assert body["created_at"] == "2026-03-01T12:00:00+00:00"
        assert "published" not in body
        if alert.kind == RISK_KIND:
            assert [r["code"] for r in body["reasons"]] == [SHARED.code, CHARGES.code]
    # One partition per entity: its alerts keep their order.
    partitions: dict[bytes, set[int | None]] = {}
    for message in messages:
        partitions.setdefault(message.key() or b"", set()).add(message.partition())
    assert all(len(found) == 1 for found in partitions.values())

    stored = list_alerts(alerts_graph)
    assert all(a.published and a.published_at is not None for a in stored)
    assert all(a.delivery == "pending" for a in stored)  # webhooks are a separate outbox

    # A new alert later: only it is sent.
    late = AlertCandidate(
        "subscriber", "S-1", "usage.daily_charge_limit", Priority.P3, 0.4, [CHARGES]
    )
    assert [a.id for a in raise_alerts(alerts_graph, [late], NOW)] == [late.id]
    assert publish_pending(alerts_graph, producer, OutboxKind.ALERT, topic) == 1
    everything = _consume(settings, topic, unique_name("group"), idle_s=3.0)
    assert sorted(json.loads(m.value() or b"")["id"] for m in everything) == sorted(
        [*by_id, late.id]
    )


def test_outbox_publishes_ring_events_with_all_their_properties(
    alerts_graph: Neo4jRunner,
    settings: Settings,
    kafka_topic: Callable[..., str],
    unique_name: Callable[[str], str],
) -> None:
    topic = kafka_topic("rings")
    alerts_graph.write(
        "UNWIND range(1, 4) AS i "
        "CREATE (:RingEvent {id: 'ev-' + i, ring_id: 'R-1', kind: 'grew', size: 2 + i, "
        "members: ['S-1', 'S-2'], at: $at + duration({minutes: i}), published: false})",
        {"at": NOW},
    )
    alerts_graph.write("CREATE (:RingEvent {id: 'ev-0', ring_id: 'R-1', published: true})")
    producer = create_outbox_producer(settings.kafka)
    assert publish_pending(alerts_graph, producer, OutboxKind.RING_EVENT, topic, 2) == 4
    assert publish_pending(alerts_graph, producer, OutboxKind.RING_EVENT, topic, 2) == 0
    messages = _consume(settings, topic, unique_name("group"), idle_s=5.0)
    bodies = [json.loads(m.value() or b"") for m in messages]
    assert [b["id"] for b in bodies] == ["ev-1", "ev-2", "ev-3", "ev-4"]  # one partition: in order
    assert bodies[0] == {
        "id": "ev-1",
        "ring_id": "R-1",
        "kind": "grew",
        "size": 3,
        "members": ["S-1", "S-2"],
        "at": "2026-03-01T12:01:00+00:00",
    }
    assert {m.key() for m in messages} == {b"R-1"}
    assert outbox_topics(settings.kafka)[OutboxKind.RING_EVENT] == settings.kafka.topic_rings


def test_unacknowledged_messages_stay_pending(
    alerts_graph: Neo4jRunner, settings: Settings
) -> None:
    raise_alerts(
        alerts_graph, [AlertCandidate("subscriber", "S-1", RISK_KIND, Priority.P1, 0.9)], NOW
    )
    # A broker nobody listens on: no message can be acknowledged.
    unreachable = settings.kafka.model_copy(update={"bootstrap_servers": "127.0.0.1:1"})
    producer = create_outbox_producer(unreachable, {"message.timeout.ms": 1500})
    with pytest.raises(OutboxError, match="1 failed"):
        publish_pending(alerts_graph, producer, OutboxKind.ALERT, "ringwatch.alerts", 10)
    [alert] = list_alerts(alerts_graph)
    assert alert.published is False and alert.published_at is None


def test_unknown_outbox_kinds_are_refused(alerts_graph: Neo4jRunner, settings: Settings) -> None:
    producer = create_outbox_producer(settings.kafka)
    with pytest.raises(ValueError):
        publish_pending(alerts_graph, producer, "Subscriber", "ringwatch.alerts", 10)
