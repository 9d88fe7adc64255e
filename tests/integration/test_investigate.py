"""Every Browser investigation query (`cypher/investigate/`) on a small graph with known answers.

The graph: ring R-1 (s1, s2, s3; s1-s2 share a device, s2-s3 a card; s1 has an email of its
own), which absorbed R-0; ring R-2 (s4, s5, s6 share an address); s3 and s4 share a phone; a hub
IP links s1, s4 and s7; a dissolved ring and an unscored one; alerts, a label and a hub device.
Queries get their parameters as parameters, exactly as the `:param` lines give them in Browser.
"""

from __future__ import annotations

import ast
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from neo4j import Driver
from neo4j.graph import Node, Path, Relationship

from ringwatch.graph.db import Neo4jRunner
from ringwatch.graph.investigate import KitQuery, load_kit

KIT = load_kit()
T0 = datetime(2025, 3, 1, tzinfo=UTC)


def at(days: int) -> datetime:
    return T0 + timedelta(days=days)


_SUBSCRIBERS = [
    # id, ring, risk, priority, decision, reason codes, label
    ("sub-1", "R-1", 0.95, "P1", "BLOCK", ["graph.ring"], "fraud"),
    ("sub-2", "R-1", 0.7, "P2", "REVIEW", ["graph.ring"], None),
    ("sub-3", "R-1", 0.6, "P2", "REVIEW", ["graph.ring"], None),
    ("sub-4", "R-2", 0.35, "P3", "REVIEW", [], None),
    ("sub-5", "R-2", 0.32, "P3", "REVIEW", [], None),
    ("sub-6", "R-2", 0.31, "P3", "REVIEW", [], None),
    ("sub-7", None, 0.05, "P4", "APPROVE", [], None),
]
# kind, id, hub, subscribers, users (relationship type from the kind)
_IDENTIFIERS: list[tuple[str, str, bool, int, list[str]]] = [
    ("Device", "dev-1", False, 2, ["sub-1", "sub-2"]),
    ("PaymentMethod", "card-1", False, 2, ["sub-2", "sub-3"]),
    ("Email", "one@example.org", False, 1, ["sub-1"]),
    ("Phone", "+15550000001", False, 2, ["sub-3", "sub-4"]),
    ("Address", "1 main st", False, 3, ["sub-4", "sub-5", "sub-6"]),
    ("IP", "100.64.0.1", True, 60, ["sub-1", "sub-4", "sub-7"]),
    ("Device", "000000000000000", True, 120, []),
]
_LINK_TYPES = {
    "Device": "USES_DEVICE",
    "Address": "HAS_ADDRESS",
    "PaymentMethod": "PAYS_WITH",
    "Phone": "HAS_PHONE",
    "Email": "HAS_EMAIL",
    "IP": "USES_IP",
}


