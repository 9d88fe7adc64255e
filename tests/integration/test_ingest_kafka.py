"""Kafka -> Neo4j ingest on the real stack: exact, idempotent, crash-safe, and bad input kept.

Expected graphs are computed by writing the same events straight through the graph writer into
the emptied database; the Kafka path must then produce exactly the same graph.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from ringwatch.config import ScoringConfig, Settings, StackConfig
from ringwatch.graph.db import Neo4jRunner
from ringwatch.graph.rings import live_tracker
from ringwatch.graph.schema import migrate
from ringwatch.graph.writer import GraphWriter
from ringwatch.ingest.kafka import EventProducer, ensure_topics
from ringwatch.ingest.run import consumer_config, run_worker
from ringwatch.stack import manager
from ringwatch.stack.servers import Neo4jServer
from tests.factories import family_of, identity, label, prepared, transaction
from tests.integration.test_writer import _snapshot

Payload = dict[str, Any]


def population(subscribers: int, transactions_each: int) -> list[Payload]:
    """Deterministic events; amounts are multiples of 0.25 so float sums are exact in any order."""
    events: list[Payload] = []
    for s in range(subscribers):
        sid = f"sub-{s:04d}"
        ring = s // 4  # groups of four share a device, like a small ring
        events.append(
            identity(
                f"reg-{s}",
                sid,
                hours=s * 0.01,
                devices=[f"35693803564{ring:04d}"[:14] + "0"],
                emails=[f"user{s}@example.com"],
                ips=[f"10.1.{ring % 250}.{s % 250}"],
            )
        )
        for t in range(transactions_each):
            kind = ("payment", "call", "data_usage", "topup")[t % 4]
            events.append(
                transaction(
                    f"tx-{s}-{t}", sid, type=kind, hours=1 + t * 0.5, amount=0.25 * (t + s % 7)
                )
            )
        if s % 10 == 0:
            events.append(label(f"lab-{s}", sid, "fraud", hours=100))
    return events


def _fix_device_ids(events: list[Payload]) -> list[Payload]:
    # IMEIs need a valid Luhn digit: derive one per ring with the product's own helper.
    from ringwatch.ingest.normalize import luhn_check_digit

    for event in events:
        devices = event.get("identifiers", {}).get("devices")
        if devices:
            body = devices[0][:14]
            devices[0] = body + luhn_check_digit(body)
    return events


@pytest.fixture
def ingest_settings(settings: Settings, unique_name: Callable[[str], str]) -> Iterator[Settings]:
    """Settings with topics and a consumer group that no other test uses."""
    base = unique_name("it")
    kafka = settings.kafka.under_prefix(base)
    scoped = settings.model_copy(
        update={
            "kafka": kafka,
            "ingest": settings.ingest.model_copy(update={"batch_size": 200, "topic_partitions": 3}),
        }
    )
    ensure_topics(
        kafka,
        [
            kafka.topic_identity,
            kafka.topic_transactions,
            kafka.topic_labels,
            kafka.topic_dead_letter,
        ],
        partitions=3,
    )
    yield scoped


def produce(
    settings: Settings, payloads: Sequence[Payload | bytes], family_topic: str | None = None
) -> None:
    producer = EventProducer(settings.kafka)
    kafka = settings.kafka
    topics = {"identity": kafka.topic_identity, "transactions": kafka.topic_transactions,
              "labels": kafka.topic_labels}  # fmt: skip
    for payload in payloads:
        if isinstance(payload, bytes):
            assert family_topic is not None
            producer.publish(family_topic, payload, b"raw")
            continue
        topic = topics[family_of(payload).value]
        producer.publish(topic, json.dumps(payload).encode(), payload["subscriber_id"])
    assert producer.flush(60) == 0


def expected_snapshot(graph: Neo4jRunner, payloads: list[Payload], hub_cap: int) -> dict[str, Any]:
    migrate(graph)
    tracker, ring_types = live_tracker(ScoringConfig(hub_cap=hub_cap))
    # The worker tracks rings live; so does the reference writer.
    GraphWriter(graph, hub_cap=hub_cap, ring_tracker=tracker, ring_link_types=ring_types).write(
        prepared(*payloads)
    )
    snapshot = _snapshot(graph)
    graph.write("MATCH (n) DETACH DELETE n")
    return snapshot


_COORDINATOR_NOT_READY = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
}


def lag(settings: Settings) -> int:
    """Messages not yet committed by the group; -1 while the broker cannot tell yet."""
    try:
        return _lag(settings)
    except KafkaException as exc:
        # A broker that just started answers NOT_COORDINATOR until its offsets topic is ready.
        if exc.args and exc.args[0].code() in _COORDINATOR_NOT_READY:
            return -1
        raise


def _lag(settings: Settings) -> int:
    consumer = Consumer(consumer_config(settings))
    kafka = settings.kafka
    try:
        total = 0
        for topic in (kafka.topic_identity, kafka.topic_transactions, kafka.topic_labels):
            metadata = consumer.list_topics(topic, timeout=10).topics[topic]
            partitions = [TopicPartition(topic, p) for p in metadata.partitions]
            committed = consumer.committed(partitions, timeout=10)
            for tp in committed:
                _, high = consumer.get_watermark_offsets(tp, timeout=10)
                total += high - max(tp.offset, 0)
        return total
    finally:
        consumer.close()


def wait_for(
    condition: Callable[[], bool], timeout_s: float = 120, what: str = "", every_s: float = 0.3
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every_s)
    raise AssertionError(f"timed out waiting for {what}")


def _count(graph: Neo4jRunner, label_name: str) -> int:
    rows = graph.read(
        "MATCH (n) WHERE $label IN labels(n) RETURN count(n) AS n", {"label": label_name}
    )
    return int(rows[0]["n"])


class WorkerThread:
    """An in-process worker, stopped the way SIGTERM stops it (finish batch, commit, exit)."""

    def __init__(self, settings: Settings) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=run_worker, args=(settings, self.stop), daemon=True)

    def __enter__(self) -> WorkerThread:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive()


def test_events_land_exactly_and_a_second_delivery_changes_nothing(
    graph: Neo4jRunner, ingest_settings: Settings
) -> None:
    payloads = _fix_device_ids(population(40, 6))
    expected = expected_snapshot(graph, payloads, ingest_settings.scoring.hub_cap)
    produce(ingest_settings, payloads)
    with WorkerThread(ingest_settings):
        wait_for(lambda: lag(ingest_settings) == 0, what="the worker to catch up")
        assert _snapshot(graph) == expected
        produce(ingest_settings, payloads)  # the same events delivered again
        wait_for(lambda: lag(ingest_settings) == 0, what="the redelivery to be consumed")
    assert _snapshot(graph) == expected


def _worker_process(
    settings: Settings, workers: int = 1, batch_size: int = 100
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "RINGWATCH_NEO4J__URI": settings.neo4j.uri,
        **settings.kafka.environment(),
        "RINGWATCH_INGEST__BATCH_SIZE": str(batch_size),
        "RINGWATCH_INGEST__TOPIC_PARTITIONS": "3",
        "RINGWATCH_INGEST__WORKERS": str(workers),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "ringwatch", "ingest", "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.mark.parametrize("kill_at", [0.15, 0.5, 0.85])
def test_worker_killed_mid_stream_and_restarted_ends_exact(
    graph: Neo4jRunner, ingest_settings: Settings, kill_at: float
) -> None:
    # Enough small batches that even a fast machine is still writing when the kill comes.
    payloads = _fix_device_ids(population(100, 30))
    total_tx = sum(1 for p in payloads if "transaction_id" in p)
    expected = expected_snapshot(graph, payloads, ingest_settings.scoring.hub_cap)
    produce(ingest_settings, payloads)

    first = _worker_process(ingest_settings, batch_size=10)
    try:
        wait_for(
            lambda: _count(graph, "Transaction") >= kill_at * total_tx,
            what=f"{kill_at:.0%} of the transactions",
            every_s=0.02,
        )
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    assert _count(graph, "Transaction") < total_tx or kill_at > 0.8

    second = _worker_process(ingest_settings)
    try:
        wait_for(lambda: lag(ingest_settings) == 0, timeout_s=180, what="the restarted worker")
    finally:
        second.send_signal(signal.SIGTERM)
        _, stderr = second.communicate(timeout=60)
    assert second.returncode == 0, stderr.decode()[-2000:]
    assert _snapshot(graph) == expected


def test_two_worker_processes_share_the_partitions_and_end_exact(
    graph: Neo4jRunner, ingest_settings: Settings
) -> None:
    payloads = _fix_device_ids(population(60, 10))
    expected = expected_snapshot(graph, payloads, ingest_settings.scoring.hub_cap)
    produce(ingest_settings, payloads)
    workers = _worker_process(ingest_settings, workers=2)
    try:
        wait_for(lambda: lag(ingest_settings) == 0, timeout_s=180, what="two workers to catch up")
    finally:
        workers.send_signal(signal.SIGTERM)
        _, stderr = workers.communicate(timeout=60)
    assert workers.returncode == 0, stderr.decode()[-2000:]
    assert _snapshot(graph) == expected


def test_neo4j_restarted_mid_stream_loses_nothing(
    graph: Neo4jRunner, ingest_settings: Settings, stack: StackConfig
) -> None:
    payloads = _fix_device_ids(population(60, 20))
    total_tx = sum(1 for p in payloads if "transaction_id" in p)
    expected = expected_snapshot(graph, payloads, ingest_settings.scoring.hub_cap)
    produce(ingest_settings, payloads)
    with WorkerThread(ingest_settings):
        wait_for(lambda: _count(graph, "Transaction") >= total_tx * 0.3, what="30% written")
        Neo4jServer(stack).process.stop()
        manager.up(stack)  # starts Neo4j again; Kafka is still running and left alone
        wait_for(lambda: lag(ingest_settings) == 0, timeout_s=180, what="catching up after restart")
    assert _snapshot(graph) == expected


def _dead_letters(settings: Settings, expected: int) -> list[dict[str, Any]]:
    consumer = Consumer(
        {
            **settings.kafka.librdkafka(),
            "group.id": settings.kafka.consumer_group + "-dlq",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([settings.kafka.topic_dead_letter])
    letters: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    try:
        while len(letters) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            raw_headers = message.headers() or []
            assert isinstance(raw_headers, list)
            headers = {
                key: value.decode() if isinstance(value, bytes) else str(value or "")
                for key, value in raw_headers
            }
            letters.append({"value": message.value(), **headers})
    finally:
        consumer.close()
    return letters


def test_bad_input_goes_to_the_dead_letter_topic_and_good_events_around_it_are_written(
    graph: Neo4jRunner, ingest_settings: Settings
) -> None:
    kafka = ingest_settings.kafka
    hostile_id = "x'}) MATCH (n) DETACH DELETE n //"
    good_before = identity("good-1", "sub-good-1", emails=["a@example.com"])
    good_after = identity("good-2", "sub-good-2", emails=["b@example.com"])
    hostile = identity("hostile-1", hostile_id, emails=["c@example.com"])
    bad_phone = identity("bad-phone", "sub-bad-phone", phones=["call me maybe"])
    control = identity("ctrl", "sub\x00ctrl")
    missing_field = {k: v for k, v in identity("missing", "sub-m").items() if k != "occurred_at"}
    oversize = identity("big", "sub-big", emails=["d@example.com"])
    oversize["source"] = "y" * 200
    oversize["identifiers"]["addresses"] = ["1 Main St " + "z" * 400] * 200

    produce(ingest_settings, [good_before])
    produce(ingest_settings, [b"{not json"], kafka.topic_identity)
    produce(ingest_settings, [missing_field, bad_phone, control, oversize, hostile])
    produce(ingest_settings, [b"\xff\xfe binary garbage"], kafka.topic_transactions)
    produce(ingest_settings, [good_after])

    with WorkerThread(ingest_settings):
        wait_for(lambda: lag(ingest_settings) == 0, what="all input consumed")
    letters = _dead_letters(ingest_settings, expected=6)
    stages = sorted(letter["ringwatch.stage"] for letter in letters)
    assert stages == ["normalise", "parse", "parse", "parse", "parse", "parse"]
    reasons = " | ".join(letter["ringwatch.reason"] for letter in letters)
    assert "occurred_at" in reasons  # the missing field is named
    assert "identifiers.phones[0]" in reasons  # the value that failed normalisation is located
    for letter in letters:
        assert letter["ringwatch.source.topic"] in (kafka.topic_identity, kafka.topic_transactions)
        assert int(letter["ringwatch.source.offset"]) >= 0
    # The original bytes are kept unchanged.
    assert any(letter["value"] == b"{not json" for letter in letters)
    # No personal value is echoed in a reason.
    assert "call me maybe" not in reasons

    subscribers = {r["id"] for r in graph.read("MATCH (s:Subscriber) RETURN s.id AS id")}
    assert subscribers == {"sub-good-1", "sub-good-2", hostile_id}
