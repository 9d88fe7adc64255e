"""Live ring tracking on the real stack: merges with loose subscribers, several rings in one
transaction, and how many statements an update costs."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any, LiteralString, TypeVar

from ringwatch.config import ScoringConfig
from ringwatch.graph import rings
from ringwatch.graph.db import Neo4jRunner, Record, Tx
from ringwatch.graph.rings import RingEvent, live_tracker
from ringwatch.graph.writer import GraphWriter, WriteResult
from tests.factories import identity, prepared

T = TypeVar("T")

# Every shape of the live apply statement (an update sends only the parts it needs).
LIVE_APPLY_SHAPES = {
    rings.live_apply_statement(creates=c, leaves=lv, joins=j, updates=u)
    for c, lv, j, u in itertools.product((False, True), repeat=4)
}


class RecordingRunner:
    """Passes everything to the real runner and keeps the statements each write transaction ran."""

    def __init__(self, inner: Neo4jRunner) -> None:
        self.inner = inner
        self.statements: list[str] = []

    def read(self, query: LiteralString, params: Mapping[str, Any] | None = None) -> list[Record]:
        return self.inner.read(query, params)

    def write(self, query: LiteralString, params: Mapping[str, Any] | None = None) -> list[Record]:
        return self.inner.write(query, params)

    def write_transaction(self, work: Callable[[Tx], T]) -> T:
        statements = self.statements

        class Recording:
            def __init__(self, tx: Tx) -> None:
                self.tx = tx

            def run(
                self, query: LiteralString, params: Mapping[str, Any] | None = None
            ) -> list[Record]:
                statements.append(query)
                return self.tx.run(query, params)

        statements.clear()
        return self.inner.write_transaction(lambda tx: work(Recording(tx)))


class People:
    """Registrations through the ingest writer with live tracking; one call, one transaction."""

    def __init__(self, graph: Neo4jRunner) -> None:
        self.runner = RecordingRunner(graph)
        config = ScoringConfig()
        self.tracker, types = live_tracker(config)
        self.writer = GraphWriter(
            self.runner, hub_cap=config.hub_cap, ring_tracker=self.tracker, ring_link_types=types
        )
        self.events = 0

    def register(self, *registrations: tuple[str, dict[str, list[str]]]) -> WriteResult:
        payloads = []
        for subscriber, identifiers in registrations:
            self.events += 1
            payload = identity(f"e-{self.events}", subscriber)
            payload["identifiers"] = identifiers
            payloads.append(payload)
        return self.writer.write(prepared(*payloads))

    def tracker_statements(self) -> list[str]:
        """The last transaction's ring statements, named: settle (one subscriber: lock,
        neighbours and a join or a new ring), lock+neighbours, walk, members, apply."""
        names = {
            self.tracker.settle_query: "settle",
            self.tracker.query: "neighbours",
            self.tracker.walk_query: "walk",
            rings._RING_MEMBERS: "members",
        }
        names |= {shape: "apply" for shape in LIVE_APPLY_SHAPES}
        return [names[s] for s in self.runner.statements if s in names]


def email(*names: str) -> dict[str, list[str]]:
    return {"emails": [f"{name}@example.org" for name in names]}


def phone(*lasts: int) -> dict[str, list[str]]:
    return {"phones": [f"+1 212 555 {last:04d}" for last in lasts]}


def ring_rows(graph: Neo4jRunner) -> dict[str, dict[str, Any]]:
    rows = graph.read(
        "MATCH (r:Ring) RETURN r.id AS id, r {.status, .size, .merged_into, .origin,"
        " closed: r.closed_at IS NOT NULL,"
        " members: COLLECT { MATCH (s:Subscriber)-[:MEMBER_OF]->(r) RETURN s.id ORDER BY s.id },"
        " ring_ids: COLLECT { MATCH (s:Subscriber)-[:MEMBER_OF]->(r) RETURN DISTINCT s.ring_id }"
        "} AS ring"
    )
    return {row["id"]: dict(row["ring"]) for row in rows}


def lineage(graph: Neo4jRunner, ring: str) -> list[dict[str, Any]]:
    rows = graph.read(
        "MATCH (e:RingEvent)-[:OF]->(:Ring {id: $ring}) RETURN e {.*} AS e ORDER BY e.kind",
        {"ring": ring},
    )
    keep = ("kind", "source", "size", "status", "members_added", "members_removed",
            "from_rings", "into_ring", "into_rings", "split_from", "published")  # fmt: skip
    return [{key: row["e"].get(key) for key in keep} for row in rows]


def summary(events: list[RingEvent]) -> list[tuple[str, str, list[str], list[str]]]:
    return [(e.kind, e.ring_id, sorted(e.members_added), sorted(e.members_removed))
            for e in events]  # fmt: skip


def event(kind: str, size: int, status: str = "active", **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"kind": kind, "source": "live", "size": size, "status": status,
                            "members_added": [], "members_removed": [], "from_rings": [],
                            "into_ring": None, "into_rings": [], "split_from": [],
                            "published": False}  # fmt: skip
    return base | fields


def test_one_subscribers_pair_join_or_new_ring_costs_one_statement(graph: Neo4jRunner) -> None:
    people = People(graph)
    people.register(("a1", email("a")))
    assert people.tracker_statements() == []  # nobody shares the email yet
    # The walk reaches a1 outside any ring; the same statement answered for a1 too.
    assert people.register(("a2", email("a"))).ring_events == []
    assert people.tracker_statements() == ["settle"]
    formed = people.register(("a3", email("a")))
    assert people.tracker_statements() == ["settle"]
    assert summary(formed.ring_events) == [("created", "R-1", ["a1", "a2", "a3"], [])]
    joined = people.register(("a4", email("a")))
    assert people.tracker_statements() == ["settle"]
    assert summary(joined.ring_events) == [("grew", "R-1", ["a4"], [])]
    people.register(("a1", phone(1)))  # a member's new identifier, shared with nobody
    assert people.tracker_statements() == []
    # A link between members of one ring changes nothing.
    assert people.register(("a2", phone(1))).ring_events == []
    assert people.tracker_statements() == ["settle"]
    # A member's new link to loose subscribers brings them into its ring.
    people.register(("b1", phone(2)))
    people.register(("b2", phone(2)))
    grown = people.register(("a3", phone(2)))
    assert people.tracker_statements() == ["settle"]
    assert summary(grown.ring_events) == [("grew", "R-1", ["b1", "b2"], [])]
    assert ring_rows(graph)["R-1"] == {
        "status": "active", "size": 6, "merged_into": None, "origin": "live", "closed": False,
        "members": ["a1", "a2", "a3", "a4", "b1", "b2"], "ring_ids": ["R-1"],
    }  # fmt: skip
    assert sorted(lineage(graph, "R-1"), key=lambda e: e["size"]) == [
        event("created", 3, members_added=["a1", "a2", "a3"]),
        event("grew", 4, members_added=["a4"]),
        event("grew", 6, members_added=["b1", "b2"]),
    ]
    assert [e.id for e in formed.ring_events + joined.ring_events + grown.ring_events] == [
        row["id"] for row in graph.read(
            "MATCH (e:RingEvent)-[:OF]->(:Ring {id: 'R-1'}) RETURN e.id AS id ORDER BY e.at"
        )
    ]  # fmt: skip
    lock = graph.read("MATCH (q:Sequence {id: 'live-rings'}) RETURN q.held_at AS at")
    assert lock and lock[0]["at"] is not None


def test_the_walk_goes_on_past_the_neighbours_it_answered_ahead(graph: Neo4jRunner) -> None:
    people = People(graph)
    people.register(("c1", phone(1)))
    people.register(("c2", phone(1) | email("c")))
    # c3 reaches c2 (answered ahead), c2 reaches c1, who needs one more query.
    chained = people.register(("c3", email("c")))
    assert people.tracker_statements() == ["settle", "walk", "apply"]
    assert summary(chained.ring_events) == [("created", "R-1", ["c1", "c2", "c3"], [])]
    # Without the tracker a longer chain can stay outside rings (as a backfill leaves it).
    plain = GraphWriter(graph, hub_cap=ScoringConfig().hub_cap)
    for index in range(6):  # k0-k1 share a phone, k1-k2 another, ...
        payload = identity(f"k-{index}", f"k{index}")
        payload["identifiers"] = phone(100 + index, 101 + index)
        plain.write(prepared(payload))
    walked = people.register(("kx", phone(103)))
    assert summary(walked.ring_events) == [
        ("created", "R-2", ["k0", "k1", "k2", "k3", "k4", "k5", "kx"], [])
    ]
    assert people.tracker_statements()[0] == "settle"
    assert set(people.tracker_statements()[1:-1]) == {"walk"}


def test_two_rings_and_loose_subscribers_merge_in_one_update(graph: Neo4jRunner) -> None:
    people = People(graph)
    for member in ("a1", "a2", "a3", "a4"):
        people.register((member, email("a")))
    for member in ("b1", "b2", "b3"):
        people.register((member, email("b")))
    people.register(("l1", phone(21)))
    people.register(("l2", phone(21)))  # a pair outside rings
    assert {r: v["members"] for r, v in ring_rows(graph).items()} == {
        "R-1": ["a1", "a2", "a3", "a4"],
        "R-2": ["b1", "b2", "b3"],
    }

    bridged = people.register(("bridge", email("a", "b") | phone(21)))

    # The bridge, the pair and ring R-2 join the larger R-1; a merge first reads the members
    # the absorbed ring gives up.
    assert people.tracker_statements() == ["settle", "members", "apply"]
    assert summary(bridged.ring_events) == [
        ("merged", "R-2", [], ["b1", "b2", "b3"]),
        ("merged", "R-1", ["b1", "b2", "b3", "bridge", "l1", "l2"], []),
    ]
    assert bridged.ring_events[1].from_rings == ["R-2"]
    assert bridged.ring_events[0].into_ring == "R-1"
    everyone = ["a1", "a2", "a3", "a4", "b1", "b2", "b3", "bridge", "l1", "l2"]
    assert ring_rows(graph) == {
        "R-1": {"status": "active", "size": 10, "merged_into": None, "origin": "live",
                "closed": False, "members": everyone, "ring_ids": ["R-1"]},
        "R-2": {"status": "merged", "size": 0, "merged_into": "R-1", "origin": "live",
                "closed": True, "members": [], "ring_ids": []},
    }  # fmt: skip
    assert lineage(graph, "R-1") == [
        event("created", 3, members_added=["a1", "a2", "a3"]),
        event("grew", 4, members_added=["a4"]),
        event("merged", 10, members_added=["b1", "b2", "b3", "bridge", "l1", "l2"],
              from_rings=["R-2"]),
    ]  # fmt: skip
    assert lineage(graph, "R-2") == [
        event("created", 3, members_added=["b1", "b2", "b3"]),
        event("merged", 0, "merged", members_removed=["b1", "b2", "b3"], into_ring="R-1"),
    ]
    # Every subscriber is in exactly one ring.
    counts = graph.read(
        "MATCH (s:Subscriber) RETURN s.id AS id, COUNT { (s)-[:MEMBER_OF]->() } AS n"
    )
    assert {row["id"]: row["n"] for row in counts} == dict.fromkeys(everyone, 1)


def test_a_member_bridging_to_a_larger_ring_brings_its_own_ring_along(graph: Neo4jRunner) -> None:
    people = People(graph)
    for member in ("s1", "s2", "s3"):
        people.register((member, email("s")))
    for member in ("t1", "t2", "t3", "t4"):
        people.register((member, email("t")))
    # The older ring R-1 is the smaller one: size wins over age.
    merged = people.register(("s1", email("t")))
    assert summary(merged.ring_events) == [
        ("merged", "R-1", [], ["s1", "s2", "s3"]),
        ("merged", "R-2", ["s1", "s2", "s3"], []),
    ]
    assert {r: (v["status"], v["size"]) for r, v in ring_rows(graph).items()} == {
        "R-1": ("merged", 0),
        "R-2": ("active", 7),
    }


def test_one_transaction_forms_two_rings_and_grows_a_third(graph: Neo4jRunner) -> None:
    people = People(graph)
    for member in ("g1", "g2", "g3"):
        people.register((member, email("g")))
    result = people.register(
        ("m1", email("m")), ("m2", email("m")), ("m3", email("m")),
        ("n1", email("n")), ("n2", email("n")), ("n3", email("n")), ("n4", email("n")),
        ("g4", email("g")),
    )  # fmt: skip
    assert people.tracker_statements() == ["neighbours", "apply"]
    assert summary(result.ring_events) == [
        ("grew", "R-1", ["g4"], []),
        ("created", "R-2", ["m1", "m2", "m3"], []),
        ("created", "R-3", ["n1", "n2", "n3", "n4"], []),
    ]
    assert {r: v["members"] for r, v in ring_rows(graph).items()} == {
        "R-1": ["g1", "g2", "g3", "g4"],
        "R-2": ["m1", "m2", "m3"],
        "R-3": ["n1", "n2", "n3", "n4"],
    }
    assert lineage(graph, "R-3") == [event("created", 4, members_added=["n1", "n2", "n3", "n4"])]
    assert lineage(graph, "R-2") == [event("created", 3, members_added=["m1", "m2", "m3"])]
    sequence = graph.read("MATCH (q:Sequence {id: 'ring'}) RETURN q.value AS value")
    assert sequence[0]["value"] == 3