def build_graph(graph: Neo4jRunner) -> None:
    graph.write(
        "UNWIND $rows AS row "
        "CREATE (:Subscriber {id: row[0], status: 'active', created_at: $t0, ring_id: row[1], "
        "  risk: row[2], priority: row[3], decision: row[4], risk_reason_codes: row[5], "
        "  label: row[6]})",
        {"rows": [list(s) for s in _SUBSCRIBERS], "t0": T0},
    )
    for kind, link in _LINK_TYPES.items():
        # Labels and types come from the fixed mapping above, never from data.
        rows = [
            {"id": ident, "hub": hub, "subscribers": n, "users": users}
            for k, ident, hub, n, users in _IDENTIFIERS
            if k == kind
        ]
        graph.write(
            f"UNWIND $rows AS row CREATE (i:{kind} {{id: row.id, hub: row.hub, "
            "  subscribers: row.subscribers, first_seen: $t0}) "
            "WITH i, row UNWIND row.users AS user "
            "MATCH (s:Subscriber {id: user}) "
            f"CREATE (s)-[:{link} {{first_seen: $t0, last_seen: $t1, count: 2}}]->(i)",
            {"rows": rows, "t0": T0, "t1": at(20)},
        )
    reasons = json.dumps([{"code": "ring.strong_identifier", "text": "shares a device"}])
    graph.write(
        "UNWIND $rings AS ring "
        "CREATE (r:Ring {id: ring.id, status: ring.status, size: ring.size, risk: ring.risk, "
        "  priority: ring.priority, decision: ring.decision, reasons: $reasons, "
        "  reason_codes: ring.codes, identifier_types: ring.types, shared_identifiers: 2, "
        "  density: 0.667, new_account_share: 1.0, signup_burst_share: 0.67, "
        "  labelled_fraud: ring.fraud, labelled_legitimate: 0, mean_usage_risk: 0.21, "
        "  merged_into: ring.merged_into}) "
        "WITH r, ring UNWIND ring.members AS member "
        "MATCH (s:Subscriber {id: member}) CREATE (s)-[:MEMBER_OF {since: $t0}]->(r)",
        {
            "reasons": reasons,
            "t0": T0,
            "rings": [
                {"id": "R-1", "status": "active", "size": 3, "risk": 0.9, "priority": "P1",
                 "decision": "BLOCK", "codes": ["ring.strong_identifier"],
                 "types": ["device", "payment"], "fraud": 1, "merged_into": None,
                 "members": ["sub-1", "sub-2", "sub-3"]},
                {"id": "R-2", "status": "active", "size": 3, "risk": 0.4, "priority": "P3",
                 "decision": "REVIEW", "codes": ["ring.signup_burst"], "types": ["address"],
                 "fraud": 0, "merged_into": None, "members": ["sub-4", "sub-5", "sub-6"]},
                {"id": "R-4", "status": "active", "size": 5, "risk": None, "priority": None,
                 "decision": None, "codes": None, "types": None, "fraud": 0,
                 "merged_into": None, "members": []},
                {"id": "R-3", "status": "dissolved", "size": 0, "risk": 0.99, "priority": "P1",
                 "decision": "BLOCK", "codes": [], "types": [], "fraud": 0,
                 "merged_into": None, "members": []},
                {"id": "R-0", "status": "merged", "size": 0, "risk": 0.2, "priority": "P4",
                 "decision": "APPROVE", "codes": [], "types": [], "fraud": 0,
                 "merged_into": "R-1", "members": []},
            ],
        },
    )  # fmt: skip
    graph.write(
        "UNWIND $events AS event MATCH (r:Ring {id: event.ring}) "
        "CREATE (:RingEvent {id: event.id, ring_id: event.ring, kind: event.kind, at: event.at, "
        "  source: 'batch', size: event.size, members_added: event.added, members_removed: [], "
        "  from_rings: event.from_rings, into_ring: event.into_ring, into_rings: [], "
        "  split_from: [], published: true})-[:OF]->(r)",
        {
            "events": [
                {"id": "e0", "ring": "R-0", "kind": "created", "at": at(1), "size": 3,
                 "added": ["sub-1", "sub-2", "sub-9"], "from_rings": [], "into_ring": None},
                {"id": "e1", "ring": "R-1", "kind": "created", "at": at(2), "size": 3,
                 "added": ["sub-3"], "from_rings": [], "into_ring": None},
                {"id": "e2", "ring": "R-0", "kind": "merged", "at": at(3), "size": 0,
                 "added": [], "from_rings": [], "into_ring": "R-1"},
                {"id": "e3", "ring": "R-1", "kind": "merged", "at": at(3), "size": 4,
                 "added": ["sub-1", "sub-2"], "from_rings": ["R-0"], "into_ring": None},
                {"id": "e9", "ring": "R-2", "kind": "created", "at": at(4), "size": 3,
                 "added": ["sub-4", "sub-5", "sub-6"], "from_rings": [], "into_ring": None},
            ]
        },
    )  # fmt: skip
    graph.write(
        "UNWIND $alerts AS alert "
        "MATCH (e {id: alert.entity}) WHERE e:Subscriber OR e:Ring "
        "CREATE (:Alert {id: alert.id, kind: alert.kind, priority: alert.priority, "
        "  risk: alert.risk, status: alert.status, created_at: alert.at, "
        "  entity_kind: alert.entity_kind, entity_id: alert.entity, "
        "  reason_codes: ['x']})-[:ABOUT]->(e)",
        {
            "alerts": [
                {"id": "a1", "kind": "risk", "priority": "P1", "risk": 0.95, "status": "open",
                 "at": at(5), "entity_kind": "subscriber", "entity": "sub-1"},
                {"id": "a2", "kind": "ring.created", "priority": "P2", "risk": 0.9,
                 "status": "open", "at": at(4), "entity_kind": "ring", "entity": "R-1"},
                {"id": "a3", "kind": "risk", "priority": "P3", "risk": 0.35,
                 "status": "resolved", "at": at(6), "entity_kind": "subscriber",
                 "entity": "sub-4"},
            ]
        },
    )  # fmt: skip
    graph.write(
        "MATCH (s:Subscriber {id: 'sub-1'}) "
        "CREATE (:Label {id: 'l1', label: 'fraud', source: 'analyst', analyst: 'a.analyst', "
        "  reason: 'ring R-1', ts: $ts, ring_id: 'R-1'})-[:ABOUT]->(s)",
        {"ts": at(7)},
    )


