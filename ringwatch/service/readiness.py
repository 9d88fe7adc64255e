"""Reachability checks behind /readyz; each returns "ok" or a short reason."""

from __future__ import annotations

import logging

from ringwatch.config import KafkaConfig
from ringwatch.graph.db import QueryRunner
from ringwatch.graph.exceptions import GraphError

# librdkafka reports every failed connection itself; readiness only answers the question.
_quiet_librdkafka = logging.getLogger("ringwatch.kafka.readiness")
_quiet_librdkafka.addHandler(logging.NullHandler())
_quiet_librdkafka.propagate = False


def check_neo4j(runner: QueryRunner) -> str:
    try:
        rows = runner.read("RETURN 1 AS one")
    except GraphError as exc:
        return f"unreachable: {exc}"
    return "ok" if rows and rows[0]["one"] == 1 else "unexpected answer"


def check_kafka(config: KafkaConfig, timeout_s: float = 2.0) -> str:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    try:
        admin = AdminClient(config.librdkafka(), logger=_quiet_librdkafka)
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        return f"unreachable: {exc.args[0].str() if exc.args else exc}"
    return "ok" if metadata.brokers else "no brokers"
