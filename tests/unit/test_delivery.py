"""Alert delivery without a graph: signatures, routing, backoff, messages, and one attempt at one
alert against real local HTTP receivers (n8n and Slack stand-ins), plus `ringwatch alerts test`."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from ringwatch.config import AlertsConfig, ScoringConfig, Settings
from ringwatch.delivery.messages import (
    alert_document,
    browser_query,
    cypher_string,
    mrkdwn_escape,
    n8n_body,
    slack_message,
)
from ringwatch.delivery.signing import signature, signed_headers, verify
from ringwatch.delivery.sinks import (
    Sink,
    n8n_url,
    parse_retry_after,
    routed_priorities,
    routes,
)
from ringwatch.delivery.worker import backoff_s, sample_alert, send_alert, send_test_alert
from ringwatch.graph.alerts import StoredAlert
from ringwatch.scoring.reasons import Reason
from ringwatch.scoring.risk import Priority
from tests.cli_helpers import assert_one_line_error, run_cli
from tests.webhook_receivers import WebhookReceiver, block_kit_errors

SECRET = "unit-test-signing-secret"
TOKEN = "unit-test-n8n-token"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _alert(
    priority: Priority = Priority.P1,
    *,
    entity_id: str = "S-1",
    entity_kind: str = "subscriber",
    reasons: list[Reason] | None = None,
    risk: float = 0.91,
) -> StoredAlert:
    return StoredAlert(
        id="alert-0123456789abcdef0123456789abcdef",
        dedup_key=f"{entity_kind}:risk:{entity_id}",
        kind="risk",
        entity_kind="ring" if entity_kind == "ring" else "subscriber",
        entity_id=entity_id,
        priority=priority,
        risk=risk,
        reasons=reasons
        if reasons is not None
        else [
            Reason("graph.shared_device", "shares device 3567… with 7 subscribers", 0.5),
            Reason("usage.daily_charge_limit", "charges $640 in 24 h (limit $500)", 0.3),
            Reason("ring.member", "member of ring R-12 (size 9)", 0.4),
            Reason("usage.new_device", "new device in the last 24 h", 0.1),
        ],
        reason_codes=[],
        status="open",
        created_at=NOW,
        updated_at=NOW,
        escalated_from=None,
        published=False,
        delivery="pending",
    )


def _document(alert: StoredAlert | None = None, config: AlertsConfig | None = None) -> Any:
    return alert_document(alert or _alert(), config or AlertsConfig(), ScoringConfig())


# --- signatures ---------------------------------------------------------------------------------


def test_signature_is_the_hex_hmac_sha256_of_the_exact_body() -> None:
    body = b'{"id":"alert-1","risk":0.9}'
    reference = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert signature(SECRET, body) == f"sha256={reference}"
    assert verify(SECRET, body, f"sha256={reference}")
    assert not verify(SECRET, body + b" ", f"sha256={reference}")
    assert not verify("another-secret", body, f"sha256={reference}")
    assert not verify(SECRET, body, None)


def test_signed_headers_carry_signature_timestamp_and_idempotency_key() -> None:
    body = b"{}"
    headers = signed_headers(SECRET, body, timestamp=1772366400, idempotency_key="alert-1")
    assert headers["X-Ringwatch-Signature"] == signature(SECRET, body)
    assert headers["X-Ringwatch-Timestamp"] == "1772366400"
    assert headers["Idempotency-Key"] == "alert-1"
    assert headers["Content-Type"].startswith("application/json")


# --- configuration and routing ------------------------------------------------------------------


def test_default_routing_sends_p1_p2_to_both_and_p3_p4_to_n8n_only() -> None:
    config = AlertsConfig(n8n_base_url="http://n8n:5678", slack_webhook_url=SecretStr("http://s"))
    assert routes(config, "P1") == [Sink.N8N, Sink.SLACK]
    assert routes(config, "P2") == [Sink.N8N, Sink.SLACK]
    assert routes(config, "P3") == [Sink.N8N]
    assert routes(config, "P4") == [Sink.N8N]
    assert n8n_url(config, "P2") == "http://n8n:5678/webhook/ringwatch-p2"


def test_routing_only_uses_configured_sinks() -> None:
    slack_only = AlertsConfig(slack_webhook_url=SecretStr("http://s"))
    assert routes(slack_only, "P1") == [Sink.SLACK]
    assert routes(slack_only, "P3") == []
    assert routed_priorities(slack_only) == ["P1", "P2"]
    assert routed_priorities(AlertsConfig()) == []


def test_priority_lists_and_path_template_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RINGWATCH_ALERTS__SLACK_PRIORITIES", "p1, P2,P3")
    monkeypatch.setenv("RINGWATCH_ALERTS__N8N_PRIORITIES", '["P1"]')
    monkeypatch.setenv("RINGWATCH_ALERTS__N8N_PATH_TEMPLATE", "/webhook/fraud/{priority}")
    monkeypatch.setenv("RINGWATCH_ALERTS__N8N_BASE_URL", "https://n8n.example/")
    alerts = Settings().alerts
    assert alerts.slack_priorities == ("P1", "P2", "P3")
    assert alerts.n8n_priorities == ("P1",)
    assert n8n_url(alerts, "P1") == "https://n8n.example/webhook/fraud/p1"


@pytest.mark.parametrize(
    "changes",
    [
        {"n8n_path_template": "/webhook/ringwatch"},
        {"n8n_path_template": "/webhook/{priority}/{other}"},
        {"n8n_path_template": "webhook/{priority}"},
        {"slack_priorities": ["P5"]},
        {"timeout_s": 10.0, "lease_s": 30.0},
        {"backoff_initial_s": 10.0, "backoff_max_s": 1.0},
    ],
)
def test_inconsistent_alert_settings_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        AlertsConfig(**changes)


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    config = AlertsConfig(backoff_initial_s=1.0, backoff_max_s=30.0)
    rng = random.Random(7)
    for failures, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (6, 30.0), (200, 30.0)]:
        delays = [backoff_s(failures, config, rng) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (failures, delays)
        assert len(set(delays)) > 1  # jittered


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    later = parse_retry_after("Sun, 01 Mar 2026 12:00:30 GMT", now=NOW)
    assert later == pytest.approx(30.0)


# --- messages -----------------------------------------------------------------------------------


def test_n8n_body_holds_the_alert_with_links_and_sent_at() -> None:
    document = _document()
    body = json.loads(n8n_body(document, 1772366400))
    assert body["id"] == "alert-0123456789abcdef0123456789abcdef"
    assert body["entity"] == {"kind": "subscriber", "id": "S-1"}
    assert (body["priority"], body["risk"], body["decision"]) == ("P1", 0.91, "BLOCK")
    assert [r["code"] for r in body["reasons"]][:2] == ["graph.shared_device", "ring.member"]
    assert body["sent_at"] == 1772366400
    assert body["test"] is False
    assert body["links"]["api"] == "http://127.0.0.1:8000/v1/subscribers/S-1"
    assert body["links"]["browser"].startswith("http://127.0.0.1:7474/browser/?cmd=edit&arg=")


def test_ring_links_and_escaped_browser_query() -> None:
    document = _document(_alert(entity_kind="ring", entity_id="R-12"))
    assert document["links"]["api"] == "http://127.0.0.1:8000/v1/rings/R-12"
    hostile = "S-1'}) DETACH DELETE (n) //\\"
    url = _document(_alert(entity_id=hostile))["links"]["browser"]
    query = parse_qs(urlsplit(url).query)["arg"][0]
    assert query == browser_query("subscriber", hostile)
    assert cypher_string(hostile) in query
    assert "{id: 'S-1\\'}) DETACH DELETE (n) //\\\\'}" in query
    api = _document(_alert(entity_id="a/b?c"))["links"]["api"]
    assert api.endswith("/v1/subscribers/a%2Fb%3Fc")


def test_slack_message_is_valid_block_kit() -> None:
    message = slack_message(_document())
    assert block_kit_errors(message) == []
    types = [block["type"] for block in message["blocks"]]
    assert types == ["header", "section", "section", "context", "actions"]
    fields = [field["text"] for field in message["blocks"][1]["fields"]]
    assert fields == [
        "*Entity*\nsubscriber `S-1`",
        "*Priority*\nP1",
        "*Risk*\n0.91",
        "*Decision*\nBLOCK",
    ]
    reasons = message["blocks"][2]["text"]["text"].splitlines()
    assert reasons[0] == "*Top reasons*"
    assert len(reasons) == 4  # the top three, strongest first
    assert reasons[1] == "• shares device 3567… with 7 subscribers"
    urls = [button["url"] for button in message["blocks"][4]["elements"]]
    assert urls[0] == "http://127.0.0.1:8000/v1/subscribers/S-1"
    assert "cmd=edit" in urls[1]


def test_slack_message_escapes_and_truncates_hostile_values() -> None:
    reasons = [Reason("x.y", "<!channel> & <https://evil|click> " + "z" * 5000, 1.0)]
    message = slack_message(_document(_alert(entity_id="<@U123>" + "x" * 300, reasons=reasons)))
    assert block_kit_errors(message) == []
    rendered = json.dumps(message["blocks"][1:3])
    assert "<!channel>" not in rendered and "<@U123>" not in rendered
    assert "&lt;!channel&gt; &amp; &lt;https://evil|click&gt;" in rendered
    assert len(message["blocks"][0]["text"]["text"]) == 150


def test_slack_message_says_when_it_stands_in_for_n8n_and_marks_tests() -> None:
    message = slack_message(_document(), n8n_failure="HTTP 503")
    assert block_kit_errors(message) == []
    assert "n8n did not accept this alert (HTTP 503)" in json.dumps(message)
    document = alert_document(sample_alert(Priority.P2), AlertsConfig(), ScoringConfig(), test=True)
    test_message = slack_message(document)
    assert block_kit_errors(test_message) == []
    assert test_message["blocks"][0]["text"]["text"].startswith("[TEST] P2")
    assert test_message["text"].startswith("[TEST]")
    assert mrkdwn_escape("a<b>&c") == "a&lt;b&gt;&amp;c"


# --- one attempt against real receivers ---------------------------------------------------------


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


def _config(n8n: WebhookReceiver, slack: WebhookReceiver | None, **changes: Any) -> AlertsConfig:
    return AlertsConfig(
        n8n_base_url=n8n.url,
        n8n_token=SecretStr(TOKEN),
        slack_webhook_url=SecretStr(slack.url) if slack else None,
        signing_secret=SecretStr(SECRET),
        timeout_s=0.5,
        lease_s=5.0,
        **changes,
    )


def test_p1_goes_to_n8n_and_slack_signed_with_bearer_token(
    n8n: WebhookReceiver, slack: WebhookReceiver, client: httpx.Client
) -> None:
    config = _config(n8n, slack)
    outcome = send_alert(client, config, SECRET, _document(config=config))
    assert (outcome.delivered, outcome.via, outcome.fallback) == (True, ["n8n", "slack"], False)
    [to_n8n] = n8n.accepted()
    assert to_n8n.path == "/webhook/ringwatch-p1"
    assert to_n8n.signature_ok and to_n8n.token_ok
    assert to_n8n.key == "alert-0123456789abcdef0123456789abcdef"
    assert to_n8n.json()["sent_at"] == int(to_n8n.headers["x-ringwatch-timestamp"])
    [to_slack] = slack.accepted()
    assert to_slack.path == "/services/T000/B000/XXXX"
    assert to_slack.signature_ok
    assert "authorization" not in to_slack.headers  # the n8n token goes to n8n only
    assert block_kit_errors(to_slack.json()) == []


def test_n8n_unavailable_falls_back_to_slack(
    n8n: WebhookReceiver, slack: WebhookReceiver, client: httpx.Client
) -> None:
    n8n.mode = "fail"
    config = _config(n8n, slack)
    outcome = send_alert(client, config, SECRET, _document(_alert(Priority.P3), config))
    assert (outcome.delivered, outcome.via, outcome.fallback) == (True, ["slack"], True)
    assert "n8n did not accept this alert (HTTP 503)" in slack.accepted()[0].body.decode()


def test_n8n_timeout_falls_back_to_slack(
    n8n: WebhookReceiver, slack: WebhookReceiver, client: httpx.Client
) -> None:
    n8n.mode = "hang"
    n8n.hang_s = 1.5
    config = _config(n8n, slack)
    outcome = send_alert(client, config, SECRET, _document(_alert(Priority.P3), config))
    assert (outcome.delivered, outcome.fallback) == (True, True)
    assert [r.summary for r in outcome.results] == ["timeout", "HTTP 200"]


def test_n8n_refusing_the_request_is_retried_not_replaced(
    n8n: WebhookReceiver, slack: WebhookReceiver, client: httpx.Client
) -> None:
    n8n.mode = "fail"
    n8n.fail_status = 404  # workflow not active: a mistake to fix, not an outage
    config = _config(n8n, slack)
    outcome = send_alert(client, config, SECRET, _document(_alert(Priority.P3), config))
    assert (outcome.delivered, outcome.via) == (False, [])
    assert outcome.error == "n8n: HTTP 404"
    assert slack.requests == []


def test_a_wrong_token_is_rejected_by_the_receiver(
    n8n: WebhookReceiver, client: httpx.Client
) -> None:
    config = _config(n8n, None).model_copy(update={"n8n_token": SecretStr("wrong")})
    outcome = send_alert(client, config, SECRET, _document(_alert(Priority.P3), config))
    assert not outcome.delivered
    assert outcome.error == "n8n: HTTP 401"
    assert n8n.requests[0].signature_ok and not n8n.requests[0].token_ok


def test_a_retry_only_goes_to_sinks_that_have_not_accepted(
    n8n: WebhookReceiver, slack: WebhookReceiver, client: httpx.Client
) -> None:
    config = _config(n8n, slack)
    outcome = send_alert(client, config, SECRET, _document(config=config), already=["slack"])
    assert (outcome.delivered, outcome.via) == (True, ["slack", "n8n"])
    assert slack.requests == []


def test_connection_refused_everywhere_is_a_failed_attempt(client: httpx.Client) -> None:
    down = WebhookReceiver(secret=SECRET).start()
    down.stop()
    config = AlertsConfig(
        n8n_base_url=down.url,
        slack_webhook_url=SecretStr(down.url + "/hook"),
        signing_secret=SecretStr(SECRET),
    )
    outcome = send_alert(client, config, SECRET, _document(config=config))
    assert not outcome.delivered
    assert outcome.error == "n8n: connection failed; slack: connection failed"
    assert "127.0.0.1" not in outcome.error


def test_send_test_alert_reaches_every_configured_sink(
    n8n: WebhookReceiver, slack: WebhookReceiver, client: httpx.Client
) -> None:
    config = _config(n8n, slack)
    results = send_test_alert(client, config, Priority.P3)
    assert [(r.sink, r.ok) for r in results] == [(Sink.N8N, True), (Sink.SLACK, True)]
    body = n8n.accepted()[0].json()
    assert body["test"] is True and body["kind"] == "test"
    assert n8n.accepted()[0].path == "/webhook/ringwatch-p3"


# --- the command line ---------------------------------------------------------------------------


def _env(n8n: WebhookReceiver | None, slack: WebhookReceiver | None) -> dict[str, str]:
    env = {
        "RINGWATCH_ALERTS__SIGNING_SECRET": SECRET,
        "RINGWATCH_ALERTS__N8N_BASE_URL": "",
        "RINGWATCH_ALERTS__SLACK_WEBHOOK_URL": "",
    }
    if n8n is not None:
        env["RINGWATCH_ALERTS__N8N_BASE_URL"] = n8n.url
        env["RINGWATCH_ALERTS__N8N_TOKEN"] = TOKEN
    if slack is not None:
        env["RINGWATCH_ALERTS__SLACK_WEBHOOK_URL"] = slack.url
    return env


def test_cli_alerts_test_prints_each_sink(n8n: WebhookReceiver, slack: WebhookReceiver) -> None:
    result = run_cli("alerts", "test", "--priority", "P2", env=_env(n8n, slack))
    assert result.code == 0, result.stderr
    assert "n8n    accepted HTTP 200" in result.stdout
    assert "slack  accepted HTTP 200" in result.stdout
    assert "/webhook/ringwatch-p2" in result.stdout
    assert slack.url not in result.stdout + result.stderr  # the Slack URL is a secret
    assert n8n.accepted()[0].json()["test"] is True
    assert block_kit_errors(slack.accepted()[0].json()) == []


def test_cli_alerts_test_fails_in_one_line_when_a_sink_rejects(
    n8n: WebhookReceiver, slack: WebhookReceiver
) -> None:
    n8n.mode = "fail"
    result = run_cli("alerts", "test", env=_env(n8n, slack))
    assert_one_line_error(result, "1 of 2 sink(s) did not accept the test alert", "n8n HTTP 503")
    assert "slack  accepted" in result.stdout


def test_cli_alerts_test_without_a_sink_is_one_clear_line() -> None:
    result = run_cli("alerts", "test", env=_env(None, None))
    assert_one_line_error(result, "no alert sink is configured", "N8N_BASE_URL")


def test_cli_alerts_test_without_a_signing_secret_is_one_clear_line(
    slack: WebhookReceiver,
) -> None:
    env = {**_env(None, slack), "RINGWATCH_ALERTS__SIGNING_SECRET": ""}
    result = run_cli("alerts", "test", env=env)
    assert_one_line_error(result, "RINGWATCH_ALERTS__SIGNING_SECRET must be set")
    assert slack.requests == []


def test_cli_alerts_test_rejects_an_unknown_priority(slack: WebhookReceiver) -> None:
    result = run_cli("alerts", "test", "--priority", "P9", env=_env(None, slack))
    assert_one_line_error(result, "unknown priority 'P9'")


def test_sample_alert_ids_are_fresh() -> None:
    first, second = sample_alert(Priority.P1), sample_alert(Priority.P1)
    assert first.id != second.id and first.id.startswith("alert-test-")
    assert first.created_at <= datetime.now(UTC) + timedelta(seconds=1)


def test_an_empty_n8n_token_sends_no_authorization_header(client: httpx.Client) -> None:
    receiver = WebhookReceiver(secret=SECRET).start()
    try:
        config = _config(receiver, None).model_copy(update={"n8n_token": SecretStr("")})
        outcome = send_alert(client, config, SECRET, _document(_alert(Priority.P3), config))
        assert outcome.delivered
        assert "authorization" not in receiver.requests[0].headers
    finally:
        receiver.stop()