def run(graph: Neo4jRunner, name: str, **params: Any) -> list[dict[str, Any]]:
    query = KIT[name]
    assert set(params) == query.used_params, "give the test every parameter the query uses"
    return graph.read(query.query, params)


def graph_of(driver: Driver, name: str, **params: Any) -> tuple[set[str], set[str]]:
    """(node ids, relationship types) of every node, relationship and path a query returns."""
    records, _, _ = driver.execute_query(KIT[name].query, params)
    nodes: set[str] = set()
    types: set[str] = set()

    def add(value: Any) -> None:
        if isinstance(value, Node):
            nodes.add(value["id"])
        elif isinstance(value, Relationship):
            types.add(value.type)
        elif isinstance(value, Path):
            for node in value.nodes:
                add(node)
            for relationship in value.relationships:
                add(relationship)

    for record in records:
        for value in record.values():
            add(value)
    return nodes, types


@pytest.fixture
def kit_graph(graph: Neo4jRunner) -> Neo4jRunner:
    build_graph(graph)
    return graph


def _example(query: KitQuery) -> dict[str, Any]:
    # The examples are plain literals (checked in the unit tests): Python reads them the same.
    return {
        name: ast.literal_eval(value.replace("true", "True").replace("false", "False"))
        for name, value in query.params.items()
    }


@pytest.mark.parametrize("name", sorted(KIT))
def test_neo4j_plans_every_query_without_a_warning(
    kit_graph: Neo4jRunner, driver: Driver, name: str
) -> None:
    query = KIT[name]
    _, summary, _ = driver.execute_query("EXPLAIN " + query.query, _example(query))
    # The driver is made like the product's: warnings and above, unknown names aside. A
    # deprecation (e.g. CALL { } without a scope clause) or a performance warning fails here.
    warnings = [
        status.status_description
        for status in summary.gql_status_objects
        if status.is_notification and status.raw_severity == "WARNING"
    ]
    assert warnings == [], warnings


def test_top_rings_lists_active_rings_riskiest_first(kit_graph: Neo4jRunner) -> None:
    rows = run(kit_graph, "top_rings", limit=10)
    assert [row["ring"] for row in rows] == ["R-1", "R-2", "R-4"]  # unscored last
    assert rows[0] == {
        "ring": "R-1",
        "size": 3,
        "risk": 0.9,
        "priority": "P1",
        "decision": "BLOCK",
        "shared_types": ["device", "payment"],
        "reasons": ["ring.strong_identifier"],
    }
    assert [row["ring"] for row in run(kit_graph, "top_rings", limit=1)] == ["R-1"]


def test_ring_shows_members_and_the_identifiers_they_share(
    kit_graph: Neo4jRunner, driver: Driver
) -> None:
    nodes, types = graph_of(driver, "ring", ringId="R-1")
    # The phone s3 shares only with s4 (outside), s1's own email and the hub IP stay out.
    assert nodes == {"R-1", "sub-1", "sub-2", "sub-3", "dev-1", "card-1"}
    assert types == {"MEMBER_OF", "USES_DEVICE", "PAYS_WITH"}
    assert graph_of(driver, "ring", ringId="R-404") == (set(), set())


def test_ring_of_subscriber_is_the_same_picture_from_a_member(
    kit_graph: Neo4jRunner, driver: Driver
) -> None:
    assert graph_of(driver, "ring_of_subscriber", subscriberId="sub-2") == graph_of(
        driver, "ring", ringId="R-1"
    )
    nodes, _ = graph_of(driver, "ring_of_subscriber", subscriberId="sub-5")
    assert nodes == {"R-2", "sub-4", "sub-5", "sub-6", "1 main st"}
    # In no ring: nothing to draw.
    assert graph_of(driver, "ring_of_subscriber", subscriberId="sub-7") == (set(), set())


def test_ring_reasons_give_the_evidence(kit_graph: Neo4jRunner) -> None:
    (row,) = run(kit_graph, "ring_reasons", ringId="R-1")
    assert row["risk"] == 0.9 and row["priority"] == "P1" and row["decision"] == "BLOCK"
    assert row["reason_codes"] == ["ring.strong_identifier"]
    assert row["labelled_fraud"] == 1 and row["density"] == 0.667
    assert json.loads(row["reasons"])[0]["text"] == "shares a device"


