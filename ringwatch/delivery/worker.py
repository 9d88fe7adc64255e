"""The delivery worker: drains due alerts from the graph to n8n and Slack.

One pass (`deliver_due`) claims a batch (`ringwatch.graph.delivery.claim_due`), sends each
alert to the sinks its priority is routed to, and records the result of each alert as soon as
it is known:

- every routed sink answered 2xx: ``delivered``, with ``delivered_at`` and ``delivered_via``;
- n8n unreachable (5xx, 408, 429, timeout, connection refused) and Slack accepted the alert in
  its place: ``delivered`` via Slack, with ``delivery_fallback = true`` (the Slack message says
  that n8n's automated actions did not run);
- anything else: a failed attempt, retried after an exponential backoff with jitter, only to
  the sinks that have not accepted it yet; after ``max_attempts`` it is ``failed`` for good.

Nothing is marked delivered without a 2xx answer. A worker that dies mid-send leaves its claim
to expire and the alert is sent again: delivery is at least once, and receivers deduplicate on
the ``Idempotency-Key`` header (the alert id). Slack itself cannot deduplicate, so a crash in
the moment between Slack's answer and the graph write can post a message twice.
"""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

import httpx

from ringwatch.config import AlertsConfig, ScoringConfig, Settings
from ringwatch.delivery.messages import alert_document, n8n_body, slack_body
from ringwatch.delivery.signing import signed_headers
from ringwatch.delivery.sinks import (
    SendResult,
    Sink,
    can_fall_back,
    configured_sinks,
    create_client,
    n8n_url,
    post,
    require_ready,
    routed_priorities,
    routes,
    slack_url,
)
from ringwatch.graph import delivery as outbox
from ringwatch.graph.alerts import StoredAlert
from ringwatch.graph.db import Neo4jRunner, QueryRunner, create_driver
from ringwatch.graph.exceptions import GraphError
from ringwatch.graph.schema import migrate
from ringwatch.scoring.reasons import Reason
from ringwatch.scoring.risk import Priority

log = logging.getLogger(__name__)

# At most three requests per alert: n8n, Slack, and Slack standing in for n8n never both.
_REQUESTS_PER_ALERT = 3


@dataclass
class DeliverySummary:
    """What one pass (or a whole run) did."""

    candidates: int = 0
    """Due alerts looked at."""
    claimed: int = 0
    delivered: int = 0
    retried: int = 0
    """Failed attempts that will be tried again."""
    failed: int = 0
    """Alerts given up on (max_attempts reached)."""
    fallbacks: int = 0
    """Delivered via Slack because n8n was unreachable."""
    released: int = 0
    """Claimed but handed back unsent: the lease was about to run out."""
    lost_leases: int = 0
    """Results not recorded because another worker had retaken the alert."""
    expired_leases: int = 0
    """Alerts retaken from a worker whose lease ran out."""
    requests: dict[str, int] = field(default_factory=dict)
    """Requests sent per sink."""

    def add(self, other: DeliverySummary) -> None:
        for item in fields(self):
            if item.name == "requests":
                for sink, count in other.requests.items():
                    self.requests[sink] = self.requests.get(sink, 0) + count
            else:
                setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))


@dataclass(frozen=True, slots=True)
class AlertOutcome:
    """One attempt at one alert."""

    delivered: bool
    via: list[str]
    fallback: bool = False
    results: list[SendResult] = field(default_factory=list)

    @property
    def error(self) -> str:
        failures = [f"{r.sink.value}: {r.summary}" for r in self.results if not r.ok]
        return "; ".join(failures) or "not delivered"

    @property
    def retry_after_s(self) -> float | None:
        hints = [r.retry_after_s for r in self.results if r.retry_after_s is not None]
        return max(hints) if hints else None


def backoff_s(failures: int, config: AlertsConfig, rng: random.Random) -> float:
    """The wait after the `failures`-th failed attempt: initial x 2^(failures-1), capped at
    `backoff_max_s`, drawn uniformly from its upper half (jitter spreads retries out)."""
    exponent = min(max(failures - 1, 0), 60)
    ceiling = min(config.backoff_max_s, config.backoff_initial_s * 2.0**exponent)
    return rng.uniform(ceiling / 2, ceiling)


