"""Starting ingest workers from settings: one per process, stopped cleanly by SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from types import FrameType

from confluent_kafka import Consumer

from ringwatch.config import Settings
from ringwatch.graph.db import Neo4jRunner, create_driver
from ringwatch.graph.live_alerts import LiveAlerter
from ringwatch.graph.outbox import create_outbox_producer
from ringwatch.graph.rings import live_tracker
from ringwatch.graph.schema import migrate
from ringwatch.graph.writer import GraphWriter
from ringwatch.ingest.after_batch import AfterBatch
from ringwatch.ingest.kafka import (
    DeadLetterPublisher,
    EventProducer,
    ensure_topics,
    family_topics,
)
from ringwatch.ingest.prepare import Preparer
from ringwatch.ingest.worker import IngestStats, IngestWorker

log = logging.getLogger(__name__)
# Live usage scoring reads several subscribers of one batch side by side.
_LIVE_READS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="live-alerts")


def consumer_config(
    settings: Settings, group: str | None = None
) -> dict[str, str | int | float | bool]:
    return {
        **settings.kafka.librdkafka(),
        "group.id": group or settings.kafka.consumer_group,
        # Offsets are committed by hand, after the graph write: never automatically.
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        # Cooperative rebalancing: adding a worker does not stop the others' partitions.
        "partition.assignment.strategy": "cooperative-sticky",
        "max.poll.interval.ms": 600_000,
    }


def prepare_topics(settings: Settings) -> None:
    ensure_topics(
        settings.kafka, settings.kafka.topics(), partitions=settings.ingest.topic_partitions
    )


def run_worker(
    settings: Settings,
    stop: threading.Event | None = None,
    *,
    group: str | None = None,
    idle_exit_s: float | None = None,
) -> IngestStats:
    """One worker in this process until `stop` is set (or SIGTERM/SIGINT arrives).

    With `idle_exit_s`, it also stops once no message has arrived for that long.
    """
    stop = stop or _stop_on_signals()
    with create_driver(settings.neo4j) as driver:
        runner = Neo4jRunner(driver, settings.neo4j.database)
        migrate(runner)
        producer = EventProducer(settings.kafka)
        writer = GraphWriter(runner, hub_cap=settings.scoring.hub_cap)
        if settings.ingest.live_rings:
            writer.ring_tracker, writer.ring_link_types = live_tracker(settings.scoring)
        after_batch = _after_batch(settings, runner)
        worker = IngestWorker(
            consumer=Consumer(consumer_config(settings, group)),
            writer=writer,
            preparer=Preparer(
                pii_hmac_key=settings.scoring.pii_hmac_key,
                default_region=settings.ingest.default_region,
            ),
            dead_letters=DeadLetterPublisher(producer, settings.kafka.topic_dead_letter),
            topics=family_topics(settings.kafka),
            batch_size=settings.ingest.batch_size,
            poll_timeout_s=settings.ingest.poll_timeout_s,
            batch_linger_s=settings.ingest.batch_linger_s,
            max_message_bytes=settings.ingest.max_message_bytes,
            idle_exit_s=idle_exit_s,
            after_write=after_batch,
        )
        if after_batch is not None:
            after_batch.drain()
        stats = worker.run(stop.is_set)
        producer.flush()
    log.info(
        "ingest worker stopped: %d messages, %d written, %d duplicates, %d dead letters",
        stats.messages,
        stats.written.written,
        stats.written.duplicates,
        stats.dead_letters,
    )
    if after_batch is not None and after_batch.alerter is not None:
        alerts = after_batch.stats
        log.info(
            "live alerts: %d raised, %d published, %d checks failed, %d publish failures",
            alerts.alerts_raised,
            alerts.alerts_published,
            alerts.alert_failures,
            alerts.publish_failures,
        )
    return stats


def _after_batch(settings: Settings, runner: Neo4jRunner) -> AfterBatch | None:
    """Live alerts and the outbox after each stored batch, as the settings ask."""
    ingest = settings.ingest
    if not (ingest.live_rings or ingest.live_alerts):
        return None
    alerter = None
    if ingest.live_alerts:
        alerter = LiveAlerter(
            runner,
            settings.scoring,
            usage_rules=ingest.live_alert_usage_rules,
            reads=_LIVE_READS,
        )
    return AfterBatch(
        runner,
        alerter=alerter,
        producer=create_outbox_producer(settings.kafka),
        alerts_topic=settings.kafka.topic_alerts,
        rings_topic=settings.kafka.topic_rings if ingest.live_rings else None,
    )


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, _frame: FrameType | None) -> None:
        # Finish the current batch, commit, then leave: nothing is lost or counted twice.
        log.info("signal %d: stopping after the current batch", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def _worker_process(settings: Settings, idle_exit_s: float | None) -> None:
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(processName)s %(message)s")
    run_worker(settings, idle_exit_s=idle_exit_s)


def run_workers(settings: Settings, workers: int, *, idle_exit_s: float | None = None) -> int:
    """Run `workers` processes in one consumer group; returns the number that failed."""
    prepare_topics(settings)
    if workers == 1:
        run_worker(settings, idle_exit_s=idle_exit_s)
        return 0
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_worker_process, args=(settings, idle_exit_s), name=f"ingest-{i}")
        for i in range(workers)
    ]
    for process in processes:
        process.start()

    def forward(signum: int, _frame: FrameType | None) -> None:
        for process in processes:
            if process.pid is not None and process.is_alive():
                process.terminate()  # SIGTERM: each finishes its batch and commits

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for process in processes:
        process.join()
    return sum(1 for process in processes if process.exitcode not in (0, -signal.SIGTERM))
