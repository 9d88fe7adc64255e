"""A durable outbox in the graph, published to Kafka.

Nodes that other parts of ringwatch must announce are written with ``published = false`` in
the same transaction as the change they describe: alerts (`ringwatch.graph.alerts`) and ring
lineage events (``(:RingEvent {id, ring_id, kind, at, published: false, ...})``). The publisher
reads pending nodes in batches, sends each as one JSON message keyed by the entity (alerts) or
ring (ring events), waits for the broker's acknowledgement of each, and only then sets
``published = true, published_at``. A crash at any point leaves unconfirmed nodes pending, so
they are sent again: delivery is at least once, and consumers deduplicate on the id (value field
``id`` and header ``ringwatch.id``). Run one publisher per kind to keep repeats to crashes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from enum import StrEnum
from typing import Any, LiteralString

from confluent_kafka import KafkaError, Message, Producer

from ringwatch.config import KafkaConfig
from ringwatch.graph.db import QueryRunner
from ringwatch.graph.exceptions import GraphError

log = logging.getLogger(__name__)


class OutboxKind(StrEnum):
    """Node labels that carry an outbox."""

    ALERT = "Alert"
    RING_EVENT = "RingEvent"


class OutboxError(GraphError):
    """Some pending nodes could not be published; they stay pending."""


@dataclass(frozen=True)
class _Outbox:
    pending: LiteralString
    pending_of: LiteralString  # the given ids that are still pending
    mark: LiteralString
    key_property: str
    json_properties: tuple[str, ...] = ()


# Labels are literals of these statements, picked by `OutboxKind`, never formatted from input.
_OUTBOXES: dict[OutboxKind, _Outbox] = {
    OutboxKind.ALERT: _Outbox(
        pending="""
MATCH (n:Alert) WHERE n.published = false
WITH n ORDER BY n.created_at, n.id LIMIT $limit
RETURN n {.*} AS node
""",
        pending_of="""
UNWIND $ids AS id
MATCH (n:Alert {id: id}) WHERE n.published = false
RETURN n {.*} AS node ORDER BY n.created_at, n.id
""",
        mark="""
UNWIND $ids AS id
MATCH (n:Alert {id: id}) WHERE n.published = false
SET n.published = true, n.published_at = $now
RETURN count(n) AS marked
""",
        key_property="entity_id",
        json_properties=("reasons",),
    ),
    OutboxKind.RING_EVENT: _Outbox(
        pending="""
MATCH (n:RingEvent) WHERE n.published = false
WITH n ORDER BY n.at, n.id LIMIT $limit
RETURN n {.*} AS node
""",
        pending_of="""
UNWIND $ids AS id
MATCH (n:RingEvent {id: id}) WHERE n.published = false
RETURN n {.*} AS node ORDER BY n.at, n.id
""",
        mark="""
