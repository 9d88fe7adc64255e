"""Alert delivery on the real graph, to real local HTTP receivers standing in for n8n and Slack.

Time is passed in (`now`) rather than slept through: each pass runs "later" by more than the
longest backoff, so retries are due without waiting.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from ringwatch.config import AlertsConfig, ScoringConfig, Settings
from ringwatch.delivery import DeliverySummary, deliver_due
from ringwatch.delivery.messages import alert_document
from ringwatch.delivery.worker import send_alert
from ringwatch.graph import delivery as outbox
from ringwatch.graph.alerts import StoredAlert, list_alerts, raise_alerts
from ringwatch.graph.db import Neo4jRunner
from ringwatch.graph.schema import migrate
from ringwatch.scoring.alerts import RISK_KIND, AlertCandidate
from ringwatch.scoring.reasons import Reason
from ringwatch.scoring.risk import Priority
from tests.cli_helpers import run_cli
from tests.webhook_receivers import WebhookReceiver, block_kit_errors

SECRET = "integration-signing-secret"
TOKEN = "integration-n8n-token"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LATER = timedelta(seconds=30)  # longer than backoff_max_s below: every retry is due
REASONS = [
    Reason("graph.shared_device", "shares device 3567… with 7 subscribers", 0.6),
    Reason("usage.daily_charge_limit", "charges $640 in 24 h (limit $500)", 0.4),
]
RISK = {Priority.P1: 0.92, Priority.P2: 0.65, Priority.P3: 0.4}


@pytest.fixture
def delivery_graph(graph: Neo4jRunner) -> Neo4jRunner:
    migrate(graph)
    graph.write(
        "UNWIND range(1, 60) AS n CREATE (:Subscriber {id: 'S-' + toString(n)})",
    )
    graph.write("CREATE (:Ring {id: 'R-1', size: 3})")
    return graph


@pytest.fixture
def n8n() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(secret=SECRET, token=TOKEN).start()
    yield receiver
    receiver.stop()


@pytest.fixture
def slack() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(secret=SECRET, path_prefix="/services/T000/B000/XXXX").start()
    yield receiver
    receiver.stop()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=0.5, follow_redirects=False) as http:
        yield http


def _config(
    n8n: WebhookReceiver | None, slack: WebhookReceiver | None, **changes: Any
) -> AlertsConfig:
    values: dict[str, Any] = {
        "n8n_base_url": n8n.url if n8n else None,
        "n8n_token": SecretStr(TOKEN),
        "slack_webhook_url": SecretStr(slack.url) if slack else None,
        "signing_secret": SecretStr(SECRET),
        "backoff_initial_s": 1.0,
        "backoff_max_s": 8.0,
        "timeout_s": 0.5,
        "lease_s": 10.0,
        "batch_size": 50,
        **changes,
    }
    return AlertsConfig(**values)


def _raise(
    graph: Neo4jRunner,
    priorities: list[Priority],
    *,
    at: datetime = NOW,
    first: int = 1,
) -> list[StoredAlert]:
    candidates = [
        AlertCandidate("subscriber", f"S-{first + n}", RISK_KIND, priority, RISK[priority], REASONS)
        for n, priority in enumerate(priorities)
    ]
    return raise_alerts(graph, candidates, at)


def _alert(graph: Neo4jRunner, alert_id: str) -> dict[str, Any]:
    rows = graph.read("MATCH (a:Alert {id: $id}) RETURN a {.*} AS a", {"id": alert_id})
    return dict(rows[0]["a"])


def _states(graph: Neo4jRunner) -> dict[str, int]:
    return {k: v for k, v in outbox.delivery_counts(graph).items() if v}


def _drain(
    graph: Neo4jRunner, client: httpx.Client, config: AlertsConfig, start: datetime, passes: int
) -> tuple[datetime, DeliverySummary]:
    total = DeliverySummary()
    now = start
    for _ in range(passes):
        total.add(deliver_due(graph, client, config, now))
        now += LATER
    return now, total


def test_receivers_down_then_back_get_every_alert_exactly_once(
    delivery_graph: Neo4jRunner,
    n8n: WebhookReceiver,
    slack: WebhookReceiver,
    client: httpx.Client,
) -> None:
    alerts = _raise(delivery_graph, [Priority.P1, Priority.P2, Priority.P3] * 4)
    config = _config(n8n, slack)
    n8n.stop()
    slack.stop()

    now, down = _drain(delivery_graph, client, config, NOW, passes=3)
    assert (down.claimed, down.retried, down.delivered) == (36, 36, 0)
    assert _states(delivery_graph) == {"pending": 12}
    first_p1 = next(alert for alert in alerts if alert.priority is Priority.P1)
    stored = _alert(delivery_graph, first_p1.id)
    assert stored["delivery_attempts"] == 3
    assert stored["delivery_error"] == "n8n: connection failed; slack: connection failed"
    assert stored["delivery_next_at"].to_native() > now - LATER

    # Not due yet: nothing is claimed before the backoff has passed.
    early = deliver_due(delivery_graph, client, config, NOW)
    assert early.claimed == 0

    n8n.start()
    slack.start()
    _, back = _drain(delivery_graph, client, config, now, passes=2)
    assert (back.delivered, back.retried, back.fallbacks) == (12, 0, 0)
    assert _states(delivery_graph) == {"delivered": 12}

    every = {alert.id for alert in alerts}
    urgent = {alert.id for alert in alerts if alert.priority in (Priority.P1, Priority.P2)}
    assert n8n.accepted_counts() == dict.fromkeys(every, 1)
    assert n8n.processed_counts() == dict.fromkeys(every, 1)
    assert slack.accepted_counts() == dict.fromkeys(urgent, 1)
    assert all(r.signature_ok and r.token_ok for r in n8n.requests + slack.requests)
    for request in n8n.accepted():
        body = request.json()
        assert request.path == f"/webhook/ringwatch-{body['priority'].lower()}"
        assert request.key == body["id"]
        assert body["sent_at"] == int(request.headers["x-ringwatch-timestamp"])
        assert body["reasons"][0]["code"] == "graph.shared_device"
    for request in slack.accepted():
        assert block_kit_errors(request.json()) == []

    p1 = _alert(delivery_graph, first_p1.id)
    assert p1["delivery"] == "delivered"
    assert p1["delivered_via"] == ["n8n", "slack"]
    assert p1["delivery_fallback"] is False
    assert p1["delivery_attempts"] == 3  # the failed attempts before it got through
    assert p1["delivered_at"].to_native() >= now
    assert "delivery_claim" not in p1
    p3 = next(alert for alert in alerts if alert.priority is Priority.P3)
    assert _alert(delivery_graph, p3.id)["delivered_via"] == ["n8n"]  # P3: n8n only


def test_n8n_unavailable_falls_back_to_slack(
    delivery_graph: Neo4jRunner,
    n8n: WebhookReceiver,
    slack: WebhookReceiver,
    client: httpx.Client,
) -> None:
    p3, p1 = _raise(delivery_graph, [Priority.P3, Priority.P1])
    n8n.mode = "fail"
    summary = deliver_due(delivery_graph, client, _config(n8n, slack), NOW)
    assert (summary.delivered, summary.fallbacks) == (2, 2)
    for alert in (p3, p1):
        stored = _alert(delivery_graph, alert.id)
        assert stored["delivery"] == "delivered"
        assert stored["delivered_via"] == ["slack"]
        assert stored["delivery_fallback"] is True
    assert slack.accepted_counts() == {p3.id: 1, p1.id: 1}
    message = slack.first_accepted(p3.id).json()
    assert block_kit_errors(message) == []
    assert "n8n did not accept this alert (HTTP 503)" in json.dumps(message)
    assert [r.status for r in n8n.requests] == [503, 503]


def test_without_fallback_an_n8n_outage_is_retried(
    delivery_graph: Neo4jRunner,
    n8n: WebhookReceiver,
    slack: WebhookReceiver,
    client: httpx.Client,
) -> None:
    [p3] = _raise(delivery_graph, [Priority.P3])
    n8n.mode = "fail"
    n8n.retry_after = "20"
    config = _config(n8n, slack, slack_fallback=False)
    summary = deliver_due(delivery_graph, client, config, NOW)
    assert (summary.delivered, summary.retried) == (0, 1)
    assert slack.requests == []
    stored = _alert(delivery_graph, p3.id)
    assert stored["delivery"] == "pending"
    assert stored["delivery_error"] == "n8n: HTTP 503"
    # Retry-After (20 s) outweighs the first backoff (at most 1 s), within backoff_max_s (8 s).
    wait = (stored["delivery_next_at"].to_native() - NOW).total_seconds()
    assert 7.9 < wait < 9.0


def test_a_sink_that_accepted_is_not_sent_again_on_retry(
    delivery_graph: Neo4jRunner,
    n8n: WebhookReceiver,
    slack: WebhookReceiver,
    client: httpx.Client,
) -> None:
    [p1] = _raise(delivery_graph, [Priority.P1])
    n8n.mode = "fail"
    n8n.fail_status = 404  # the workflow is not active: no fallback, a retry
    config = _config(n8n, slack)
    first = deliver_due(delivery_graph, client, config, NOW)
    assert first.retried == 1
    stored = _alert(delivery_graph, p1.id)
    assert (stored["delivery"], stored["delivered_via"]) == ("pending", ["slack"])
    assert stored["delivery_error"] == "n8n: HTTP 404"

    n8n.mode = "ok"
    second = deliver_due(delivery_graph, client, config, NOW + LATER)
    assert second.delivered == 1
    stored = _alert(delivery_graph, p1.id)
    assert (stored["delivery"], stored["delivered_via"]) == ("delivered", ["slack", "n8n"])
    assert slack.accepted_counts() == {p1.id: 1}
    assert n8n.accepted_counts() == {p1.id: 1}


def test_max_attempts_then_failed_and_listed_as_failed(
    delivery_graph: Neo4jRunner, n8n: WebhookReceiver, client: httpx.Client
) -> None:
    [p2] = _raise(delivery_graph, [Priority.P2])
    n8n.mode = "fail"
    config = _config(n8n, None, max_attempts=3)
    now, summary = _drain(delivery_graph, client, config, NOW, passes=5)
    assert (summary.claimed, summary.retried, summary.failed) == (3, 2, 1)
    assert len(n8n.requests) == 3
    stored = _alert(delivery_graph, p2.id)
    assert stored["delivery"] == "failed"
    assert stored["delivery_attempts"] == 3
    assert stored["delivery_error"] == "n8n: HTTP 503"
    assert stored["delivery_failed_at"].to_native() >= NOW
    failed = list_alerts(delivery_graph, delivery="failed")
    assert [alert.id for alert in failed] == [p2.id]
    assert failed[0].delivery == "failed"
    assert list_alerts(delivery_graph, delivery="pending") == []
    n8n.mode = "ok"
    assert deliver_due(delivery_graph, client, config, now + LATER).candidates == 0


def test_alerts_without_a_route_wait_for_one(
    delivery_graph: Neo4jRunner, slack: WebhookReceiver, client: httpx.Client
) -> None:
    p1, p3 = _raise(delivery_graph, [Priority.P1, Priority.P3])
    summary = deliver_due(delivery_graph, client, _config(None, slack), NOW)
    assert (summary.candidates, summary.delivered) == (1, 1)
    assert slack.accepted_counts() == {p1.id: 1}
    assert _alert(delivery_graph, p3.id)["delivery"] == "pending"  # P3 goes to n8n only


def test_two_workers_at_once_never_send_the_same_alert(
    delivery_graph: Neo4jRunner, n8n: WebhookReceiver
) -> None:
    alerts = _raise(delivery_graph, [Priority.P3] * 40)
    n8n.latency_s = 0.005  # long enough for the two workers' batches to overlap
    config = _config(n8n, None, batch_size=4)
    barrier = threading.Barrier(2)
    totals: list[DeliverySummary] = []
    errors: list[BaseException] = []

    def worker() -> None:
        total = DeliverySummary()
        try:
            with httpx.Client(timeout=2.0) as http:
                barrier.wait()
                while True:
                    summary = deliver_due(delivery_graph, http, config, NOW)
                    total.add(summary)
                    if summary.candidates == 0:
                        break
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        totals.append(total)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert n8n.accepted_counts() == {alert.id: 1 for alert in alerts}
    assert len(n8n.requests) == 40
    assert sum(t.delivered for t in totals) == 40
    assert all(t.delivered > 0 for t in totals), "both workers should have taken a share"
    assert sum(t.lost_leases for t in totals) == 0
    assert _states(delivery_graph) == {"delivered": 40}


def test_an_expired_lease_is_retaken_and_the_receiver_deduplicates(
    delivery_graph: Neo4jRunner, n8n: WebhookReceiver, client: httpx.Client
) -> None:
    [alert] = _raise(delivery_graph, [Priority.P3])
    config = _config(n8n, None)
    # A worker claims the alert, sends it, and dies before recording the result.
    crashed = outbox.claim_due(
        delivery_graph,
        NOW,
        limit=10,
        lease_s=config.lease_s,
        priorities=["P3"],
        max_attempts=config.max_attempts,
    )
    assert [a.id for a in crashed.alerts] == [alert.id]
    with httpx.Client(timeout=1.0) as http:
        sent = send_alert(
            http, config, SECRET, alert_document(crashed.alerts[0], config, ScoringConfig())
        )
    assert sent.delivered

    # While the lease holds, nobody else takes it.
    assert deliver_due(delivery_graph, client, config, NOW + timedelta(seconds=5)).claimed == 0
    assert _states(delivery_graph) == {"sending": 1}

    after = NOW + timedelta(seconds=config.lease_s + 1)
    summary = deliver_due(delivery_graph, client, config, after)
    assert (summary.expired_leases, summary.delivered) == (1, 1)
    stored = _alert(delivery_graph, alert.id)
    assert stored["delivery"] == "delivered"
    assert stored["delivery_attempts"] == 1
    assert stored["delivery_error"] == outbox.LEASE_EXPIRED
    assert n8n.accepted_counts() == {alert.id: 2}  # sent twice ...
    assert n8n.processed_counts() == {alert.id: 1}  # ... processed once

    # The crashed worker, come back, cannot overwrite the newer result.
    assert not outbox.record_failed_attempt(
        delivery_graph, crashed.token, alert.id, after, error="late", via=[], next_at=after
    )
    assert _alert(delivery_graph, alert.id)["delivery"] == "delivered"


def test_a_lease_that_keeps_expiring_ends_as_failed(
    delivery_graph: Neo4jRunner, n8n: WebhookReceiver, client: httpx.Client
) -> None:
    [alert] = _raise(delivery_graph, [Priority.P3])
    config = _config(n8n, None, max_attempts=2)
    at = NOW
    for _ in range(2):
        claim = outbox.claim_due(
            delivery_graph, at, limit=5, lease_s=config.lease_s, priorities=["P3"], max_attempts=2
        )
        assert claim.alerts or claim.exhausted
        at += timedelta(seconds=config.lease_s + 1)
    summary = deliver_due(delivery_graph, client, config, at)
    assert summary.failed == 1 and summary.delivered == 0
    stored = _alert(delivery_graph, alert.id)
    assert (stored["delivery"], stored["delivery_attempts"]) == ("failed", 2)
    assert n8n.requests == []


def test_cli_alerts_deliver_once(
    delivery_graph: Neo4jRunner,
    settings: Settings,
    n8n: WebhookReceiver,
    slack: WebhookReceiver,
) -> None:
    alerts = _raise(delivery_graph, [Priority.P1, Priority.P3], at=datetime.now(UTC))
    env = {
        "RINGWATCH_NEO4J__URI": settings.neo4j.uri,
        "RINGWATCH_ALERTS__N8N_BASE_URL": n8n.url,
        "RINGWATCH_ALERTS__N8N_TOKEN": TOKEN,
        "RINGWATCH_ALERTS__SLACK_WEBHOOK_URL": slack.url,
        "RINGWATCH_ALERTS__SIGNING_SECRET": SECRET,
    }
    result = run_cli("alerts", "deliver", "--once", env=env)
    assert result.code == 0, result.stderr
    assert "delivered 2 alerts" in result.stdout
    assert "outbox: pending 0, sending 0, delivered 2, failed 0" in result.stdout
    assert n8n.accepted_counts() == {alert.id: 1 for alert in alerts}
    assert slack.accepted_counts() == {alerts[0].id: 1}  # S-1, the P1
    assert SECRET not in result.stdout + result.stderr
    assert TOKEN not in result.stdout + result.stderr


def test_cli_alerts_deliver_without_sinks_is_one_clear_line(settings: Settings) -> None:
    env = {
        "RINGWATCH_NEO4J__URI": settings.neo4j.uri,
        "RINGWATCH_ALERTS__N8N_BASE_URL": "",
        "RINGWATCH_ALERTS__SLACK_WEBHOOK_URL": "",
    }
    result = run_cli("alerts", "deliver", "--once", env=env)
    assert result.code == 1
    assert result.stderr.strip().startswith("error: no alert sink is configured")
