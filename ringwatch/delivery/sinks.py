"""The receivers (n8n, Slack), which alerts go to which, and one HTTP request to one of them.

A request succeeds on a 2xx answer and on nothing else. A failure is *unavailable* when the
receiver is down or overloaded (a 5xx, 408 or 429 answer, a timeout, a refused or broken
connection): that is what makes Slack stand in for n8n. Errors are reported as short phrases
("HTTP 503", "timeout", "connection failed"): never a URL (a Slack webhook URL is a secret),
never a response body (it may echo the alert).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum

import httpx

from ringwatch import __version__
from ringwatch.config import AlertsConfig
from ringwatch.exceptions import ConfigurationError

log = logging.getLogger(__name__)

USER_AGENT = f"ringwatch/{__version__}"
PRIORITIES = ("P1", "P2", "P3", "P4")


class Sink(StrEnum):
    N8N = "n8n"
    SLACK = "slack"


@dataclass(frozen=True, slots=True)
class SendResult:
    """What one request to one receiver came to."""

    sink: Sink
    ok: bool
    status: int | None = None
    error: str | None = None
    unavailable: bool = False
    retry_after_s: float | None = None

    @property
    def summary(self) -> str:
        if self.ok:
            return f"HTTP {self.status}"
        return self.error or "failed"


def configured_sinks(config: AlertsConfig) -> list[Sink]:
    sinks = []
    if config.n8n_base_url:
        sinks.append(Sink.N8N)
    if config.slack_webhook_url is not None and config.slack_webhook_url.get_secret_value():
        sinks.append(Sink.SLACK)
    return sinks


def require_ready(config: AlertsConfig) -> str:
    """The signing secret, once a sink and the secret are both configured."""
    if not configured_sinks(config):
        raise ConfigurationError(
            "no alert sink is configured: set RINGWATCH_ALERTS__N8N_BASE_URL and/or "
            "RINGWATCH_ALERTS__SLACK_WEBHOOK_URL"
        )
    secret = config.signing_secret.get_secret_value() if config.signing_secret else ""
    if not secret:
        raise ConfigurationError(
            "RINGWATCH_ALERTS__SIGNING_SECRET must be set: every webhook is signed"
        )
    return secret


def routes(config: AlertsConfig, priority: str) -> list[Sink]:
    """The configured sinks an alert of `priority` goes to, n8n first."""
    sinks = configured_sinks(config)
    chosen = []
    if Sink.N8N in sinks and priority in config.n8n_priorities:
        chosen.append(Sink.N8N)
    if Sink.SLACK in sinks and priority in config.slack_priorities:
        chosen.append(Sink.SLACK)
    return chosen


def routed_priorities(config: AlertsConfig) -> list[str]:
    """Priorities that go somewhere; alerts of the others wait, pending, for a sink."""
    return [priority for priority in PRIORITIES if routes(config, priority)]


def can_fall_back(config: AlertsConfig) -> bool:
    return config.slack_fallback and Sink.SLACK in configured_sinks(config)


def n8n_url(config: AlertsConfig, priority: str) -> str:
    if not config.n8n_base_url:
        raise ConfigurationError("RINGWATCH_ALERTS__N8N_BASE_URL is not set")
    path = config.n8n_path_template.format(priority=priority.lower())
    return config.n8n_base_url.rstrip("/") + path


def slack_url(config: AlertsConfig) -> str:
    if config.slack_webhook_url is None:
        raise ConfigurationError("RINGWATCH_ALERTS__SLACK_WEBHOOK_URL is not set")
    return config.slack_webhook_url.get_secret_value()


def create_client(config: AlertsConfig) -> httpx.Client:
    """The HTTP client the worker uses: its timeout, no redirects (a redirect is a failure)."""
    return httpx.Client(
        timeout=httpx.Timeout(config.timeout_s),
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
    )


def post(
    client: httpx.Client, sink: Sink, url: str, body: bytes, headers: dict[str, str]
) -> SendResult:
    """POST `body` once; never raises for what the network or the receiver does."""
    try:
        response = client.post(url, content=body, headers=headers)
    except (httpx.InvalidURL, httpx.UnsupportedProtocol):
        return SendResult(sink, ok=False, error="invalid URL")
    except httpx.TimeoutException:
        return SendResult(sink, ok=False, error="timeout", unavailable=True)
    except httpx.TransportError:
        return SendResult(sink, ok=False, error="connection failed", unavailable=True)
    status = response.status_code
    if 200 <= status < 300:
        return SendResult(sink, ok=True, status=status)
    unavailable = status >= 500 or status in (408, 429)
    return SendResult(
        sink,
        ok=False,
        status=status,
        error=f"HTTP {status}",
        unavailable=unavailable,
        retry_after_s=parse_retry_after(response.headers.get("Retry-After")),
    )


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
