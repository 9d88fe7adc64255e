"""The Kafka -> Neo4j ingest worker.

At-least-once delivery with idempotent writes: a batch of messages is parsed, normalised and
written to Neo4j in one transaction; rejected messages go to the dead-letter topic; only then are
the batch's offsets committed. A crash anywhere before the commit means the batch is delivered
again, and the graph writer's claims make the second delivery change nothing. Between the write
and the commit, an optional `after_write` step runs (live alerts and the outbox,
`ringwatch.ingest.after_batch`); whatever it does, the batch goes on to its commit.

Run several workers (processes) in one consumer group to spread the partitions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from neo4j.exceptions import DriverError, Neo4jError

from ringwatch.graph.exceptions import GraphError
from ringwatch.graph.writer import GraphWriter, WriteResult
from ringwatch.ingest.events import EventFamily, parse_event
from ringwatch.ingest.exceptions import IngestError
from ringwatch.ingest.kafka import DeadLetter, DeadLetterPublisher
from ringwatch.ingest.prepare import PreparedEvent, Preparer

log = logging.getLogger(__name__)
_MAX_LATENCY_SAMPLES = 200_000
_FIRST_MESSAGE_GRACE_S = 30.0
_REBALANCE_ERRORS = frozenset(
    {
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.FENCED_INSTANCE_ID,
    }
)


@dataclass
class IngestStats:
    messages: int = 0
    batches: int = 0
    dead_letters: int = 0
    written: WriteResult = field(default_factory=WriteResult)
    ring_events: int = 0  # ring lineage records written by live ring tracking
    graph_retries: int = 0
    commits_lost_to_rebalance: int = 0
    # Milliseconds from each message's Kafka timestamp to the commit of its batch (bounded).
    latencies_ms: list[float] = field(default_factory=list)

    def record_latencies(self, messages: Sequence[Message], now_ms: float) -> None:
        room = _MAX_LATENCY_SAMPLES - len(self.latencies_ms)
        for message in messages[: max(room, 0)]:
            kind, stamp = message.timestamp()
            if kind != TIMESTAMP_NOT_AVAILABLE and stamp > 0:
                self.latencies_ms.append(now_ms - stamp)


@dataclass(frozen=True)
class _Accepted:
    message: Message
    event: PreparedEvent


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, GraphError):
        return True  # the runner raises GraphError when Neo4j is unreachable
    if isinstance(exc, (Neo4jError, DriverError)):
        return bool(exc.is_retryable())
    return False


class IngestWorker:
    """One consumer in the group; `run` until `should_stop()` says so."""

    def __init__(
        self,
        *,
        consumer: Consumer,
        writer: GraphWriter,
        preparer: Preparer,
        dead_letters: DeadLetterPublisher,
        topics: Mapping[str, EventFamily],
        batch_size: int = 2000,
        poll_timeout_s: float = 0.5,
        batch_linger_s: float = 0.0,
        max_message_bytes: int = 64 * 1024,
        backoff_max_s: float = 30.0,
        idle_exit_s: float | None = None,
        after_write: Callable[[Sequence[PreparedEvent], WriteResult], object] | None = None,
    ) -> None:
        self.consumer = consumer
        # Called with each stored chunk and what it changed, after its Neo4j commit and before
        # the offsets are: live alerts, publishing ring lineage and alerts (`AfterBatch`).
        self.after_write = after_write
        self.writer = writer
        self.preparer = preparer
        self.dead_letters = dead_letters
        self.topics = dict(topics)
        self.batch_size = batch_size
        self.poll_timeout_s = poll_timeout_s
        self.batch_linger_s = batch_linger_s
        self.max_message_bytes = max_message_bytes
        self.backoff_max_s = backoff_max_s
        self.idle_exit_s = idle_exit_s
        self.stats = IngestStats()
        # Next offsets of a stored batch whose commit a rebalance refused (see _commit).
        self._lost_offsets: dict[tuple[str, int], int] = {}

    def run(self, should_stop: Callable[[], bool]) -> IngestStats:
        self.consumer.subscribe(list(self.topics))
        # Until the first message, joining the group and getting partitions takes seconds:
        # wait at least _FIRST_MESSAGE_GRACE_S before calling the stream idle.
        last_message: float | None = None
        started = time.monotonic()
        try:
            while not should_stop():
                messages = self.next_batch()
                if messages:
                    self.process(messages, should_stop)
                    last_message = time.monotonic()
                    continue
                self._commit_lost_offsets()
                if self.idle_exit_s is not None:
                    quiet_since = last_message if last_message is not None else started
                    wait = (
                        self.idle_exit_s
                        if last_message is not None
                        else max(self.idle_exit_s, _FIRST_MESSAGE_GRACE_S)
                    )
                    if time.monotonic() - quiet_since >= wait:
                        break
        finally:
            # close() leaves the group at once, so partitions move to the other workers now.
            self.consumer.close()
        return self.stats

    def next_batch(self) -> list[Message]:
        """What has arrived, up to `batch_size`, without waiting once there is something.

        A batch is whatever arrived while the previous one was being stored: under load batches
        grow by themselves (fewer transactions and commits per event), and a quiet stream is
        written as soon as a message arrives rather than after a poll timeout, so an event
        reaches the graph (and its alert the topic) in about one batch's storing time. With a
        `batch_linger_s` above 0, it waits up to that long for a full batch instead.
        """
        if self.batch_linger_s > 0:
            return self.consumer.consume(self.batch_size, timeout=self.batch_linger_s)
        waiting = self.consumer.consume(self.batch_size, timeout=0)
        if waiting:
            return waiting
        first = self.consumer.consume(1, timeout=self.poll_timeout_s)
        if not first or self.batch_size == 1:
            return first
        # Messages of the same fetch as the first are already in the local queue.
        return first + self.consumer.consume(self.batch_size - 1, timeout=0)

    def process(self, messages: Sequence[Message], should_stop: Callable[[], bool]) -> bool:
        """Handle one batch; returns False if stopped before it was stored (not committed)."""
        accepted: list[_Accepted] = []
        letters: list[DeadLetter] = []
        offsets: dict[tuple[str, int], int] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error: %s", error)
                continue
            topic, partition = message.topic() or "", message.partition() or 0
            offsets[(topic, partition)] = max(
                offsets.get((topic, partition), -1), message.offset() or 0
            )
            self.stats.messages += 1
            try:
                family = self.topics[topic]
                event = parse_event(family, message.value(), max_bytes=self.max_message_bytes)
            except IngestError as exc:
                letters.append(DeadLetter(message, str(exc), "parse"))
                continue
            try:
                accepted.append(_Accepted(message, self.preparer.prepare(event)))
            except IngestError as exc:
                letters.append(DeadLetter(message, str(exc), "normalise"))
        if not offsets:
            return True

        stored = self._store(accepted, letters, should_stop)
        if not stored:
            return False
        for letter in letters:
            self.dead_letters.publish(letter)
        if letters:
            # The rejects must be safe on the dead-letter topic before their offsets move on.
            self.dead_letters.flush()
            self.stats.dead_letters += len(letters)
        next_offsets = {key: offset + 1 for key, offset in offsets.items()}
        self._commit({**self._still_assigned(self._lost_offsets), **next_offsets})
        self.stats.batches += 1
        self.stats.record_latencies(messages, time.time() * 1000)
        return True

    def _commit(self, offsets: dict[tuple[str, int], int]) -> None:
        """Commit the next offsets to read; a commit lost to a rebalance is kept for later."""
        self._lost_offsets = {}
        if not offsets:
            return
        try:
            self.consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in sorted(offsets.items())],
                asynchronous=False,
            )
        except KafkaException as exc:
            # The group rebalanced while the batch was being written. A partition that moved
            # to another worker is delivered again from its committed offset (already stored,
            # and a second delivery changes nothing). A partition that stayed here is already
            # read past the batch, so nothing would commit it until its next message: keep the
            # offsets and commit them once the rebalance is over.
            if not (exc.args and exc.args[0].code() in _REBALANCE_ERRORS):
                raise
            self._lost_offsets = offsets
            self.stats.commits_lost_to_rebalance += 1
            log.info("offsets not committed (group rebalanced); retrying after the rebalance")

    def _still_assigned(self, offsets: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
        # A partition now another worker's must not get this worker's older offset.
        if not offsets:
            return {}
        assigned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
        return {key: offset for key, offset in offsets.items() if key in assigned}

    def _commit_lost_offsets(self) -> None:
        if self._lost_offsets:
            self._commit(self._still_assigned(self._lost_offsets))

    def _after_write(self, events: Sequence[PreparedEvent], result: WriteResult) -> None:
        assert self.after_write is not None
        try:
            self.after_write(events, result)
        except Exception as exc:  # the batch is stored whatever happens after: never stop here
            log.warning("after-write step failed (%s); ingestion goes on", type(exc).__name__)

    def _store(
        self,
        accepted: list[_Accepted],
        letters: list[DeadLetter],
        should_stop: Callable[[], bool],
    ) -> bool:
        """Write the accepted events, waiting out Neo4j outages; isolate poison messages."""
        pending = [accepted] if accepted else []
        backoff = 0.5
        while pending:
            chunk = pending.pop()
            try:
                events = [a.event for a in chunk]
                result = self.writer.write(events)
                # Counts only: a long-running worker must not keep every batch's lineage.
                self.stats.written += replace(result, ring_events=[])
                self.stats.ring_events += len(result.ring_events)
                backoff = 0.5
                if self.after_write is not None:
                    self._after_write(events, result)
            except (GraphError, Neo4jError, DriverError) as exc:
                if _is_transient(exc):
                    if should_stop():
                        return False
                    self.stats.graph_retries += 1
                    log.warning(
                        "Neo4j unavailable (%s); retrying in %.1fs", type(exc).__name__, backoff
                    )
                    time.sleep(backoff)
                    backoff = min(backoff * 2, self.backoff_max_s)
                    pending.append(chunk)
                    continue
                # A statement failed for reasons of the data: split until the culprit is alone.
                if len(chunk) == 1:
                    code = getattr(exc, "code", None) or type(exc).__name__
                    letters.append(
                        DeadLetter(chunk[0].message, f"graph write failed: {code}", "write")
                    )
                    continue
                middle = len(chunk) // 2
                pending.extend([chunk[middle:], chunk[:middle]])
        return True
