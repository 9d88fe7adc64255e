"""Runtime configuration.

One `Settings` object is read from the environment (prefix ``RINGWATCH_``, nested keys separated
by ``__``, e.g. ``RINGWATCH_NEO4J__URI``) and an optional ``.env`` file. Components never import a
global: they receive the frozen sub-config they need (``settings.neo4j``, ``settings.kafka`` ...).

Outside ``environment=development`` the settings refuse the defaults that are only safe on a
laptop (no Neo4j password, the development API key salt, unsigned webhooks).
"""

from __future__ import annotations

import json
import os
import string
from collections.abc import Callable
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ringwatch.exceptions import ConfigurationError

Port = Annotated[int, Field(ge=1, le=65535)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]

DEV_API_KEY_PEPPER = "ringwatch-development-pepper"


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Neo4jConfig(_Frozen):
    """Where the graph lives and how to reach it."""

    uri: str = "bolt://127.0.0.1:7687"
    user: str = "neo4j"
    password: SecretStr | None = Field(
        default=None, description="None means the server runs without authentication."
    )
    database: str = "neo4j"
    max_connection_pool_size: int = Field(default=50, ge=1)
    connection_timeout_s: float = Field(default=10.0, gt=0)

    @property
    def auth(self) -> tuple[str, str] | None:
        if self.password is None:
            return None
        return (self.user, self.password.get_secret_value())