def _send(
    client: httpx.Client,
    config: AlertsConfig,
    secret: str,
    sink: Sink,
    document: Mapping[str, Any],
    *,
    timestamp: int,
    n8n_failure: str | None = None,
) -> SendResult:
    if sink is Sink.N8N:
        url = n8n_url(config, str(document["priority"]))
        body = n8n_body(document, timestamp)
    else:
        url = slack_url(config)
        body = slack_body(document, n8n_failure=n8n_failure)
    headers = signed_headers(secret, body, timestamp=timestamp, idempotency_key=str(document["id"]))
    token = config.n8n_token.get_secret_value() if config.n8n_token is not None else ""
    if sink is Sink.N8N and token:
        headers["Authorization"] = f"Bearer {token}"
    return post(client, sink, url, body, headers)


def send_alert(
    client: httpx.Client,
    config: AlertsConfig,
    secret: str,
    document: Mapping[str, Any],
    *,
    already: Collection[str] = (),
    timestamp: Callable[[], float] = time.time,
) -> AlertOutcome:
    """One attempt: send to the routed sinks that have not accepted the alert yet."""
    route = routes(config, str(document["priority"]))
    via = [sink for sink in dict.fromkeys(already) if sink in {s.value for s in Sink}]
    results: list[SendResult] = []
    n8n_failure: str | None = None
    if Sink.N8N in route and Sink.N8N.value not in via:
        result = _send(client, config, secret, Sink.N8N, document, timestamp=int(timestamp()))
        results.append(result)
        if result.ok:
            via.append(Sink.N8N.value)
        elif result.unavailable:
            n8n_failure = result.summary
    falls_back = n8n_failure is not None and can_fall_back(config)
    if (Sink.SLACK in route or falls_back) and Sink.SLACK.value not in via:
        result = _send(
            client,
            config,
            secret,
            Sink.SLACK,
            document,
            timestamp=int(timestamp()),
            n8n_failure=n8n_failure,
        )
        results.append(result)
        if result.ok:
            via.append(Sink.SLACK.value)
    missing = [sink for sink in route if sink.value not in via]
    if not missing:
        return AlertOutcome(True, via, results=results)
    if missing == [Sink.N8N] and falls_back and Sink.SLACK.value in via:
        return AlertOutcome(True, via, fallback=True, results=results)
    return AlertOutcome(False, via, results=results)


