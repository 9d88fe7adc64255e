"""Publishing files of events to Kafka (`ringwatch ingest produce`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ringwatch.config import KafkaConfig
from ringwatch.ingest.events import EventFamily
from ringwatch.ingest.exceptions import IngestError
from ringwatch.ingest.formats import iter_records
from ringwatch.ingest.kafka import EventProducer, topic_for


@dataclass
class PublishSummary:
    sent: int = 0
    unreadable: list[str] = field(default_factory=list)  # "file:line: reason"
    seconds: float = 0.0


def family_from_name(path: Path) -> EventFamily:
    """`identity.jsonl`, `transactions-2026-01.csv`, `labels.parquet` ... name their family."""
    stem = path.name.lower()
    for family in EventFamily:
        if stem.startswith(family.value):
            return family
    names = ", ".join(f.value for f in EventFamily)
    raise IngestError(
        f"{path}: cannot tell the event family from the name; pass --family ({names})"
    )


def publish_files(
    config: KafkaConfig,
    paths: Sequence[Path],
    *,
    family: EventFamily | None = None,
    rate: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> PublishSummary:
    """Send every readable row as it is; the consumers validate and dead-letter bad ones.

    Messages are keyed by subscriber id, so one subscriber's events stay in order on one
    partition. `rate` caps events per second (None: as fast as the broker takes them).
    """
    producer = EventProducer(config)
    summary = PublishSummary()
    started = time.perf_counter()
    for path in paths:
        path_family = family or family_from_name(path)
        topic = topic_for(config, path_family)
        for record in iter_records(path, path_family):
            if record.raw is None:
                summary.unreadable.append(f"{record.file}:{record.line}: {record.error}")
                continue
            subscriber = (record.payload or {}).get("subscriber_id")
            producer.publish(topic, record.raw, str(subscriber) if subscriber is not None else None)
            summary.sent += 1
            if progress is not None:
                progress(1)
            if rate:
                # Pace against the clock so the average holds even when sends are bursty.
                ahead = summary.sent / rate - (time.perf_counter() - started)
                if ahead > 0:
                    time.sleep(ahead)
    remaining = producer.flush()
    if remaining or producer.failed:
        raise IngestError(f"{remaining} events not acknowledged, {producer.failed} failed")
    summary.seconds = time.perf_counter() - started
    return summary
