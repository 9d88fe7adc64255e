"""Prometheus metrics at /metrics.

Request latency is measured in the process. Everything else is read from durable state when
Prometheus scrapes (cached for `CACHE_SECONDS`), so the figures are right whichever process did
the work: events stored (claim nodes in the graph), dead letters (the dead-letter topic's
offsets), consumer lag (the ingest group's committed offsets against the topics' ends), alerts
by priority, the risk score distribution, and drift.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, LiteralString

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from ringwatch.config import Settings
from ringwatch.graph.db import QueryRunner

log = logging.getLogger(__name__)
CACHE_SECONDS = 15.0
RISK_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)

_STORED: LiteralString = """
CALL () { MATCH (e:IngestedEvent) RETURN count(e) AS identity }
CALL () { MATCH (t:Transaction) RETURN count(t) AS transactions }
CALL () { MATCH (l:Label) RETURN count(l) AS labels }
RETURN identity, transactions, labels
"""
_ALERTS: LiteralString = """
MATCH (a:Alert) RETURN a.priority AS priority, count(*) AS n
"""
# Range counts on the indexed Subscriber.risk: cheap even with millions of subscribers.
_RISK_BUCKETS: LiteralString = """
CALL () { MATCH (s:Subscriber) WHERE s.risk >= 0.0 RETURN count(s) AS n, sum(s.risk) AS total }
CALL () {
  UNWIND $buckets AS bound
  CALL (bound) { MATCH (s:Subscriber) WHERE s.risk <= bound RETURN count(s) AS below }
  RETURN collect(below) AS cumulative
}
RETURN n, total, cumulative
"""


def request_histogram(registry: CollectorRegistry) -> Histogram:
    return Histogram(
        "ringwatch_http_request_duration_seconds",
        "HTTP request latency by route template and status.",
        ["method", "route", "status"],
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        registry=registry,
    )


class _Cached:
    def __init__(self, compute: Callable[[], Any], ttl_s: float = CACHE_SECONDS) -> None:
        self.compute, self.ttl_s = compute, ttl_s
        self.value: Any = None
        self.until = 0.0
        self.lock = threading.Lock()

    def get(self) -> Any:
        with self.lock:
            if time.monotonic() >= self.until:
                try:
                    self.value = self.compute()
                except Exception as exc:  # a scrape must not fail because one source is down
                    log.warning("metrics source unavailable: %s", type(exc).__name__)
                    self.value = None
                self.until = time.monotonic() + self.ttl_s
            return self.value


class StateCollector(Collector):
    """Metrics read from the graph and Kafka at scrape time."""

    def __init__(
        self, runner: QueryRunner, settings: Settings, drift: Callable[[], Any] | None = None
    ) -> None:
        self.runner = runner
        self.settings = settings
        self.stored = _Cached(lambda: runner.read(_STORED)[0])
        self.alerts = _Cached(lambda: runner.read(_ALERTS))
        self.risk = _Cached(lambda: runner.read(_RISK_BUCKETS, {"buckets": list(RISK_BUCKETS)})[0])
        self.lag = _Cached(self._consumer_lag)
        self.dead_letters = _Cached(self._dead_letters)
        self.drift = _Cached(drift) if drift else None

    def collect(self) -> Iterator[Any]:
        events = CounterMetricFamily(
            "ringwatch_ingest_events", "Events ingested, by family and outcome.",
            labels=["family", "outcome"],
        )  # fmt: skip
        stored = self.stored.get()
        if stored is not None:
            for family in ("identity", "transactions", "labels"):
                events.add_metric([family, "stored"], float(stored[family]))
        dead = self.dead_letters.get()
        if dead is not None:
            events.add_metric(["any", "dead_letter"], float(dead))
        yield events

        lag = GaugeMetricFamily(
            "ringwatch_ingest_consumer_lag", "Messages not yet ingested, per topic partition.",
            labels=["topic", "partition"],
        )  # fmt: skip
        for (topic, partition), value in (self.lag.get() or {}).items():
            lag.add_metric([topic, str(partition)], float(value))
        yield lag

        alerts = CounterMetricFamily(
            "ringwatch_alerts", "Alerts raised, by priority.", labels=["priority"]
        )
        for row in self.alerts.get() or []:
            alerts.add_metric([str(row["priority"])], float(row["n"]))
        yield alerts

        risk = self.risk.get()
        if risk is not None and risk["n"]:
            buckets = [(str(b), float(c)) for b, c in zip(RISK_BUCKETS, risk["cumulative"],
                                                          strict=True)]  # fmt: skip
            buckets.append(("+Inf", float(risk["n"])))
            yield HistogramMetricFamily(
                "ringwatch_risk_score", "Merged risk of every scored subscriber.",
                buckets=buckets, sum_value=float(risk["total"] or 0.0),
            )  # fmt: skip

        if self.drift is not None:
            drift = self.drift.get()
            if drift is not None:
                yield GaugeMetricFamily(
                    "ringwatch_drift_ks_statistic",
                    "Two-sample KS statistic: current risk scores against the baseline.",
                    value=drift.ks_statistic,
                )
                yield GaugeMetricFamily(
                    "ringwatch_drift_alert_rate_ratio",
                    "Alerts in the last day over the baseline's daily mean.",
                    value=drift.alert_rate_ratio,
                )

    def _consumer_lag(self) -> dict[tuple[str, int], int]:
        from confluent_kafka import Consumer, TopicPartition

        kafka = self.settings.kafka
        consumer = Consumer(
            {**kafka.librdkafka(), "group.id": kafka.consumer_group, "enable.auto.commit": False}
        )
        try:
            lag: dict[tuple[str, int], int] = {}
            for topic in (kafka.topic_identity, kafka.topic_transactions, kafka.topic_labels):
                metadata = consumer.list_topics(topic, timeout=2.0).topics.get(topic)
                if metadata is None or metadata.error is not None:
                    continue
                partitions = [TopicPartition(topic, p) for p in metadata.partitions]
                for committed in consumer.committed(partitions, timeout=2.0):
                    low, high = consumer.get_watermark_offsets(committed, timeout=2.0)
                    done = committed.offset if committed.offset >= 0 else low
                    lag[(topic, committed.partition)] = max(high - done, 0)
            return lag
        finally:
            consumer.close()

    def _dead_letters(self) -> int:
        from confluent_kafka import Consumer, TopicPartition

        kafka = self.settings.kafka
        consumer = Consumer({**kafka.librdkafka(), "group.id": "ringwatch-metrics"})
        try:
            topic = kafka.topic_dead_letter
            metadata = consumer.list_topics(topic, timeout=2.0).topics.get(topic)
            if metadata is None or metadata.error is not None:
                return 0
            total = 0
            for partition in metadata.partitions:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=2.0
                )
                total += high - low
            return total
        finally:
            consumer.close()
