"""The ingest worker's batch handling with fakes: commit order and rebalances."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from ringwatch.graph.rings import RingEvent
from ringwatch.graph.writer import GraphWriter, WriteResult
from ringwatch.ingest.events import EventFamily
from ringwatch.ingest.kafka import DeadLetter
from ringwatch.ingest.prepare import Preparer
from ringwatch.ingest.worker import IngestWorker
from tests.factories import identity
from tests.unit.fakes import RecordingRunner


@dataclass
class FakeConsumer:
    commit_error: KafkaException | None = None
    commits: list[list[TopicPartition]] = field(default_factory=list)
    assigned: list[TopicPartition] = field(default_factory=list)

    def assignment(self) -> list[TopicPartition]:
        return self.assigned

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> None:
        if self.commit_error is not None:
            raise self.commit_error
        self.commits.append(offsets)


@dataclass
class FakeDeadLetters:
    published: list[DeadLetter] = field(default_factory=list)
    flushed: int = 0

    def publish(self, letter: DeadLetter) -> None:
        self.published.append(letter)

    def flush(self) -> None:
        self.flushed += 1


def _worker(consumer: FakeConsumer, letters: FakeDeadLetters) -> IngestWorker:
    # Every claim statement answers "new" for the ids it is given.
    def respond(_query: str, params: Any) -> list[dict[str, Any]]:
        rows = params.get("rows", [])
        return [{"id": r.get("event_id") or r.get("transaction_id")} for r in rows]

    return IngestWorker(
        consumer=consumer,  # type: ignore[arg-type]
        writer=GraphWriter(RecordingRunner(responder=respond), hub_cap=50),
        preparer=Preparer(),
        dead_letters=letters,  # type: ignore[arg-type]
        topics={"identity": EventFamily.IDENTITY},
    )


def _message(offset: int, payload: dict[str, Any] | bytes, partition: int = 0) -> Message:
    value = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return Message(topic="identity", partition=partition, offset=offset, key=b"s1", value=value)


def _committed(consumer: FakeConsumer) -> list[list[tuple[int, int]]]:
    return [[(tp.partition, tp.offset) for tp in commit] for commit in consumer.commits]


def test_offsets_are_committed_after_the_write_and_past_the_last_message() -> None:
    consumer, letters = FakeConsumer(), FakeDeadLetters()
    worker = _worker(consumer, letters)
    batch = [
        _message(7, identity("e1", "s1")),
        _message(8, b"{bad"),
        _message(9, identity("e2", "s2")),
    ]
    assert worker.process(batch, lambda: False)
    assert [(tp.topic, tp.partition, tp.offset) for tp in consumer.commits[0]] == [
        ("identity", 0, 10)
    ]
    assert [letter.stage for letter in letters.published] == ["parse"]
    assert letters.flushed == 1
    assert worker.stats.written.identity == 2


def test_a_commit_lost_to_a_rebalance_is_not_fatal() -> None:
    lost = KafkaException(KafkaError(KafkaError.ILLEGAL_GENERATION))
    consumer, letters = FakeConsumer(commit_error=lost), FakeDeadLetters()
    worker = _worker(consumer, letters)
    assert worker.process([_message(1, identity("e1", "s1"))], lambda: False)
    assert worker.stats.commits_lost_to_rebalance == 1


def test_a_lost_commit_is_retried_for_partitions_that_stayed_assigned() -> None:
    lost = KafkaException(KafkaError(KafkaError.REBALANCE_IN_PROGRESS))
    consumer, letters = FakeConsumer(commit_error=lost), FakeDeadLetters()
    worker = _worker(consumer, letters)
    batch = [_message(4, identity("e1", "s1")), _message(9, identity("e2", "s2"), partition=1)]
    assert worker.process(batch, lambda: False)
    assert consumer.commits == []
    # The rebalance is over: partition 0 stayed here, partition 1 moved to another worker.
    consumer.commit_error = None
    consumer.assigned = [TopicPartition("identity", 0)]
    worker._commit_lost_offsets()
    assert _committed(consumer) == [[(0, 5)]]
    worker._commit_lost_offsets()  # nothing left to retry
    assert len(consumer.commits) == 1


def test_a_lost_commit_rides_along_with_the_next_batch() -> None:
    lost = KafkaException(KafkaError(KafkaError.ILLEGAL_GENERATION))
    consumer, letters = FakeConsumer(commit_error=lost), FakeDeadLetters()
    consumer.assigned = [TopicPartition("identity", 0), TopicPartition("identity", 1)]
    worker = _worker(consumer, letters)
    assert worker.process([_message(4, identity("e1", "s1"))], lambda: False)
    consumer.commit_error = None
    assert worker.process([_message(9, identity("e2", "s2"), partition=1)], lambda: False)
    assert _committed(consumer) == [[(0, 5), (1, 10)]]


def test_other_commit_failures_stop_the_worker() -> None:
    broken = KafkaException(KafkaError(KafkaError._TRANSPORT))
    worker = _worker(FakeConsumer(commit_error=broken), FakeDeadLetters())
    with pytest.raises(KafkaException):
        worker.process([_message(1, identity("e1", "s1"))], lambda: False)


@dataclass
class QueueConsumer:
    """Hands out what is queued; each of `arrivals` (one fetch) comes while the worker waits."""

    queued: list[Message] = field(default_factory=list)
    arrivals: list[list[Message]] = field(default_factory=list)
    calls: list[tuple[int, float]] = field(default_factory=list)

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        self.calls.append((num_messages, timeout))
        if not self.queued and timeout > 0 and self.arrivals:
            self.queued.extend(self.arrivals.pop(0))
        taken, self.queued = self.queued[:num_messages], self.queued[num_messages:]
        return taken


def _batching_worker(consumer: QueueConsumer, batch_size: int) -> IngestWorker:
    worker = _worker(FakeConsumer(), FakeDeadLetters())
    worker.consumer = consumer  # type: ignore[assignment]
    worker.batch_size = batch_size
    return worker


def test_a_batch_is_what_is_waiting_without_a_poll_timeout() -> None:
    consumer = QueueConsumer(queued=[_message(n, b"{}") for n in range(5)])
    worker = _batching_worker(consumer, batch_size=3)
    assert [m.offset() for m in worker.next_batch()] == [0, 1, 2]
    assert [m.offset() for m in worker.next_batch()] == [3, 4]
    assert consumer.calls == [(3, 0), (3, 0)]


def test_with_nothing_waiting_the_first_arrival_is_handed_over_with_what_came_with_it() -> None:
    consumer = QueueConsumer(arrivals=[[_message(n, b"{}") for n in range(3)]])
    worker = _batching_worker(consumer, batch_size=100)
    assert [m.offset() for m in worker.next_batch()] == [0, 1, 2]
    # Waited once with the poll timeout, then only took what was already there.
    assert consumer.calls == [(100, 0), (1, worker.poll_timeout_s), (99, 0)]
    assert worker.next_batch() == []


def test_the_worker_counts_ring_lineage_without_keeping_it() -> None:
    consumer, letters = FakeConsumer(), FakeDeadLetters()
    worker = _worker(consumer, letters)
    lineage = [RingEvent("R-1", "created", "live", members_added=["a", "b", "c"])]
    worker.writer.write = lambda events: WriteResult(identity=len(events), ring_events=lineage)  # type: ignore[method-assign]
    for batch in range(3):
        worker.process([_message(batch, identity(f"e{batch}", "s1"))], lambda: False)
    assert (worker.stats.written.identity, worker.stats.ring_events) == (3, 3)
    assert worker.stats.written.ring_events == []


def test_with_a_linger_the_worker_waits_for_a_full_batch_instead() -> None:
    consumer = QueueConsumer(queued=[_message(n, b"{}") for n in range(2)])
    worker = _batching_worker(consumer, batch_size=50)
    worker.batch_linger_s = 0.3
    assert [m.offset() for m in worker.next_batch()] == [0, 1]
    assert consumer.calls == [(50, 0.3)]