def deliver_due(
    runner: QueryRunner,
    client: httpx.Client,
    config: AlertsConfig,
    now: datetime,
    *,
    scoring: ScoringConfig | None = None,
    rng: random.Random | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> DeliverySummary:
    """One pass: claim a batch of due alerts, send each, record each result."""
    secret = require_ready(config)
    scoring = scoring or ScoringConfig()
    rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
    claim = outbox.claim_due(
        runner,
        now,
        limit=config.batch_size,
        lease_s=config.lease_s,
        priorities=routed_priorities(config),
        max_attempts=config.max_attempts,
    )
    summary = DeliverySummary(
        candidates=claim.candidates,
        claimed=len(claim.alerts),
        failed=len(claim.exhausted),
        expired_leases=claim.expired,
    )
    for alert_id in claim.exhausted:
        log.warning("alert %s failed for good: its last lease ran out", alert_id)
    started = clock()
    # Stop early enough that the last alert sent is recorded before the lease runs out.
    budget = config.lease_s - _REQUESTS_PER_ALERT * config.timeout_s
    for index, alert in enumerate(claim.alerts):
        if clock() - started >= budget:
            rest = [a.id for a in claim.alerts[index:]]
            summary.released += outbox.release(runner, claim.token, rest, _at(now, started, clock))
            break
        outcome = send_alert(
            client,
            config,
            secret,
            alert_document(alert, config, scoring),
            already=_delivered_via(alert),
        )
        for result in outcome.results:
            summary.requests[result.sink.value] = summary.requests.get(result.sink.value, 0) + 1
        _record(runner, claim.token, alert, outcome, config, rng, _at(now, started, clock), summary)
    return summary


def _at(now: datetime, started: float, clock: Callable[[], float]) -> datetime:
    """`now` moved on by the time this pass has taken so far."""
    return now + timedelta(seconds=clock() - started)


def _delivered_via(alert: StoredAlert) -> list[str]:
    return [str(sink) for sink in alert.extra.get("delivered_via") or []]


def _record(
    runner: QueryRunner,
    claim: str,
    alert: StoredAlert,
    outcome: AlertOutcome,
    config: AlertsConfig,
    rng: random.Random,
    at: datetime,
    summary: DeliverySummary,
) -> None:
    if outcome.delivered:
        recorded = outbox.record_delivered(
            runner, claim, alert.id, at, via=outcome.via, fallback=outcome.fallback
        )
        if recorded:
            summary.delivered += 1
            summary.fallbacks += outcome.fallback
            log.info(
                "alert %s (%s) delivered via %s%s",
                alert.id,
                alert.priority.value,
                ", ".join(outcome.via),
                " (n8n unreachable, Slack stood in)" if outcome.fallback else "",
            )
        else:
            summary.lost_leases += 1
            log.warning("alert %s delivered, but its lease had been retaken", alert.id)
        return
    failures = alert.delivery_attempts + 1
    final = failures >= config.max_attempts
    delay = backoff_s(failures, config, rng)
    if outcome.retry_after_s is not None:
        delay = max(delay, min(outcome.retry_after_s, config.backoff_max_s))
    recorded = outbox.record_failed_attempt(
        runner,
        claim,
        alert.id,
        at,
        error=outcome.error,
        via=outcome.via,
        next_at=None if final else at + timedelta(seconds=delay),
    )
    if not recorded:
        summary.lost_leases += 1
        log.warning("alert %s: attempt failed, and its lease had been retaken", alert.id)
    elif final:
        summary.failed += 1
        log.error(
            "alert %s (%s) failed for good after %d attempts: %s",
            alert.id,
            alert.priority.value,
            failures,
            outcome.error,
        )
    else:
        summary.retried += 1
        log.warning(
            "alert %s (%s) attempt %d failed: %s; next in %.1fs",
            alert.id,
            alert.priority.value,
            failures,
            outcome.error,
            delay,
        )


def run_delivery(
    settings: Settings,
    stop_event: threading.Event | None = None,
    poll_interval_s: float | None = None,
    *,
    once: bool = False,
) -> DeliverySummary:
    """Deliver due alerts until `stop_event` is set (or SIGTERM/SIGINT arrives).

    With `once`, stop as soon as nothing is due any more. Neo4j being unreachable is logged and
    retried after the poll interval (with `once`, it is raised).
    """
    config = settings.alerts
    require_ready(config)
    stop = stop_event if stop_event is not None else _stop_on_signals()
    interval = poll_interval_s if poll_interval_s is not None else config.poll_interval_s
    total = DeliverySummary()
    with create_driver(settings.neo4j) as driver, create_client(config) as client:
        runner = Neo4jRunner(driver, settings.neo4j.database)
        migrate(runner)
        log.info(
            "alert delivery to %s (priorities %s)",
            ", ".join(sink.value for sink in configured_sinks(config)),
            ", ".join(routed_priorities(config)),
        )
        while not stop.is_set():
            try:
                summary = deliver_due(
                    runner, client, config, datetime.now(UTC), scoring=settings.scoring
                )
            except GraphError as exc:
                if once:
                    raise
                log.warning("delivery pass failed: %s; next try in %.1fs", exc, interval)
                stop.wait(interval)
                continue
            total.add(summary)
            if summary.candidates >= config.batch_size:
                continue  # a full batch: more may be due right now
            if once:
                break
            stop.wait(interval)
    return total


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping after the current alert", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


_SAMPLE_RISK = {Priority.P1: 0.91, Priority.P2: 0.62, Priority.P3: 0.41, Priority.P4: 0.12}


def sample_alert(priority: Priority, now: datetime | None = None) -> StoredAlert:
    """A clearly marked test alert about no real subscriber, with a fresh id each time."""
    at = now or datetime.now(UTC)
    return StoredAlert(
        id=f"alert-test-{uuid.uuid4().hex[:24]}",
        dedup_key="subscriber:test:TEST-SUBSCRIBER",
        kind="test",
        entity_kind="subscriber",
        entity_id="TEST-SUBSCRIBER",
        priority=priority,
        risk=_SAMPLE_RISK[priority],
        reasons=[
            Reason(
                "test.sample",
                "Test alert sent by `ringwatch alerts test` to check delivery; no action needed",
                1.0,
            )
        ],
        reason_codes=["test.sample"],
        status="open",
        created_at=at,
        updated_at=at,
        escalated_from=None,
        published=False,
        delivery=outbox.PENDING,
    )


def send_test_alert(
    client: httpx.Client,
    config: AlertsConfig,
    priority: Priority,
    *,
    scoring: ScoringConfig | None = None,
) -> list[SendResult]:
    """Send a sample alert (``"test": true``) to every configured sink, whatever the routing:
    one result per sink, n8n first. Nothing is read from or written to the graph."""
    secret = require_ready(config)
    document = alert_document(sample_alert(priority), config, scoring or ScoringConfig(), test=True)
    return [
        _send(client, config, secret, sink, document, timestamp=int(time.time()))
        for sink in configured_sinks(config)
    ]
