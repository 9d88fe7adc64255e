"""Settings: environment parsing, frozen sub-configs, and refusing unsafe production defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from ringwatch.config import Environment, KafkaConfig, ScoringConfig, Settings, get_settings
from ringwatch.exceptions import ConfigurationError


@pytest.fixture(autouse=True)
def _no_stray_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env from the working tree
    get_settings.cache_clear()


def test_development_defaults_match_the_specification() -> None:
    settings = Settings()
    assert settings.environment is Environment.DEVELOPMENT
    assert settings.scoring.daily_charge_limit == 500.0
    assert settings.scoring.zscore_threshold == 3.0
    assert settings.scoring.zscore_min_history_days == 7
    assert settings.scoring.min_ring_size == 3
    assert (
        settings.scoring.weight_address,
        settings.scoring.weight_payment,
        settings.scoring.weight_device,
    ) == (0.4, 0.35, 0.25)
    assert (
        settings.scoring.priority_p1,
        settings.scoring.priority_p2,
        settings.scoring.priority_p3,
    ) == (0.8, 0.5, 0.3)
    assert (settings.scoring.decision_review, settings.scoring.decision_block) == (0.3, 0.7)


def test_nested_values_come_from_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RINGWATCH_NEO4J__URI", "neo4j://graph.internal:7687")
    monkeypatch.setenv("RINGWATCH_NEO4J__PASSWORD", "s3cret")
    monkeypatch.setenv("RINGWATCH_KAFKA__BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("RINGWATCH_STACK__NEO4J_BOLT_PORT", "17000")
    settings = Settings()
    assert settings.neo4j.uri == "neo4j://graph.internal:7687"
    assert settings.neo4j.auth == ("neo4j", "s3cret")
    assert settings.kafka.librdkafka()["bootstrap.servers"] == "k1:9092,k2:9092"
    assert settings.stack.neo4j_bolt_uri == "bolt://127.0.0.1:17000"


def test_secrets_never_show_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RINGWATCH_NEO4J__PASSWORD", "hunter2-very-secret")
    monkeypatch.setenv("RINGWATCH_ALERTS__SLACK_WEBHOOK_URL", "https://hooks.example/T/B/xyz")
    settings = Settings()
    assert "hunter2-very-secret" not in repr(settings)
    assert "hooks.example" not in repr(settings)


def test_sub_configs_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.neo4j.uri = "bolt://elsewhere:7687"  # type: ignore[misc]


def test_production_refuses_development_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RINGWATCH_ENVIRONMENT", "production")
    monkeypatch.setenv("RINGWATCH_ALERTS__SLACK_WEBHOOK_URL", "https://hooks.example/x")
    with pytest.raises(ConfigurationError) as info:
        get_settings()
    message = str(info.value)
    assert "RINGWATCH_NEO4J__PASSWORD" in message
    assert "RINGWATCH_API__API_KEY_PEPPER" in message
    assert "RINGWATCH_ALERTS__SIGNING_SECRET" in message
    assert "RINGWATCH_SCORING__PII_HMAC_KEY" in message


def test_production_accepts_explicit_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RINGWATCH_ENVIRONMENT", "production")
    monkeypatch.setenv("RINGWATCH_NEO4J__PASSWORD", "pw")
    monkeypatch.setenv("RINGWATCH_API__API_KEY_PEPPER", "pepper-from-a-vault")
    monkeypatch.setenv("RINGWATCH_SCORING__PII_HMAC_KEY", "key-from-a-vault")
    assert get_settings().environment is Environment.PRODUCTION


def test_thresholds_must_be_ordered() -> None:
    with pytest.raises(ValidationError, match="p3 < p2 < p1"):
        ScoringConfig(priority_p1=0.4, priority_p2=0.5)
    with pytest.raises(ValidationError, match="review < block"):
        ScoringConfig(decision_review=0.8, decision_block=0.7)
    with pytest.raises(ValidationError):
        ScoringConfig(weight_address=1.5)


def test_kafka_names_under_a_prefix_reach_a_child_process_unchanged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kafka = KafkaConfig(bootstrap_servers="k1:9092").under_prefix("run-7")
    assert kafka.topics() == ["run-7.identity", "run-7.transactions", "run-7.labels",
                              "run-7.alerts", "run-7.rings", "run-7.dead-letter"]  # fmt: skip
    assert kafka.consumer_group == "run-7.group"
    for name, value in kafka.environment().items():
        monkeypatch.setenv(name, value)
    assert Settings().kafka == kafka
    assert set(KafkaConfig().topics()).isdisjoint(kafka.topics())
