"""A produce/consume round trip through the real broker, on a topic nobody else uses."""

from __future__ import annotations

from collections.abc import Callable

from confluent_kafka import Consumer, Message, Producer

from ringwatch.config import Settings


def _consume(consumer: Consumer, expected: int, timeout_s: float = 30.0) -> list[Message]:
    received: list[Message] = []
    polls = int(timeout_s / 0.5)
    for _ in range(polls):
        message = consumer.poll(0.5)
        if message is None:
            continue
        assert message.error() is None, message.error()
        received.append(message)
        if len(received) == expected:
            break
    return received


def test_messages_round_trip_with_keys_and_order(
    settings: Settings, kafka_topic: Callable[..., str], unique_name: Callable[[str], str]
) -> None:
    topic = kafka_topic("roundtrip", partitions=3)
    producer = Producer(settings.kafka.librdkafka())
    sent = [(f"sub-{i % 4}".encode(), f"event-{i}".encode()) for i in range(20)]
    for key, value in sent:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0

    consumer = Consumer(
        {
            **settings.kafka.librdkafka(),
            "group.id": unique_name("group"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    try:
        received = _consume(consumer, expected=len(sent))
    finally:
        consumer.close()

    pairs = [(m.key() or b"", m.value() or b"") for m in received]
    assert sorted(pairs) == sorted(sent)
    # Keyed by subscriber: one subscriber's events share a partition and keep their order.
    by_key: dict[bytes, list[bytes]] = {}
    partitions: dict[bytes, set[int | None]] = {}
    for message, (key, value) in zip(received, pairs, strict=True):
        by_key.setdefault(key, []).append(value)
        partitions.setdefault(key, set()).add(message.partition())
    for key, values in by_key.items():
        assert len(partitions[key]) == 1
        assert values == [v for k, v in sent if k == key]


def test_committed_offsets_resume_where_the_group_left_off(
    settings: Settings, kafka_topic: Callable[..., str], unique_name: Callable[[str], str]
) -> None:
    topic = kafka_topic("resume")
    group = unique_name("group")
    producer = Producer(settings.kafka.librdkafka())
    for i in range(6):
        producer.produce(topic, value=f"m{i}".encode())
    assert producer.flush(30) == 0

    def consumer() -> Consumer:
        c = Consumer(
            {
                **settings.kafka.librdkafka(),
                "group.id": group,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        c.subscribe([topic])
        return c

    first = consumer()
    try:
        head = _consume(first, expected=3)
        first.commit(message=head[-1], asynchronous=False)
    finally:
        first.close()
    second = consumer()
    try:
        rest = _consume(second, expected=3)
    finally:
        second.close()
    assert [m.value() for m in head + rest] == [f"m{i}".encode() for i in range(6)]