def _list_from_environment(value: object, clean: Callable[[str], str] = str) -> object:
    """A list setting given as text: JSON (``["a", "b"]``) or comma-separated (``a,b``)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        return json.loads(text)
    return tuple(clean(part.strip()) for part in text.split(",") if part.strip())


class KafkaConfig(_Frozen):
    """Broker connection and topic names. ``extra`` is passed to librdkafka unchanged."""

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    topic_identity: str = "ringwatch.identity"
    topic_transactions: str = "ringwatch.transactions"
    topic_labels: str = "ringwatch.labels"
    topic_alerts: str = "ringwatch.alerts"
    topic_rings: str = "ringwatch.rings"
    topic_dead_letter: str = "ringwatch.dead-letter"
    consumer_group: str = "ringwatch-ingest"
    extra: dict[str, str | int | float | bool] = Field(default_factory=dict)

    def librdkafka(self) -> dict[str, str | int | float | bool]:
        """The connection settings as librdkafka configuration keys."""
        conf: dict[str, str | int | float | bool] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password is not None:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        conf.update(self.extra)
        return conf

    def topics(self) -> list[str]:
        return [self.topic_identity, self.topic_transactions, self.topic_labels,
                self.topic_alerts, self.topic_rings, self.topic_dead_letter]  # fmt: skip

    def under_prefix(self, prefix: str) -> KafkaConfig:
        """The same broker with every topic and the consumer group named under `prefix`, so
        that a test or benchmark run shares a broker with others without sharing data."""
        return self.model_copy(
            update={
                "topic_identity": f"{prefix}.identity",
                "topic_transactions": f"{prefix}.transactions",
                "topic_labels": f"{prefix}.labels",
                "topic_alerts": f"{prefix}.alerts",
                "topic_rings": f"{prefix}.rings",
                "topic_dead_letter": f"{prefix}.dead-letter",
                "consumer_group": f"{prefix}.group",
            }
        )

    def environment(self) -> dict[str, str]:
        """The ``RINGWATCH_KAFKA__*`` variables that give a child process the same broker,
        topics and group (credentials and ``extra`` excepted)."""
        names = ("bootstrap_servers", "security_protocol", "topic_identity",
                 "topic_transactions", "topic_labels", "topic_alerts", "topic_rings",
                 "topic_dead_letter", "consumer_group")  # fmt: skip
        return {f"RINGWATCH_KAFKA__{name.upper()}": str(getattr(self, name)) for name in names}


# The usage rules' reason codes (`ringwatch.scoring.usage.Component`, which imports this module).
USAGE_RULE_CODES = frozenset(
    f"usage.{name}"
    for name in (
        "daily_charge_limit",
        "zscore_spend",
        "zscore_data",
        "burst",
        "new_device",
        "new_ip",
        "impossible_travel",
        "short_calls",
        "night_calls",
        "many_destinations",
    )
)
# Read from the environment as JSON or comma-separated (see IngestConfig).
UsageRules = Annotated[tuple[str, ...], NoDecode]


class IngestConfig(_Frozen):
    """How the Kafka ingest workers batch and size their work."""

    batch_size: int = Field(default=2000, ge=1, le=50_000)
    poll_timeout_s: float = Field(default=0.5, gt=0)
    batch_linger_s: float = Field(
        default=0.0,
        ge=0,
        le=10,
        description="0: write what has arrived at once. Above 0: wait up to this long for a "
        "full batch (fewer, larger transactions; every event waits longer).",
    )
    max_message_bytes: int = Field(default=64 * 1024, ge=1024)
    workers: int = Field(default=1, ge=1)
    topic_partitions: int = Field(default=6, ge=1)
    default_region: str = Field(default="US", pattern=r"^[A-Z]{2}$")
    live_rings: bool = Field(
        default=True, description="Update ring membership inside each ingest transaction."
    )
    live_alerts: bool = Field(
        default=True,
        description="After each stored batch, raise alerts for rings created or grown live and "
        "for subscribers whose new transactions break a live usage rule.",
    )
    live_alert_usage_rules: UsageRules = Field(
        default=("usage.daily_charge_limit", "usage.burst"),
        description="Usage reason codes that raise a live alert, e.g. "
        "RINGWATCH_INGEST__LIVE_ALERT_USAGE_RULES=usage.daily_charge_limit,usage.burst.",
    )

    @field_validator("live_alert_usage_rules", mode="before")
    @classmethod
    def _rule_list(cls, value: object) -> object:
        return _list_from_environment(value)

    @field_validator("live_alert_usage_rules")
    @classmethod
    def _known_rules(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [code for code in value if code not in USAGE_RULE_CODES]
        if unknown:
            raise ValueError(
                f"unknown usage rule(s) {', '.join(unknown)}; known: "
                + ", ".join(sorted(USAGE_RULE_CODES))
            )
        return tuple(dict.fromkeys(value))


class ApiConfig(_Frozen):
    host: str = "127.0.0.1"
    port: Port = 8000
    api_key_pepper: SecretStr = SecretStr(DEV_API_KEY_PEPPER)
    max_request_bytes: int = Field(default=1_000_000, ge=1024)
    apply_schema_on_start: bool = True
    request_threads: int | None = Field(
        default=None,
        ge=1,
        le=200,
        description="Requests handled at once (default twice the CPU count); more wait their "
        "turn. See docs/benchmarks.md (API).",
    )

    max_in_flight: int = Field(
        default=32,
        ge=1,
        le=10_000,
        description="Requests in progress or waiting for a thread at most; beyond it, 503 with "
        "Retry-After at once rather than a long wait (health, metrics and the alert stream "
        "are not counted).",
    )

    def request_thread_count(self) -> int:
        return self.request_threads or 2 * (os.cpu_count() or 2)


PriorityName = Literal["P1", "P2", "P3", "P4"]
# Read from the environment by the validator below, not as JSON only: "P1,P2" works too.
Priorities = Annotated[tuple[PriorityName, ...], NoDecode]


class AlertsConfig(_Frozen):
    """Where alerts are delivered (n8n, Slack), how they are signed, routed and retried.

    Priority lists read from the environment as JSON or comma-separated, e.g.
    ``RINGWATCH_ALERTS__SLACK_PRIORITIES=P1,P2,P3``.
    """

    n8n_base_url: str | None = None
    n8n_token: SecretStr | None = None
    n8n_path_template: str = Field(
        default="/webhook/ringwatch-{priority}",
        description="Path under n8n_base_url; {priority} becomes p1, p2, p3 or p4.",
    )
    slack_webhook_url: SecretStr | None = None
    signing_secret: SecretStr | None = Field(
        default=None, description="HMAC-SHA256 key for the signature header on every webhook."
    )
    n8n_priorities: Priorities = ("P1", "P2", "P3", "P4")
    slack_priorities: Priorities = ("P1", "P2")
    slack_fallback: bool = Field(
        default=True,
        description="Send to Slack when n8n is unreachable (5xx, timeout, connection refused).",
    )
    api_base_url: str = Field(
        default="http://127.0.0.1:8000", description="The ringwatch API, for links in alerts."
    )
    browser_url: str = Field(
        default="http://127.0.0.1:7474/browser/",
        description="Neo4j Browser, for investigation links in alerts.",
    )
    max_attempts: int = Field(default=8, ge=1)
    backoff_initial_s: float = Field(default=1.0, gt=0)
    backoff_max_s: float = Field(default=300.0, gt=0)
    timeout_s: float = Field(default=10.0, gt=0, description="Per request to a receiver.")
    batch_size: int = Field(default=20, ge=1, le=1000)
    lease_s: float = Field(
        default=300.0,
        gt=0,
        description="How long a claimed alert is a worker's own before another may retake it.",
    )
    poll_interval_s: float = Field(default=2.0, gt=0)

    @field_validator("n8n_priorities", "slack_priorities", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return _list_from_environment(value, str.upper)

    @field_validator("n8n_path_template")
    @classmethod
    def _one_priority_field(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("n8n_path_template must start with '/'")
        fields = [name for _, name, _, _ in string.Formatter().parse(value) if name is not None]
        if fields != ["priority"]:
            raise ValueError("n8n_path_template must contain {priority} once and no other field")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be at least backoff_initial_s")
        # A claimed alert may need n8n, the Slack fallback and Slack: three requests.
        if self.lease_s <= 3 * self.timeout_s:
            raise ValueError("lease_s must be longer than three request timeouts (3 * timeout_s)")
        return self


class ScoringConfig(_Frozen):
    """Thresholds from the product specification; all of them configurable."""

    daily_charge_limit: float = Field(default=500.0, gt=0)
    zscore_threshold: float = Field(default=3.0, gt=0)
    zscore_min_history_days: int = Field(default=7, ge=2)
    min_ring_size: int = Field(default=3, ge=2)
    hub_cap: int = Field(default=50, ge=2, description="Subscribers per identifier before hub.")
    weight_address: Fraction = 0.4
    weight_payment: Fraction = 0.35
    weight_device: Fraction = 0.25
    # Not in the specification's defaults: emails and phone numbers shared between accounts are
    # strong links; IPs are shared by households and offices behind one router, so they do not
    # form rings by default (0 keeps a type out of the ring projection; it stays a feature).
    weight_phone: Fraction = 0.3
    weight_email: Fraction = 0.3
    weight_ip: Fraction = 0.0
    burst_transactions_per_hour: int = Field(
        default=20, ge=2, description="Transactions in one hour that count as a burst."
    )
    new_account_days: int = Field(
        default=30, ge=1, description="Accounts younger than this count as new."
    )
    impossible_travel_kmh: float = Field(default=900.0, gt=0)
    short_call_ratio: Fraction = Field(
        default=0.6, description="Share of calls under 10 s that counts as a call pattern."
    )
    night_call_ratio: Fraction = Field(default=0.4)
    distinct_destinations_per_day: int = Field(default=40, ge=2)
    min_labels_per_class: int = Field(
        default=20, ge=2, description="Labels of each class needed before the stacking model."
    )
    priority_p1: Fraction = 0.8
    priority_p2: Fraction = 0.5
    priority_p3: Fraction = 0.3
    decision_review: Fraction = 0.3
    decision_block: Fraction = 0.7
    pii_hmac_key: SecretStr | None = Field(
        default=None, description="When set, personal identifiers are stored as keyed hashes."
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not self.priority_p3 < self.priority_p2 < self.priority_p1:
            raise ValueError("priority thresholds must satisfy p3 < p2 < p1")
        if not self.decision_review < self.decision_block:
            raise ValueError("decision thresholds must satisfy review < block")
        return self


def _default_models_dir() -> Path:
    return Path.home() / ".ringwatch" / "models"


class ModelsConfig(_Frozen):
    """Where trained GNN models live and how training and serving use them."""

    dir: Path = Field(
        default_factory=_default_models_dir,
        description="Versioned model artefacts and the PROMOTED pointer.",
    )
    min_labels_per_class: int = Field(
        default=10,
        ge=2,
        description="Labelled fraud and legitimate subscribers needed to train a GNN; with "
        "fewer, `ringwatch train` fits the unsupervised anomaly fallback.",
    )
    live_fanout: int | None = Field(
        default=None,
        ge=1,
        description="Subscribers read per identifier when scoring live. By default the promoted "
        "model's own sample size at that hop (10 with the default training settings), which is "
        "what training and batch scoring give the model.",
    )
    reload_check_s: float = Field(
        default=30.0, ge=0, description="How often the API looks for a newly promoted model."
    )


def _default_stack_home() -> Path:
    return Path.home() / ".ringwatch" / "stack"


class StackConfig(_Frozen):
    """The local no-Docker runtime: where it lives, its ports and its memory."""

    home: Path = Field(default_factory=_default_stack_home)
    jar_cache: Path | None = Field(
        default=None, description="Where resolved jars live; default <home>/lib."
    )
    neo4j_bolt_port: Port = 7687
    neo4j_http_port: Port = 7474
    neo4j_heap: str = "1g"
    neo4j_pagecache: str = "512m"
    kafka_port: Port = 9092
    kafka_controller_port: Port = 9093
    kafka_heap: str = "512m"
    start_timeout_s: float = Field(default=120.0, gt=0)

    @property
    def lib_root(self) -> Path:
        return self.jar_cache if self.jar_cache is not None else self.home / "lib"

    @property
    def neo4j_bolt_uri(self) -> str:
        return f"bolt://127.0.0.1:{self.neo4j_bolt_port}"

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RINGWATCH_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
        frozen=True,
    )

    environment: Environment = Environment.DEVELOPMENT
    log_level: str = "INFO"
    neo4j: Neo4jConfig = Field(default_factory=Neo4jConfig)
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)
    stack: StackConfig = Field(default_factory=StackConfig)
    models: ModelsConfig = Field(default_factory=ModelsConfig)

    @model_validator(mode="after")
    def _refuse_unsafe_defaults(self) -> Self:
        if self.environment is Environment.DEVELOPMENT:
            return self
        problems = []
        if self.neo4j.password is None:
            problems.append("RINGWATCH_NEO4J__PASSWORD must be set")
        if self.api.api_key_pepper.get_secret_value() == DEV_API_KEY_PEPPER:
            problems.append("RINGWATCH_API__API_KEY_PEPPER must be set to a secret value")
        if self.scoring.pii_hmac_key is None:
            # Without a key, payment fingerprints are plain hashes of a small number space.
            problems.append("RINGWATCH_SCORING__PII_HMAC_KEY must be set (keys PII and payments)")
        if self.alerts.signing_secret is None and (
            self.alerts.n8n_base_url or self.alerts.slack_webhook_url
        ):
            problems.append("RINGWATCH_ALERTS__SIGNING_SECRET must be set when webhooks are")
        if problems:
            raise ValueError(
                f"unsafe settings for environment '{self.environment}': " + "; ".join(problems)
            )
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings read once per process (call ``get_settings.cache_clear()`` to re-read)."""
    try:
        return Settings()
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
