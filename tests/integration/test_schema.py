"""Schema migration against the real server: complete, idempotent, enforced."""

from __future__ import annotations

import pytest
from neo4j.exceptions import ConstraintError

from ringwatch.graph.db import Neo4jRunner
from ringwatch.graph.schema import list_constraints, list_indexes, migrate

NODE_KINDS = [
    "Subscriber",
    "Device",
    "Address",
    "PaymentMethod",
    "Phone",
    "Email",
    "IP",
    "Transaction",
    "Ring",
    "Alert",
]


def test_migration_twice_leaves_the_same_constraints_and_indexes(graph: Neo4jRunner) -> None:
    first = migrate(graph)
    second = migrate(graph)
    assert first.constraints == second.constraints
    assert first.indexes == second.indexes
    assert list_constraints(graph) == first.constraints
    assert list_indexes(graph) == first.indexes
    assert len(first.constraints) >= len(NODE_KINDS)


def test_every_node_kind_is_unique_on_id(graph: Neo4jRunner) -> None:
    migrate(graph)
    rows = graph.read(
        "SHOW CONSTRAINTS YIELD type, labelsOrTypes, properties "
        "WHERE type = 'UNIQUENESS' RETURN labelsOrTypes[0] AS label, properties"
    )
    unique_on_id = {row["label"] for row in rows if row["properties"] == ["id"]}
    assert set(NODE_KINDS) <= unique_on_id


@pytest.mark.parametrize("label", ["Subscriber", "Device", "Ring"])
def test_duplicate_ids_are_refused(graph: Neo4jRunner, label: str) -> None:
    migrate(graph)
    # Neo4j 5.26 takes a label as a parameter with $(...): still no text built from values.
    graph.write("CREATE (:$($label) {id: $id})", {"label": label, "id": "dup-1"})
    with pytest.raises(ConstraintError):
        graph.write("CREATE (:$($label) {id: $id})", {"label": label, "id": "dup-1"})
