"""The running test stack: Bolt, GDS, Browser and Kafka answer, and `up` is idempotent."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient

from ringwatch.config import Settings, StackConfig
from ringwatch.graph import demo
from ringwatch.graph.db import Neo4jRunner
from ringwatch.service.app import create_app
from ringwatch.stack import manager


def test_bolt_round_trip(graph: Neo4jRunner) -> None:
    graph.write("CREATE (:Probe {id: $id, payload: $payload})", {"id": "p1", "payload": "ÿ'\";//"})
    rows = graph.read("MATCH (p:Probe {id: $id}) RETURN p.payload AS payload", {"id": "p1"})
    assert rows == [{"payload": "ÿ'\";//"}]


def test_server_is_neo4j_5_26_community(graph: Neo4jRunner) -> None:
    agent, edition = graph.server_info()
    assert agent.endswith("/5.26.24")
    assert edition == "community"


def test_browser_is_served(stack: StackConfig) -> None:
    response = httpx.get(f"http://127.0.0.1:{stack.neo4j_http_port}/browser/", timeout=10)
    assert response.status_code == 200
    assert "neo4j browser" in response.text.lower()


def test_status_reports_every_server_healthy_with_versions(stack: StackConfig) -> None:
    statuses = {s.name: s for s in manager.status(stack)}
    assert set(statuses) == {"neo4j", "kafka"}
    assert statuses["neo4j"].version == "5.26.24"
    assert statuses["kafka"].version == "3.9.1"
    assert statuses["neo4j"].health.checks["gds"].startswith("ok (2.13")
    for status in statuses.values():
        assert status.running and status.health.healthy, status.health.checks
        assert status.pid is not None


def test_second_up_starts_nothing_and_keeps_the_same_processes(stack: StackConfig) -> None:
    before = {s.name: s.pid for s in manager.status(stack)}
    result = manager.up(stack)
    assert result.started == []
    assert sorted(result.already_running) == ["kafka", "neo4j"]
    assert {s.name: s.pid for s in manager.status(stack)} == before


def test_demo_sample_is_written_once_and_read_back(graph: Neo4jRunner) -> None:
    demo.write_sample(graph)
    demo.write_sample(graph)
    shared = demo.read_shared_devices(graph)
    assert [(s.identifier, s.subscribers) for s in shared] == [
        ("demo-imei-356938035643809", ["demo-sub-1", "demo-sub-2", "demo-sub-3"])
    ]
    counts = graph.read("MATCH (s:Subscriber) RETURN count(s) AS n")
    assert counts == [{"n": len(demo.SAMPLE_SUBSCRIBERS)}]


@pytest.fixture
def client(settings: Settings, graph: Neo4jRunner) -> TestClient:
    return TestClient(create_app(settings))


def test_service_applies_the_schema_on_start_and_is_ready(
    client: TestClient, graph: Neo4jRunner
) -> None:
    with client:
        assert client.get("/healthz").json()["status"] == "ok"
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "checks": {"neo4j": "ok", "kafka": "ok"}}
    names = {row["name"] for row in graph.read("SHOW CONSTRAINTS YIELD name RETURN name")}
    assert "subscriber_id" in names