def test_ring_members_riskiest_first_with_their_links(kit_graph: Neo4jRunner) -> None:
    rows = run(kit_graph, "ring_members", ringId="R-1")
    assert [(r["subscriber"], r["priority"], r["linked_members"]) for r in rows] == [
        ("sub-1", "P1", 1),
        ("sub-2", "P2", 2),
        ("sub-3", "P2", 1),
    ]
    assert rows[0]["label"] == "fraud" and rows[0]["reasons"] == ["graph.ring"]


def test_shared_identifiers_list_who_else_and_mark_hubs(kit_graph: Neo4jRunner) -> None:
    rows = run(kit_graph, "shared_identifiers", subscriberId="sub-1")
    assert [
        (r["kind"], r["identifier"], r["hub"], r["shared_with"], r["others"]) for r in rows
    ] == [
        ("Device", "dev-1", False, 1, ["sub-2 (R-1)"]),
        ("Email", "one@example.org", False, 0, []),
        ("IP", "100.64.0.1", True, 2, ["sub-4 (R-2)", "sub-7"]),
    ]
    assert rows[0]["times"] == 2 and rows[0]["last_seen"].to_native() == at(20)


def test_path_between_subscribers_goes_around_hubs(kit_graph: Neo4jRunner, driver: Driver) -> None:
    records, _, _ = driver.execute_query(
        KIT["path_between_subscribers"].query, {"fromId": "sub-1", "toId": "sub-4"}
    )
    (record,) = records
    path: Path = record["path"]
    # Through the hub IP it would be two steps; the path must take the long way.
    assert [node["id"] for node in path.nodes] == [
        "sub-1", "dev-1", "sub-2", "card-1", "sub-3", "+15550000001", "sub-4",
    ]  # fmt: skip
    # Only the hub connects s1 and s7: no path.
    assert run(kit_graph, "path_between_subscribers", fromId="sub-1", toId="sub-7") == []


def test_recent_alerts_filter_by_status_and_priority(kit_graph: Neo4jRunner) -> None:
    rows = run(kit_graph, "recent_alerts", status="open", priorityAtLeast="P3", limit=25)
    assert [(r["alert"], r["priority"], r["about"], r["entity"], r["ring"]) for r in rows] == [
        ("a1", "P1", "subscriber", "sub-1", "R-1"),
        ("a2", "P2", "ring", "R-1", "R-1"),
    ]
    every = run(kit_graph, "recent_alerts", status="any", priorityAtLeast="P3", limit=25)
    assert [r["alert"] for r in every] == ["a3", "a1", "a2"]
    top = run(kit_graph, "recent_alerts", status="any", priorityAtLeast="P1", limit=25)
    assert [r["alert"] for r in top] == ["a1"]
    assert len(run(kit_graph, "recent_alerts", status="any", priorityAtLeast="P3", limit=1)) == 1


def test_hub_identifiers_most_shared_first(kit_graph: Neo4jRunner) -> None:
    rows = run(kit_graph, "hub_identifiers", limit=25)
    assert [(r["kind"], r["identifier"], r["subscribers"]) for r in rows] == [
        ("Device", "000000000000000", 120),
        ("IP", "100.64.0.1", 60),
    ]
    assert len(run(kit_graph, "hub_identifiers", limit=1)) == 1


def test_ring_lineage_includes_the_rings_merged_into_it(kit_graph: Neo4jRunner) -> None:
    rows = run(kit_graph, "ring_lineage", ringId="R-1")
    assert [(r["ring"], r["kind"]) for r in rows] == [
        ("R-0", "created"),
        ("R-1", "created"),
        ("R-0", "merged"),
        ("R-1", "merged"),
    ]
    assert rows[2]["into_ring"] == "R-1" and rows[3]["from_rings"] == ["R-0"]
    assert [r["kind"] for r in run(kit_graph, "ring_lineage", ringId="R-2")] == ["created"]


def test_subscriber_labels_show_the_newest_first(kit_graph: Neo4jRunner) -> None:
    (row,) = run(kit_graph, "subscriber_labels", subscriberId="sub-1")
    assert row["current_label"] == "fraud"
    assert (row["label"], row["source"], row["analyst"], row["ring"]) == (
        "fraud",
        "analyst",
        "a.analyst",
        "R-1",
    )
    (unlabelled,) = run(kit_graph, "subscriber_labels", subscriberId="sub-2")
    assert unlabelled["current_label"] is None and unlabelled["label"] is None