UNWIND $ids AS id
MATCH (n:RingEvent {id: id}) WHERE n.published = false
SET n.published = true, n.published_at = $now
RETURN count(n) AS marked
""",
        key_property="ring_id",
    ),
}

# Outbox bookkeeping: what the publisher itself writes is not part of the message.
_BOOKKEEPING = frozenset({"published", "published_at"})


def outbox_topics(config: KafkaConfig) -> dict[OutboxKind, str]:
    """Each outbox kind -> the topic it is published on."""
    return {OutboxKind.ALERT: config.topic_alerts, OutboxKind.RING_EVENT: config.topic_rings}


def create_outbox_producer(
    config: KafkaConfig, extra: Mapping[str, str | int | float | bool] | None = None
) -> Producer:
    """A producer that confirms a message only once every in-sync replica has it."""
    return Producer(
        {
            **config.librdkafka(),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            **(extra or {}),
        }
    )


def _jsonable(value: Any) -> Any:
    """Temporal values as ISO-8601 strings; lists element by element."""
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if hasattr(value, "to_native") and not hasattr(value, "months"):
        # neo4j.time.DateTime, Date, Time (a Duration has months and stays ISO below).
        value = value.to_native()
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if hasattr(value, "iso_format"):
        return value.iso_format()
    return value


def message_value(kind: OutboxKind, properties: Mapping[str, Any]) -> bytes:
    """The JSON message for one node: its properties, temporal values as ISO-8601."""
    outbox = _OUTBOXES[kind]
    body: dict[str, Any] = {}
    for name in sorted(properties):
        if name in _BOOKKEEPING:
            continue
        value = properties[name]
        if name in outbox.json_properties and isinstance(value, str):
            # Stored as a JSON string because Neo4j properties cannot hold maps.
            value = json.loads(value)
        body[name] = _jsonable(value)
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def publish_pending(
    runner: QueryRunner,
    producer: Producer,
    kind: OutboxKind | str,
    topic: str,
    batch_size: int = 500,
    *,
    flush_timeout_s: float = 30.0,
) -> int:
    """Publish every pending node of `kind` to `topic`; returns how many were published.

    Works in batches of `batch_size` until nothing is pending. A node is marked published only
    after the broker acknowledged its message. If some messages of a batch are not
    acknowledged, the acknowledged ones are marked, the rest stay pending, and `OutboxError`
    is raised.
    """
    outbox_kind = OutboxKind(kind)
    outbox = _OUTBOXES[outbox_kind]
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    published = 0
    while True:
        # Read on the writer: a lagging read replica would hand back nodes just marked.
        rows = runner.write(outbox.pending, {"limit": batch_size})
        if not rows:
            return published
        marked = _publish_rows(runner, producer, outbox_kind, topic, rows, flush_timeout_s)
        published += marked
        log.debug("published %d %s to %s", marked, outbox_kind.value, topic)
        if marked < len(rows):
            # Another publisher marked some of them first: it is draining the same outbox.
            return published


def publish_ids(
    runner: QueryRunner,
    producer: Producer,
    kind: OutboxKind | str,
    topic: str,
    ids: Collection[str],
    *,
    flush_timeout_s: float = 30.0,
) -> int:
    """Publish the given nodes of `kind` that are still pending; returns how many.

    For a process that publishes what it has just written itself (the ingest worker's live
    alerts): several such processes never send each other's nodes, so they do not repeat each
    other's messages the way several `publish_pending` drains of one outbox can. Failures are
    reported as by `publish_pending`; the nodes not acknowledged stay pending.
    """
    outbox_kind = OutboxKind(kind)
    outbox = _OUTBOXES[outbox_kind]
    if not ids:
        return 0
    rows = runner.write(outbox.pending_of, {"ids": sorted(set(ids))})
    if not rows:
        return 0
    return _publish_rows(runner, producer, outbox_kind, topic, rows, flush_timeout_s)


def _publish_rows(
    runner: QueryRunner,
    producer: Producer,
    kind: OutboxKind,
    topic: str,
    rows: list[dict[str, Any]],
    flush_timeout_s: float,
) -> int:
    """Send the rows' nodes, mark the acknowledged ones; raise `OutboxError` for the rest."""
    confirmed, failures, unsent = _send(
        producer, kind, topic, [row["node"] for row in rows], flush_timeout_s
    )
    marked = 0
    if confirmed:
        result = runner.write(
            _OUTBOXES[kind].mark, {"ids": sorted(set(confirmed)), "now": datetime.now(UTC)}
        )
        marked = int(result[0]["marked"]) if result else 0
    if failures or unsent:
        raise OutboxError(
            f"{kind.value} outbox on {topic}: {len(confirmed)} published, "
            f"{len(failures)} failed, {unsent} unacknowledged; the rest stay pending"
            + (f" (first failure {failures[0]})" if failures else "")
        )
    return marked


def _produce(producer: Producer, topic: str, **kwargs: Any) -> None:
    while True:
        try:
            producer.produce(topic, **kwargs)
            break
        except BufferError:
            # Local queue full: let librdkafka send some, then try again.
            producer.poll(0.1)
    producer.poll(0)


def _send(
    producer: Producer,
    kind: OutboxKind,
    topic: str,
    nodes: list[Mapping[str, Any]],
    flush_timeout_s: float,
) -> tuple[list[str], list[str], int]:
    """Produce one message per node and wait: (acknowledged ids, failures, still queued)."""
    key_property = _OUTBOXES[kind].key_property
    confirmed: list[str] = []
    failures: list[str] = []

    def on_delivery(node_id: str) -> Callable[[KafkaError | None, Message], None]:
        def report(error: KafkaError | None, _message: Message) -> None:
            if error is None:
                confirmed.append(node_id)
            else:
                failures.append(f"{node_id}: {error}")

        return report

    for node in nodes:
        node_id = str(node["id"])
        key = node.get(key_property)
        _produce(
            producer,
            topic,
            key=None if key is None else str(key).encode(),
            value=message_value(kind, node),
            headers=[("ringwatch.type", kind.value.encode()), ("ringwatch.id", node_id.encode())],
            on_delivery=on_delivery(node_id),
        )
    unsent = int(producer.flush(flush_timeout_s))
    return confirmed, failures, unsent
