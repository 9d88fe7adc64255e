"""`ringwatch analyze` end to end on a simulated population, as a user runs it."""

from __future__ import annotations

from collections.abc import Callable

from confluent_kafka import Consumer

from ringwatch.config import Settings
from ringwatch.graph.api_keys import verify_key
from ringwatch.graph.db import Neo4jRunner
from ringwatch.graph.writer import GraphWriter
from ringwatch.ingest.prepare import Preparer
from ringwatch.ingest.simulate import SimulationConfig, simulate
from tests.cli_helpers import run_cli


def test_analyze_finds_ranks_and_publishes_rings(
    graph: Neo4jRunner, settings: Settings, unique_name: Callable[[str], str]
) -> None:
    population = simulate(SimulationConfig(subscribers=300, months=1, seed=7))
    preparer = Preparer()
    writer = GraphWriter(graph, hub_cap=settings.scoring.hub_cap)
    for family in (population.identity, population.labels, population.transactions):
        for start in range(0, len(family), 2000):
            writer.write([preparer.prepare(event) for event in family[start : start + 2000]])
    rings_topic = unique_name("rings")
    env = {
        "RINGWATCH_NEO4J__URI": settings.neo4j.uri,
        "RINGWATCH_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "RINGWATCH_KAFKA__TOPIC_RINGS": rings_topic,
        "RINGWATCH_KAFKA__TOPIC_ALERTS": f"alerts-{rings_topic}",
        "RINGWATCH_MODELS__DIR": str(settings.models.dir),  # no model promoted there
    }

    first = run_cli("analyze", "--top", "5", env=env, timeout=600)
    assert first.code == 0, first.stderr
    assert "rings by risk" in first.stdout and "Investigate in Neo4j Browser" in first.stdout
    rings = graph.read(
        "MATCH (r:Ring {status: 'active'}) RETURN r.id AS id, r.risk AS risk, r.reasons AS why"
    )
    assert rings and all(0.0 <= ring["risk"] <= 1.0 and ring["why"] for ring in rings)
    scored = graph.read(
        "MATCH (s:Subscriber) RETURN count(s) AS all, count(s.risk) AS scored, "
        "count(s.usage_risk) AS usage"
    )[0]
    assert scored["all"] == scored["scored"] == scored["usage"] > 0

    # Every ring's creation reached the rings topic.
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": rings_topic,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([rings_topic])
    seen: set[bytes] = set()
    for _ in range(30):
        for message in consumer.consume(500, timeout=1.0):
            key = message.key()
            if message.error() is None and isinstance(key, bytes):
                seen.add(key)
        if len(seen) >= len(rings):
            break
    consumer.close()
    assert {ring["id"].encode() for ring in rings} <= seen

    # A second run changes no ring and publishes nothing new.
    second = run_cli("analyze", "--top", "0", env=env, timeout=600)
    assert second.code == 0, second.stderr
    assert f"{len(rings)} unchanged" in second.stdout.replace(",", "")
    assert graph.read("MATCH (e:RingEvent {published: false}) RETURN count(e) AS n")[0]["n"] == 0

    # `examples` prints a working key and a curl per main endpoint, with real ids.
    shown = run_cli("examples", "--name", "cli-test", env=env)
    assert shown.code == 0, shown.stderr
    assert shown.stdout.count("curl -s") >= 10
    top_ring = graph.read(
        "MATCH (r:Ring {status: 'active'}) RETURN r.id AS id ORDER BY r.risk DESC LIMIT 1"
    )[0]["id"]
    assert f"/v1/rings/{top_ring}" in shown.stdout
    demo_key = shown.stdout.split("RINGWATCH_KEY='", 1)[1].split("'", 1)[0]
    assert verify_key(graph, demo_key, settings.api.api_key_pepper.get_secret_value()) is not None
