"""Thin typed wrappers over confluent-kafka: topics, the event producer, the dead-letter topic."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from confluent_kafka import KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from ringwatch.config import KafkaConfig
from ringwatch.ingest.events import EventFamily
from ringwatch.ingest.exceptions import IngestError

log = logging.getLogger(__name__)


def family_topics(config: KafkaConfig) -> dict[str, EventFamily]:
    """Input topic name -> the event family it carries."""
    return {
        config.topic_identity: EventFamily.IDENTITY,
        config.topic_transactions: EventFamily.TRANSACTIONS,
        config.topic_labels: EventFamily.LABELS,
    }


def topic_for(config: KafkaConfig, family: EventFamily) -> str:
    for topic, carried in family_topics(config).items():
        if carried is family:
            return topic
    raise IngestError(f"no topic for event family '{family}'")


def ensure_topics(config: KafkaConfig, names: Iterable[str], partitions: int = 6) -> list[str]:
    """Create the topics that do not exist yet; returns the ones created."""
    admin = AdminClient(config.librdkafka())
    try:
        existing = set(admin.list_topics(timeout=10).topics)
    except KafkaException as exc:
        raise IngestError(f"Kafka is not reachable at {config.bootstrap_servers}: {exc}") from None
    wanted = [name for name in dict.fromkeys(names) if name not in existing]
    if not wanted:
        return []
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1) for name in wanted]
    )
    for name, future in futures.items():
        try:
            future.result(timeout=30)
        except KafkaException as exc:
            # Another process may have created it in the meantime: that is fine.
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise IngestError(f"could not create topic {name}: {exc}") from None
    return wanted


def _both(
    first: Callable[[object, Message], None], second: Callable[[object, Message], None]
) -> Callable[[object, Message], None]:
    def report(error: object, message: Message) -> None:
        first(error, message)
        second(error, message)

    return report


class EventProducer:
    """Publishes event payloads keyed by subscriber id, so one subscriber keeps one partition."""

    def __init__(
        self, config: KafkaConfig, extra: Mapping[str, str | int | float | bool] | None = None
    ):
        self.config = config
        self._producer = Producer(
            {
                **config.librdkafka(),
                # Idempotent producer: a retried send is not written twice.
                "enable.idempotence": True,
                "linger.ms": 20,
                "compression.type": "lz4",
                **(extra or {}),
            }
        )
        self.failed = 0

    def _on_delivery(self, error: object, _message: Message) -> None:
        if error is not None:
            self.failed += 1
            log.error("delivery failed: %s", error)

    def publish(
        self,
        topic: str,
        value: bytes | None,
        key: str | bytes | None = None,
        headers: list[tuple[str, str | bytes | None]] | None = None,
        on_delivery: Callable[[object, Message], None] | None = None,
    ) -> None:
        """Queue one message. `on_delivery`, when given, also gets its delivery report (error
        or None), from within a later `poll` or `flush`."""
        report: Callable[[object, Message], None] = self._on_delivery
        if on_delivery is not None:
            report = _both(self._on_delivery, on_delivery)
        while True:
            try:
                self._producer.produce(
                    topic, value=value, key=key, headers=headers, on_delivery=report
                )
                break
            except BufferError:
                # Local queue full: let librdkafka send some, then try again.
                self._producer.poll(0.1)
        self._producer.poll(0)

    def flush(self, timeout_s: float = 60.0) -> int:
        """Wait for every message to be acknowledged; returns how many are still queued."""
        return int(self._producer.flush(timeout_s))


@dataclass(frozen=True)
class DeadLetter:
    """A rejected message: the original bytes plus where it came from and why it was rejected."""

    message: Message
    reason: str
    stage: str  # "parse", "normalise" or "write"


class DeadLetterPublisher:
    """Keeps every rejected message on the dead-letter topic with its reason in headers.

    The value is the original bytes, unchanged, so a fixed consumer can replay it.
    """

    def __init__(self, producer: EventProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic

    def publish(self, letter: DeadLetter) -> None:
        message = letter.message
        headers: list[tuple[str, str | bytes | None]] = [
            ("ringwatch.reason", letter.reason.encode()[:4000]),
            ("ringwatch.stage", letter.stage.encode()),
            ("ringwatch.source.topic", (message.topic() or "").encode()),
            ("ringwatch.source.partition", str(message.partition()).encode()),
            ("ringwatch.source.offset", str(message.offset()).encode()),
            ("ringwatch.rejected_at", str(int(time.time() * 1000)).encode()),
        ]
        self.producer.publish(self.topic, message.value(), message.key(), headers)

    def flush(self, timeout_s: float = 60.0) -> None:
        remaining = self.producer.flush(timeout_s)
        if remaining or self.producer.failed:
            raise IngestError(
                f"dead-letter topic {self.topic}: {remaining} messages unsent, "
                f"{self.producer.failed} failed"
            )
