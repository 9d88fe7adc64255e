"""The GDS pipeline on small graphs whose answers are known, and ring lineage on the real stack."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest
from graphdatascience import GraphDataScience
from neo4j import Driver

from ringwatch.config import ScoringConfig, Settings
from ringwatch.graph.analytics import AnalyticsError, PipelineOptions, run_pipeline
from ringwatch.graph.db import Neo4jRunner
from ringwatch.graph.rings import live_tracker, reconcile_rings
from ringwatch.graph.scoring_run import score_all
from ringwatch.graph.writer import GraphWriter
from tests.factories import identity, label, prepared

CONFIG = ScoringConfig()
AS_OF = datetime(2026, 11, 2, tzinfo=UTC)


class Population:
    """Writes registrations through the real ingest writer; one call is one transaction."""

    def __init__(self, graph: Neo4jRunner, *, live: bool = False, hub_cap: int = 50) -> None:
        tracker, types = live_tracker(CONFIG)
        self.writer = GraphWriter(
            graph,
            hub_cap=hub_cap,
            ring_tracker=tracker if live else None,
            ring_link_types=types if live else frozenset(),
        )
        self.events = 0

    def register(self, subscriber: str, **identifiers: list[str]) -> Any:
        self.events += 1
        event = identity(f"e-{self.events}", subscriber)
        event["identifiers"] = identifiers
        return self.writer.write(prepared(event))

    def label(self, subscriber: str, value: str) -> None:
        self.events += 1
        self.writer.write(prepared(label(f"l-{self.events}", subscriber, value)))


def email(name: str) -> list[str]:
    return [f"{name}@example.org"]


def address(number: int) -> list[str]:
    return [f"{number} Main Street, Springfield"]


def phone(last: int) -> list[str]:
    return [f"+1 212 555 {last:04d}"]


def subscribers(graph: Neo4jRunner) -> dict[str, dict[str, Any]]:
    rows = graph.read("MATCH (s:Subscriber) RETURN s.id AS id, s {.*} AS props")
    return {row["id"]: row["props"] for row in rows}


def similar_edges(graph: Neo4jRunner) -> dict[tuple[str, str], float]:
    rows = graph.read(
        "MATCH (a:Subscriber)-[r:SIMILAR_TO]->(b:Subscriber) "
        "RETURN a.id AS a, b.id AS b, r.score AS score"
    )
    return {(row["a"], row["b"]): row["score"] for row in rows}


def analyse(gds: GraphDataScience, driver: Driver, graph: Neo4jRunner) -> Any:
    run_pipeline(gds, driver, CONFIG)
    return reconcile_rings(graph, min_ring_size=CONFIG.min_ring_size)


def two_groups(people: Population) -> None:
    """{p1,p2,p3} share address 1 and an email, {q1,q2,q3} address 2 and an email; p3 and q1
    share a phone: one component, two communities."""
    for member in ("p1", "p2"):
        people.register(member, addresses=address(1), emails=email("p"))
    people.register("p3", addresses=address(1), emails=email("p"), phones=phone(1))
    people.register("q1", addresses=address(2), emails=email("q"), phones=phone(1))
    for member in ("q2", "q3"):
        people.register(member, addresses=address(2), emails=email("q"))


def a_pair(people: Population) -> None:
    """b1 and b2 share one email and nothing else: a component of two."""
    for member in ("b1", "b2"):
        people.register(member, emails=email("pair"))


def test_algorithms_write_known_answers(
    graph: Neo4jRunner, gds: GraphDataScience, driver: Driver
) -> None:
    people = Population(graph)
    two_groups(people)
    a_pair(people)
    people.register("loner", emails=email("loner"))
    people.label("p1", "fraud")

    report = run_pipeline(gds, driver, CONFIG)
    subs = subscribers(graph)

    # Weakly connected components: the two groups are one component, the pair another; a
    # subscriber sharing nothing is a component of its own.
    component = {sid: props.get("component_id") for sid, props in subs.items()}
    assert len({component[s] for s in ("p1", "p2", "p3", "q1", "q2", "q3")}) == 1
    assert component["b1"] == component["b2"] != component["p1"]
    assert component["loner"] not in (component["p1"], component["b1"], None)

    # Weighted Jaccard: p1 and p2 have the same identifiers (address 0.4 + email 0.3) -> 1.0;
    # p1 and p3: 0.7 shared of p3's 1.0 (plus phone 0.3) -> 0.7; p3 and q1 share only the
    # phone: 0.3 / (0.4 + 0.3 + 0.3 + 0.4 + 0.3) = 0.3 / 1.7 (seen in the weighted degree
    # below). Neo4j keeps each subscriber's most similar other.
    best = {a: (b, score) for (a, b), score in similar_edges(graph).items()}
    assert best.keys() == {"p1", "p2", "p3", "q1", "q2", "q3", "b1", "b2"}  # not the loner
    assert best["p1"][0] == "p2" and best["p1"][1] == pytest.approx(1.0)
    assert best["p3"][0] in ("p1", "p2") and best["p3"][1] == pytest.approx(0.7)
    assert best["q1"][0] in ("q2", "q3") and best["q1"][1] == pytest.approx(0.7)
    assert best["b1"][0] == "b2" and best["b1"][1] == pytest.approx(1.0)

    # Leiden: the phone bridge is weak, so the groups are two communities.
    community = {sid: props.get("community_id") for sid, props in subs.items()}
    assert len({community[s] for s in ("p1", "p2", "p3")}) == 1
    assert len({community[s] for s in ("q1", "q2", "q3")}) == 1
    assert community["p1"] != community["q1"]

    # Weighted degree on the similarity graph: p1 is linked to p2 (1.0) and p3 (0.7).
    assert subs["p1"]["similarity_degree"] == pytest.approx(1.7)
    assert subs["p3"]["similarity_degree"] == pytest.approx(0.7 + 0.7 + 0.3 / 1.7)
    # PageRank: subscribers in symmetric positions score the same, and all score.
    assert subs["p1"]["pagerank"] == pytest.approx(subs["p2"]["pagerank"])
    assert subs["q2"]["pagerank"] == pytest.approx(subs["q3"]["pagerank"])
    assert subs["q2"]["pagerank"] > 0

    # Closeness to labelled fraud (PageRank personalised on p1): highest at p1, higher for its
    # group than across the bridge, zero in a component with no fraud.
    proximity = {sid: props.get("fraud_proximity") or 0.0 for sid, props in subs.items()}
    assert proximity["p1"] > proximity["p2"] > proximity["q2"] > 0
    assert proximity["b1"] == 0.0
    assert report.labelled_fraud == 1

    # FastRP: 32 numbers; identical identifiers embed closer than different groups.
    def cosine(a: list[float], b: list[float]) -> float:
        dot = sum(x * y for x, y in zip(a, b, strict=True))
        return dot / (math.hypot(*a) * math.hypot(*b))

    embedding: dict[str, list[float]] = {
        sid: props.get("embedding") or [] for sid, props in subs.items()
    }
    assert len(embedding["p1"]) == 32
    assert cosine(embedding["p1"], embedding["p2"]) > cosine(embedding["p1"], embedding["q3"])

    # Every step was timed and the projection was dropped.
    assert {"project", "weakly connected components", "fastrp embeddings"} <= {
        step.name for step in report.steps
    }
    assert not gds.graph.exists("ringwatch-identity")


def test_a_recomputation_leaves_the_same_similarities_as_a_fresh_run(
    graph: Neo4jRunner, gds: GraphDataScience, driver: Driver
) -> None:
    people = Population(graph)
    two_groups(people)
    a_pair(people)
    run_pipeline(gds, driver, CONFIG)
    first = similar_edges(graph)
    assert ("b1", "b2") in first and ("p1", "p2") in first
    p3_before = next(score for (a, _), score in first.items() if a == "p3")

    # Between runs: the pair's only link becomes a hub (b1 and b2 keep no pair), p3 gains a
    # phone (its scores change), and two newcomers share an address (new pairs).
    graph.write("MATCH (e:Email) WHERE e.id STARTS WITH 'pair' SET e.hub = true")
    people.register("p3", phones=phone(2))
    people.register("c1", addresses=address(3))
    people.register("c2", addresses=address(3))
    report = run_pipeline(gds, driver, CONFIG)
    updated = similar_edges(graph)
    step = next(step for step in report.steps if step.name == "write similarities")
    assert step.detail["stored_before"] == len(first)  # compared with what was stored
    assert step.detail["dropped_unpaired"] == 2  # b1 -> b2 and b2 -> b1
    assert step.detail["background_s"] > 0

    # The same graph analysed from nothing stored gives exactly the same edges and scores.
    graph.write("MATCH ()-[r:SIMILAR_TO]->() DELETE r")
    run_pipeline(gds, driver, CONFIG)
    fresh = similar_edges(graph)
    assert updated.keys() == fresh.keys()
    for pair, score in fresh.items():
        assert updated[pair] == pytest.approx(score)
    assert ("b1", "b2") not in fresh and ("c1", "c2") in fresh
    p3_after = next(score for (a, _), score in fresh.items() if a == "p3")
    assert p3_after != pytest.approx(p3_before)  # 0.7 shared of 1.3 now


def test_a_graph_too_big_for_the_heap_stops_before_projecting(
    graph: Neo4jRunner, gds: GraphDataScience, driver: Driver
) -> None:
    people = Population(graph)
    two_groups(people)
    tiny_heap = PipelineOptions(max_heap_percentage=1e-6)
    with pytest.raises(AnalyticsError, match=r"projection needs up to .* of Neo4j's heap"):
        run_pipeline(gds, driver, CONFIG, tiny_heap)
    assert not gds.graph.list()  # nothing projected, nothing left behind
    assert all(props.get("component_id") is None for props in subscribers(graph).values())


def test_hubs_stay_out_of_the_projection(
    graph: Neo4jRunner, gds: GraphDataScience, driver: Driver
) -> None:
    people = Population(graph, hub_cap=3)
    for index in range(5):  # five strangers behind one email: over the cap, a hub
        people.register(f"stranger-{index}", emails=email("shared-mailbox"))
    analyse(gds, driver, graph)
    assert graph.read("MATCH (r:Ring) RETURN count(r) AS n")[0]["n"] == 0
    assert all(props.get("component_id") is None for props in subscribers(graph).values())


def ring_of(graph: Neo4jRunner, subscriber: str) -> str | None:
    rows = graph.read(
        "MATCH (:Subscriber {id: $id})-[:MEMBER_OF]->(r:Ring) RETURN r.id AS id", {"id": subscriber}
    )
    return rows[0]["id"] if rows else None


def events(graph: Neo4jRunner) -> list[dict[str, Any]]:
    return [
        dict(row["e"])
        for row in graph.read("MATCH (e:RingEvent) RETURN e {.*} AS e ORDER BY e.at, e.kind")
    ]


def test_ring_ids_are_stable_and_changes_have_lineage(
    graph: Neo4jRunner, gds: GraphDataScience, driver: Driver
) -> None:
    people = Population(graph)
    for member in ("a1", "a2", "a3"):
        people.register(member, emails=email("ring-a"))
    first = analyse(gds, driver, graph)
    ring_a = ring_of(graph, "a1")
    assert ring_a is not None and first.created == 1
    assert {ring_of(graph, m) for m in ("a2", "a3")} == {ring_a}

    # Unchanged membership: same id, nothing written, no new lineage.
    count = len(events(graph))
    again = analyse(gds, driver, graph)
    assert again.unchanged == 1 and again.created == 0
    assert ring_of(graph, "a1") == ring_a and len(events(graph)) == count

    # Growth keeps the id.
    people.register("a4", emails=email("ring-a"))
    grew = analyse(gds, driver, graph)
    assert grew.grew == 1 and ring_of(graph, "a4") == ring_a
    assert [e for e in events(graph) if e["kind"] == "grew"][-1]["members_added"] == ["a4"]

    # A second ring, then a subscriber bridging both: the larger ring absorbs the smaller.
    for member in ("b1", "b2", "b3"):
        people.register(member, emails=email("ring-b"))
    analyse(gds, driver, graph)
    ring_b = ring_of(graph, "b1")
    assert ring_b not in (None, ring_a)
    people.register("bridge", emails=[*email("ring-a"), *email("ring-b")])
    merged = analyse(gds, driver, graph)
    assert merged.merged == 1
    assert {ring_of(graph, m) for m in ("a1", "b1", "bridge")} == {ring_a}
    absorbed = graph.read(
        "MATCH (r:Ring {id: $id}) RETURN r.status AS status, r.merged_into AS into",
        {"id": ring_b},
    )[0]
    assert absorbed["status"] == "merged" and absorbed["into"] == ring_a
    merge_events = [e for e in events(graph) if e["kind"] == "merged"]
    assert {(e["ring_id"], e.get("into_ring")) for e in merge_events} >= {(ring_b, ring_a)}
    assert any(e["ring_id"] == ring_a and e["from_rings"] == [ring_b] for e in merge_events)

    # The bridge becomes a hub (over the cap): the ring splits; the bigger part keeps the id.
    graph.write("MATCH (e:Email) WHERE e.id STARTS WITH 'ring-b' SET e.hub = true")
    graph.write("MATCH (e:Email) WHERE e.id STARTS WITH 'ring-a' SET e.hub = false")
    people.register("b1", phones=phone(7))
    people.register("b2", phones=phone(7))
    people.register("b3", phones=phone(7))
    split = analyse(gds, driver, graph)
    assert split.split == 1 and split.created == 1
    assert ring_of(graph, "a1") == ring_a
    new_ring = ring_of(graph, "b1")
    assert new_ring not in (None, ring_a, ring_b)
    split_events = [e for e in events(graph) if e["kind"] == "split"]
    assert split_events[-1]["ring_id"] == ring_a and split_events[-1]["into_rings"] == [new_ring]
    created = [e for e in events(graph) if e["kind"] == "created" and e["ring_id"] == new_ring]
    assert created[0]["split_from"] == [ring_a]

    # Every link of the second ring becomes a hub: it falls apart and is dissolved.
    graph.write("MATCH (p:Phone) SET p.hub = true")
    dissolved = analyse(gds, driver, graph)
    assert dissolved.dissolved == 1 and ring_of(graph, "b1") is None
    status = graph.read("MATCH (r:Ring {id: $id}) RETURN r.status AS s", {"id": new_ring})
    assert status[0]["s"] == "dissolved"
    assert all(e["published"] is False for e in events(graph))


def test_live_path_forms_grows_and_merges_rings_without_a_batch_run(
    graph: Neo4jRunner, gds: GraphDataScience, driver: Driver
) -> None:
    people = Population(graph, live=True)
    assert people.register("a1", emails=email("live-a")).ring_events == []
    assert people.register("a2", emails=email("live-a")).ring_events == []
    # The third account on one email forms a ring in the same transaction.
    formed = people.register("a3", emails=email("live-a"), addresses=address(9))
    assert [(e.kind, e.source) for e in formed.ring_events] == [("created", "live")]
    ring_a = ring_of(graph, "a1")
    assert ring_a is not None and {ring_of(graph, m) for m in ("a2", "a3")} == {ring_a}

    # A newcomer sharing only the address of one member joins the ring at once.
    joined = people.register("a4", addresses=address(9))
    assert [e.kind for e in joined.ring_events] == ["grew"] and ring_of(graph, "a4") == ring_a

    # A chain: two subscribers outside rings, then a third linking them to the ring.
    people.register("c1", phones=phone(1))
    people.register("c2", phones=phone(1), emails=email("chain"))
    chained = people.register("c3", emails=email("chain"), addresses=address(9))
    assert ring_of(graph, "c1") == ring_a and chained.ring_events[0].kind == "grew"

    # A second live ring, then a bridge: merged into the larger.
    for member in ("b1", "b2", "b3"):
        people.register(member, emails=email("live-b"))
    ring_b = ring_of(graph, "b1")
    assert ring_b not in (None, ring_a)
    bridged = people.register("bridge", emails=[*email("live-a"), *email("live-b")])
    assert {e.kind for e in bridged.ring_events} == {"merged"}
    assert ring_of(graph, "b2") == ring_a
    size = graph.read("MATCH (r:Ring {id: $id}) RETURN r.size AS n", {"id": ring_a})[0]["n"]
    assert size == 11

    # The batch run agrees with the live path: same ring, nothing to change.
    reconciled = analyse(gds, driver, graph)
    assert reconciled.created == 0 and reconciled.unchanged == 1
    assert ring_of(graph, "bridge") == ring_a


def test_rescoring_does_not_duplicate_alerts(
    graph: Neo4jRunner, gds: GraphDataScience, driver: Driver, settings: Settings
) -> None:
    people = Population(graph)
    for member in ("f1", "f2", "f3", "f4"):
        people.register(member, emails=email("fraud-ring"), addresses=address(13))
    people.label("f1", "fraud")
    analyse(gds, driver, graph)

    first = score_all(graph, settings.scoring, as_of=AS_OF)
    alerts = graph.read("MATCH (a:Alert) RETURN a.dedup_key AS key, a.priority AS p")
    assert first.alerts_raised == len(alerts) > 0
    ring_alerts = [a for a in alerts if a["key"].startswith("ring:")]
    assert len(ring_alerts) == 1

    second = score_all(graph, settings.scoring, as_of=AS_OF)
    assert second.alerts_raised == 0
    assert graph.read("MATCH (a:Alert) RETURN count(a) AS n")[0]["n"] == len(alerts)

    # Reasons name the evidence: the labelled member and the shared email.
    reasons = graph.read(
        "MATCH (r:Ring)<-[:MEMBER_OF]-(:Subscriber {id: 'f2'}) RETURN r.reasons AS reasons"
    )[0]["reasons"]
    assert "1 of 4 members confirmed fraud" in reasons

    # Priority marker labels follow the priority (Neo4j Browser colours by them).
    marked = graph.read("MATCH (r:Ring) RETURN r.priority AS priority, labels(r) AS labels")[0]
    assert marked["priority"] in ("P1", "P2", "P3")
    assert set(marked["labels"]) == {"Ring", marked["priority"]}
