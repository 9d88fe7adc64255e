"""One real local stack per test session, on its own home and ports.

The test stack never shares ports or data with a developer's `ringwatch stack up`
(`RINGWATCH_TEST_STACK_HOME` moves it). Each test isolates itself: `graph` empties the database
and the GDS catalog first; Kafka tests get unique topics and consumer groups from factories.
If a server fails to start, the end of its logs is printed and the session stops.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from graphdatascience import GraphDataScience
from neo4j import Driver

from ringwatch.config import KafkaConfig, ModelsConfig, Neo4jConfig, Settings, StackConfig
from ringwatch.graph.db import Neo4jRunner, create_driver
from ringwatch.stack import manager
from ringwatch.stack.exceptions import StackError
from ringwatch.stack.process import tail
from ringwatch.stack.servers import all_servers

# RINGWATCH_TEST_PORT_OFFSET moves every port, to run a second suite beside the first.
_OFFSET = int(os.environ.get("RINGWATCH_TEST_PORT_OFFSET", "0"))
TEST_PORTS = {
    "neo4j_bolt_port": 17687 + _OFFSET,
    "neo4j_http_port": 17474 + _OFFSET,
    "kafka_port": 19092 + _OFFSET,
    "kafka_controller_port": 19093 + _OFFSET,
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stack_config() -> StackConfig:
    home = Path(
        os.environ.get("RINGWATCH_TEST_STACK_HOME", Path.home() / ".ringwatch" / "test-stack")
    )
    # The test stack uses the jars `make setup` resolved for the development stack.
    jars = StackConfig().lib_root
    return StackConfig(home=home, jar_cache=jars, start_timeout_s=180, **TEST_PORTS)  # type: ignore[arg-type]


def _log_tails(config: StackConfig) -> str:
    parts = []
    for server in all_servers(config):
        for log in sorted({server.main_log, server.process.console_log}):
            lines = tail(log, 40)
            parts.append(f"----- {log} (last {len(lines)} lines) -----")
            parts.extend(lines)
    return "\n".join(parts)


@pytest.fixture(scope="session")
def stack(stack_config: StackConfig) -> Iterator[StackConfig]:
    try:
        result = manager.up(stack_config)
    except StackError as exc:
        pytest.exit(f"test stack failed to start: {exc}\n{_log_tails(stack_config)}", returncode=1)
    yield stack_config
    # Leave a stack that was already running (started outside this session) as it was.
    if result.started:
        manager.down(stack_config)


@pytest.fixture(scope="session")
def settings(stack: StackConfig) -> Settings:
    return Settings(
        neo4j=Neo4jConfig(uri=stack.neo4j_bolt_uri),
        kafka=KafkaConfig(bootstrap_servers=stack.kafka_bootstrap),
        stack=stack,
        # A model promoted in a developer's ~/.ringwatch/models must not change API answers.
        models=ModelsConfig(dir=stack.home / "models"),
    )


@pytest.fixture(scope="session")
def driver(settings: Settings) -> Iterator[Driver]:
    with create_driver(settings.neo4j) as neo4j_driver:
        yield neo4j_driver


@pytest.fixture(scope="session")
def gds(settings: Settings) -> Iterator[GraphDataScience]:
    client = GraphDataScience(settings.neo4j.uri, auth=None)
    yield client
    client.close()


@pytest.fixture
def graph(driver: Driver) -> Neo4jRunner:
    """A runner on an empty database with an empty GDS graph catalog."""
    runner = Neo4jRunner(driver)
    runner.write(
        "CALL gds.graph.list() YIELD graphName "
        "CALL gds.graph.drop(graphName) YIELD graphName AS dropped RETURN count(dropped) AS n"
    )
    # Test graphs are small: one transaction empties the database.
    runner.write("MATCH (n) DETACH DELETE n")
    return runner


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """Names no other test (or earlier run) uses: topics, consumer groups, GDS graphs."""

    def make(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:12]}"

    return make


@pytest.fixture
def kafka_topic(
    settings: Settings, unique_name: Callable[[str], str]
) -> Iterator[Callable[..., str]]:
    """Factory for fresh topics, deleted when the test ends."""
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    admin = AdminClient(settings.kafka.librdkafka())
    created: list[str] = []

    def make(prefix: str = "test", partitions: int = 1) -> str:
        name = unique_name(prefix)
        admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[
            name
        ].result(timeout=30)
        created.append(name)
        return name

    yield make
    if created:
        for future in admin.delete_topics(created).values():
            future.result(timeout=30)


@dataclass(frozen=True)
class Api:
    """The real application on the test stack, with one key per scope."""

    client: TestClient
    keys: dict[str, str]

    def headers(self, scope: str = "read") -> dict[str, str]:
        return {"X-API-Key": self.keys[scope]}


@pytest.fixture
def api(graph: Neo4jRunner, settings: Settings) -> Iterator[Api]:
    """The API on an empty graph (keys created fresh), with the lifespan run (TestClient)."""
    from ringwatch.graph.api_keys import Scope, create_key
    from ringwatch.service.app import create_app

    pepper = settings.api.api_key_pepper.get_secret_value()
    keys = {
        scope.value: create_key(graph, f"test-{scope.value}", {scope}, pepper)[0] for scope in Scope
    }
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield Api(client, keys)
