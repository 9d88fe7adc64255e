"""Counts of what the graph holds, for operators and the run command's summary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import LiteralString

from ringwatch.graph.db import QueryRunner

NODE_LABELS: tuple[LiteralString, ...] = (
    "Subscriber",
    "Device",
    "Address",
    "PaymentMethod",
    "Phone",
    "Email",
    "IP",
    "Transaction",
    "Merchant",
    "UsageBucket",
    "IngestedEvent",
    "Label",
    "Ring",
    "Alert",
)
RELATIONSHIP_TYPES: tuple[LiteralString, ...] = (
    "USES_DEVICE",
    "HAS_ADDRESS",
    "PAYS_WITH",
    "HAS_PHONE",
    "HAS_EMAIL",
    "USES_IP",
    "MADE",
    "TO",
    "ON_DEVICE",
    "FROM_IP",
    "HAS_USAGE",
    "ABOUT",
)
IDENTIFIER_LABELS: tuple[LiteralString, ...] = (
    "Device",
    "Address",
    "PaymentMethod",
    "Phone",
    "Email",
    "IP",
)

# Static labels and types (product constants, not input): a count per label or type then comes
# from Neo4j's count store in constant time, where a dynamic label would scan every node.
_NODES: LiteralString = " UNION ALL ".join(
    f"MATCH (n:{label}) RETURN '{label}' AS name, count(n) AS n" for label in NODE_LABELS
)
_RELATIONSHIPS: LiteralString = " UNION ALL ".join(
    f"MATCH ()-[r:{rel}]->() RETURN '{rel}' AS name, count(r) AS n" for rel in RELATIONSHIP_TYPES
)
_HUBS: LiteralString = " UNION ALL ".join(
    f"MATCH (n:{label}) WHERE n.hub RETURN '{label}' AS name, count(n) AS n"
    for label in IDENTIFIER_LABELS
)


@dataclass(frozen=True)
class GraphStats:
    nodes: dict[str, int]
    relationships: dict[str, int]
    hubs: dict[str, int]


def _counts(runner: QueryRunner, query: LiteralString) -> dict[str, int]:
    return {str(r["name"]): int(r["n"]) for r in runner.read(query) if r["n"]}


def graph_stats(runner: QueryRunner) -> GraphStats:
    return GraphStats(
        nodes=_counts(runner, _NODES),
        relationships=_counts(runner, _RELATIONSHIPS),
        hubs=_counts(runner, _HUBS),
    )
