"""What an ingest worker does once a batch is stored, before its offsets are committed.

1. Live alerts (`ringwatch.graph.live_alerts`): rings the batch created or grew, subscribers
   whose new transactions break a usage rule.
2. The alerts just raised go to the alerts topic through the graph outbox (`publish_ids`: only
   this worker's own, so several workers do not send each other's alerts).
3. Ring lineage written by live ring tracking goes to the rings topic (`publish_pending`).

Nothing here may lose or hold up ingestion. The batch is already committed to Neo4j; a failure
is logged by its type (never a value from the events) and the worker goes on to commit the
offsets. Alerts are durable in the graph from the moment they are raised: one that could not be
published stays pending, is tried again after a growing pause (so a slow alerts topic costs one
short wait, not one per batch), and is drained at the next worker start or ``analyze``. Alerts
that could not be raised at all are raised by the next check of the same entity: the next
transaction of the subscriber or change of the ring, a redelivery of the batch, or the batch
scoring of ``ringwatch analyze``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from confluent_kafka import Producer
from neo4j.exceptions import Neo4jError

from ringwatch.graph.db import QueryRunner
from ringwatch.graph.live_alerts import LiveAlerter
from ringwatch.graph.outbox import OutboxKind, publish_ids, publish_pending
from ringwatch.graph.writer import WriteResult
from ringwatch.ingest.prepare import PreparedEvent
from ringwatch.scoring.alerts import AlertCandidate

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 5.0
"""How long one batch waits for the broker to acknowledge its alerts."""
RETRY_MIN_S = 1.0
RETRY_MAX_S = 60.0
MAX_UNPUBLISHED = 10_000
"""Alert ids kept for another try; beyond that they wait in the outbox for a drain."""


def describe(exc: BaseException) -> str:
    """An error by its type and code only: messages can quote values from the events."""
    code = getattr(exc, "code", None) if isinstance(exc, Neo4jError) else None
    return f"{type(exc).__name__}{f' {code}' if code else ''}"


@dataclass
class AfterBatchStats:
    alerts_raised: int = 0
    alerts_published: int = 0
    alert_failures: int = 0  # checks or stores that failed
    publish_failures: int = 0


class AfterBatch:
    """The worker's `after_write` step: live alerts, then the outbox."""

    def __init__(
        self,
        runner: QueryRunner,
        *,
        alerter: LiveAlerter | None,
        producer: Producer | None,
        alerts_topic: str,
        rings_topic: str | None,
        publish_timeout_s: float = PUBLISH_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if producer is None and (alerter is not None or rings_topic is not None):
            raise ValueError("publishing alerts or ring events needs a producer")
        self.runner = runner
        self.alerter = alerter
        self.producer = producer
        self.alerts_topic = alerts_topic
        self.rings_topic = rings_topic
        self.publish_timeout_s = publish_timeout_s
        self.clock = clock
        self.stats = AfterBatchStats()
        self.unpublished: set[str] = set()
        self._retry_at = 0.0
        self._pause = 0.0

    def drain(self) -> None:
        """Publish alerts left pending, e.g. by a worker that stopped before publishing."""
        if self.alerter is None or self.producer is None:
            return
        try:
            sent = publish_pending(
                self.runner,
                self.producer,
                OutboxKind.ALERT,
                self.alerts_topic,
                flush_timeout_s=self.publish_timeout_s,
            )
            self.stats.alerts_published += sent
        except Exception as exc:  # the alerts stay pending; the next drain sends them
            self.stats.publish_failures += 1
            log.warning("pending alerts not published at start (%s)", describe(exc))

    def __call__(self, events: Sequence[PreparedEvent], result: WriteResult) -> None:
        if self.alerter is not None:
            self._raise(self.alerter, events, result)
        if self.unpublished:
            self._publish_alerts()
        if result.ring_events and self.rings_topic is not None:
            self._publish_ring_events()

    def _raise(
        self, alerter: LiveAlerter, events: Sequence[PreparedEvent], result: WriteResult
    ) -> None:
        # The batch is stored: whatever fails here, ingestion goes on.
        parts: tuple[tuple[str, Callable[[], list[AlertCandidate]]], ...] = (
            ("ring", lambda: alerter.ring_alert_candidates(events, result)),
            ("usage", lambda: alerter.usage_candidates(events)),
        )
        candidates: list[AlertCandidate] = []
        for part, find in parts:
            try:
                candidates.extend(find())
            except Exception as exc:
                self._failed(f"live {part} checks", len(events), exc)
        if not candidates:
            return
        try:
            raised = alerter.raise_(candidates)
        except Exception as exc:
            self._failed("raising live alerts", len(events), exc)
            return
        self.stats.alerts_raised += len(raised)
        self._keep([alert.id for alert in raised])

    def _failed(self, what: str, events: int, exc: Exception) -> None:
        self.stats.alert_failures += 1
        log.warning("%s skipped for a batch of %d events (%s)", what, events, describe(exc))

    def _keep(self, ids: list[str]) -> None:
        room = MAX_UNPUBLISHED - len(self.unpublished)
        if len(ids) > room:
            log.warning("%d alerts left in the outbox for the next drain", len(ids) - room)
        self.unpublished.update(ids[: max(room, 0)])

    def _publish_alerts(self) -> None:
        assert self.producer is not None
        if self.clock() < self._retry_at:
            return
        try:
            sent = publish_ids(
                self.runner,
                self.producer,
                OutboxKind.ALERT,
                self.alerts_topic,
                self.unpublished,
                flush_timeout_s=self.publish_timeout_s,
            )
        except Exception as exc:  # they stay pending in the graph and in `unpublished`
            self.stats.publish_failures += 1
            self._pause = min(max(RETRY_MIN_S, 2 * self._pause), RETRY_MAX_S)
            self._retry_at = self.clock() + self._pause
            log.warning(
                "%d alerts not published yet (%s); next try in %.0f s",
                len(self.unpublished),
                describe(exc),
                self._pause,
            )
            return
        self.stats.alerts_published += sent
        # Sent now, or no longer pending (another publisher sent them): either way done.
        self.unpublished.clear()
        self._pause = 0.0

    def _publish_ring_events(self) -> None:
        assert self.producer is not None and self.rings_topic is not None
        try:
            publish_pending(self.runner, self.producer, OutboxKind.RING_EVENT, self.rings_topic)
        except Exception as exc:  # the events stay pending in the graph; the next call sends them
            log.warning(
                "ring events not published yet; they stay in the outbox (%s)", describe(exc)
            )
