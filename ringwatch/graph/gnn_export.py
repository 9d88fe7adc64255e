"""The identity graph as a PyTorch Geometric `HeteroData`, for training and batch inference.

One streaming pass over subscribers in pages ordered by id (each page one index seek and one
round trip, ``PAGE`` subscribers at a time): every subscriber comes back with its stored scores,
GDS values, FastRP embedding, ring size and every identifier it links to (id, subscriber count,
hub flag), so identifiers need no pass of their own and no query is made per node.

Node types: ``Subscriber`` and the six identifier labels (``Device``, ``Address``,
``PaymentMethod``, ``Phone``, ``Email``, ``IP``); edge types: the six link relationships from
subscriber to identifier and their reverses (``rev_USES_DEVICE`` ...), so messages flow both
ways (named as PyG's `ToUndirected` names them). Hubs are kept (neighbour sampling bounds
their fan-out) and flagged in their features.

Subscriber features (`SUBSCRIBER_FEATURES`, in this order):

- ``usage_risk`` and the weight of each usage reason (``usage.<rule>``, 0 when it did not fire);
- per identifier kind, ``links.<kind>`` (log1p of the number linked) and ``shared.<kind>``
  (log1p of those also used by someone else and not hubs); ``hub_links``; ``max_sharing``
  (log1p of the most subscribers on one of its non-hub identifiers);
- ``account_age_days`` (log1p, as of the export) and ``age_unknown``;
- GDS: ``pagerank`` and ``similarity_degree`` (log1p), ``ring_size`` (log1p), ``gds_missing``
  (not in the last projection), and the 32 FastRP numbers ``fastrp.0`` ... ``fastrp.31``.

``fraud_proximity`` is deliberately left out: it is a personalised PageRank started at the
subscribers labelled fraud, so it would hand the model the labels of the very nodes it is
evaluated on. Identifier features (`IDENTIFIER_FEATURES`): log1p of its subscriber count and
the hub flag. Labels: ``Subscriber.label`` fraud = 1, legitimate = 0, none = -1.

`subscriber_features` turns one subscriber's stored values into its feature row; live scoring
uses the same function on the neighbourhood it reads, so training and serving agree.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Container, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, LiteralString

import numpy as np

from ringwatch.graph.db import QueryRunner
from ringwatch.graph.writer import IDENTIFIER_SCHEMA
from ringwatch.ingest.normalize import IdentifierKind
from ringwatch.scoring import reasons as reason_codec
from ringwatch.scoring.usage import Component

if TYPE_CHECKING:
    from torch_geometric.data import HeteroData

log = logging.getLogger(__name__)

PAGE = 5_000
SUBSCRIBER = "Subscriber"
EMBEDDING_DIMENSION = 32
KINDS: tuple[IdentifierKind, ...] = tuple(IdentifierKind)
KIND_OF_RELATIONSHIP = {IDENTIFIER_SCHEMA[kind].relationship: kind for kind in KINDS}
LABEL_OF_RELATIONSHIP = {IDENTIFIER_SCHEMA[kind].relationship: IDENTIFIER_SCHEMA[kind].label
                         for kind in KINDS}  # fmt: skip
IDENTIFIER_LABELS: tuple[str, ...] = tuple(IDENTIFIER_SCHEMA[kind].label for kind in KINDS)
RELATIONSHIPS: tuple[str, ...] = tuple(IDENTIFIER_SCHEMA[kind].relationship for kind in KINDS)
LINKS: LiteralString = "USES_DEVICE|HAS_ADDRESS|PAYS_WITH|HAS_PHONE|HAS_EMAIL|USES_IP"

SUBSCRIBER_FEATURES: tuple[str, ...] = (
    "usage_risk",
    *(f"usage.{component.value}" for component in Component),
    *(f"links.{kind.value}" for kind in KINDS),
    *(f"shared.{kind.value}" for kind in KINDS),
    "hub_links",
    "max_sharing",
    "account_age_days",
    "age_unknown",
    "pagerank",
    "similarity_degree",
    "ring_size",
    "gds_missing",
    *(f"fastrp.{i}" for i in range(EMBEDDING_DIMENSION)),
)
IDENTIFIER_FEATURES: tuple[str, ...] = ("subscribers", "hub")
_INDEX = {name: i for i, name in enumerate(SUBSCRIBER_FEATURES)}
_DAY_MS = 86_400_000

# The values one subscriber contributes, as a map projection of `s`; shared with live scoring.
SUBSCRIBER_FIELDS: LiteralString = (
    "s {.id, .label, .usage_risk, .usage_reasons, .pagerank, .similarity_degree, .embedding,\n"
    "   .gnn_risk,\n"
    "   created_ms: coalesce(s.created_at, s.first_seen).epochMillis,\n"
    "   ring_size: [(s)-[:MEMBER_OF]->(r:Ring) | r.size][0],\n"
    f"   links: [(s)-[l:{LINKS}]->(i) | [type(l), i.id, coalesce(i.subscribers, 0),\n"
    "                                     coalesce(i.hub, false)]]}"
)

_PAGE_QUERY: LiteralString = (
    "MATCH (s:Subscriber) WHERE s.id > $after\n"
    "WITH s ORDER BY s.id LIMIT $limit\n"
    "RETURN " + SUBSCRIBER_FIELDS + " AS s"
)

_NEWEST_TRANSACTION: LiteralString = """
MATCH (t:Transaction) WHERE t.ts IS NOT NULL
RETURN t.ts.epochMillis AS ts ORDER BY t.ts DESC LIMIT 1
"""


def _log1p(value: float) -> float:
    return math.log1p(max(value, 0.0))


def subscriber_features(row: Mapping[str, Any], as_of_ms: int) -> list[float]:
    """The feature row of one subscriber from its stored values (`SUBSCRIBER_FIELDS`)."""
    x = [0.0] * len(SUBSCRIBER_FEATURES)
    x[_INDEX["usage_risk"]] = float(row.get("usage_risk") or 0.0)
    for reason in reason_codec.loads(row.get("usage_reasons")):
        index = _INDEX.get(reason.code)
        if index is not None:
            x[index] = max(x[index], float(reason.weight))
    links: dict[IdentifierKind, int] = dict.fromkeys(KINDS, 0)
    shared: dict[IdentifierKind, int] = dict.fromkeys(KINDS, 0)
    hubs, max_sharing = 0, 0
    for rel, _, users, hub in row.get("links") or []:
        kind = KIND_OF_RELATIONSHIP.get(rel)
        if kind is None:
            continue
        links[kind] += 1
        if hub:
            hubs += 1
        elif int(users) > 1:
            shared[kind] += 1
            max_sharing = max(max_sharing, int(users))
    for kind in KINDS:
        x[_INDEX[f"links.{kind.value}"]] = _log1p(links[kind])
        x[_INDEX[f"shared.{kind.value}"]] = _log1p(shared[kind])
    x[_INDEX["hub_links"]] = _log1p(hubs)
    x[_INDEX["max_sharing"]] = _log1p(max_sharing)
    created = row.get("created_ms")
    if created is None:
        x[_INDEX["age_unknown"]] = 1.0
    else:
        x[_INDEX["account_age_days"]] = _log1p((as_of_ms - int(created)) / _DAY_MS)
    x[_INDEX["pagerank"]] = float(row.get("pagerank") or 0.0)
    x[_INDEX["similarity_degree"]] = _log1p(float(row.get("similarity_degree") or 0.0))
    x[_INDEX["ring_size"]] = _log1p(float(row.get("ring_size") or 0.0))
    embedding = row.get("embedding")
    if embedding is None or len(embedding) != EMBEDDING_DIMENSION:
        x[_INDEX["gds_missing"]] = 1.0
    else:
        start = _INDEX["fastrp.0"]
        x[start : start + EMBEDDING_DIMENSION] = [float(v) for v in embedding]
    return x


def identifier_features(subscribers: int, hub: bool) -> list[float]:
    return [_log1p(subscribers), 1.0 if hub else 0.0]


def label_value(label: str | None) -> int:
    return 1 if label == "fraud" else 0 if label == "legitimate" else -1


def feature_names() -> dict[str, list[str]]:
    return {
        SUBSCRIBER: list(SUBSCRIBER_FEATURES),
        **{label: list(IDENTIFIER_FEATURES) for label in IDENTIFIER_LABELS},
    }


def edge_types() -> list[tuple[str, str, str]]:
    """Forward edge types in a fixed order (reverses are added by `ToUndirected`)."""
    return [(SUBSCRIBER, rel, LABEL_OF_RELATIONSHIP[rel]) for rel in RELATIONSHIPS]


@dataclass
class ExportSummary:
    """What was exported and how long it took (stored with a trained model)."""

    as_of: str
    subscribers: int = 0
    labelled_fraud: int = 0
    labelled_legitimate: int = 0
    identifiers: dict[str, int] = field(default_factory=dict)
    hubs: int = 0
    edges: dict[str, int] = field(default_factory=dict)
    pages: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ExportedGraph:
    """The `HeteroData` and the ids behind its node indices."""

    data: HeteroData
    subscriber_ids: list[str]
    identifier_ids: dict[str, list[str]]
    ring_sizes: np.ndarray
    summary: ExportSummary

    def index_of(self) -> dict[str, int]:
        return {sid: i for i, sid in enumerate(self.subscriber_ids)}


class GraphBuilder:
    """Accumulates subscriber rows (and their links) into the arrays of a `HeteroData`."""

    def __init__(self, as_of_ms: int) -> None:
        self.as_of_ms = as_of_ms
        self.subscriber_ids: list[str] = []
        self.x: list[list[float]] = []
        self.y: list[int] = []
        self.ring_sizes: list[int] = []
        self.identifier_index: dict[str, dict[str, int]] = {lb: {} for lb in IDENTIFIER_LABELS}
        self.identifier_x: dict[str, list[list[float]]] = {lb: [] for lb in IDENTIFIER_LABELS}
        self.edges: dict[str, tuple[list[int], list[int]]] = {r: ([], []) for r in RELATIONSHIPS}

    def add_subscriber(
        self, row: Mapping[str, Any], *, edges_to: Container[tuple[str, str]] | None = None
    ) -> int:
        """Add one subscriber row; with `edges_to`, only links to those (relationship, id)
        pairs become edges (its features still count every link)."""
        index = len(self.subscriber_ids)
        self.subscriber_ids.append(str(row["id"]))
        self.x.append(subscriber_features(row, self.as_of_ms))
        self.y.append(label_value(row.get("label")))
        self.ring_sizes.append(int(row.get("ring_size") or 0))
        for rel, ident, users, hub in row.get("links") or []:
            if rel not in self.edges or (edges_to is not None and (rel, ident) not in edges_to):
                continue
            target = self.add_identifier(LABEL_OF_RELATIONSHIP[rel], str(ident), int(users), hub)
            sources, targets = self.edges[rel]
            sources.append(index)
            targets.append(target)
        return index

    def add_identifier(self, label: str, ident: str, users: int, hub: bool) -> int:
        known = self.identifier_index[label]
        index = known.get(ident)
        if index is None:
            index = known[ident] = len(known)
            self.identifier_x[label].append(identifier_features(users, bool(hub)))
        return index

    def build(self) -> HeteroData:
        import torch
        from torch_geometric.data import HeteroData

        data = HeteroData()
        width = len(SUBSCRIBER_FEATURES)
        data[SUBSCRIBER].x = torch.tensor(self.x, dtype=torch.float32).reshape(-1, width)
        data[SUBSCRIBER].y = torch.tensor(self.y, dtype=torch.long)
        for label in IDENTIFIER_LABELS:
            features = self.identifier_x[label]
            x = torch.tensor(features, dtype=torch.float32).reshape(-1, len(IDENTIFIER_FEATURES))
            data[label].x = x
            data[label].hub = x[:, 1] > 0.5
        for src, rel, dst in edge_types():
            sources, targets = self.edges[rel]
            edge_index = torch.tensor([sources, targets], dtype=torch.long).reshape(2, -1)
            data[src, rel, dst].edge_index = edge_index
            # The reverse type, as `ToUndirected` names it (built here: cheaper per live score).
            data[dst, f"rev_{rel}", src].edge_index = edge_index.flip(0)
        return data


def newest_transaction_ms(runner: QueryRunner) -> int | None:
    rows = runner.read(_NEWEST_TRANSACTION)
    return int(rows[0]["ts"]) if rows else None


def stream_subscribers(runner: QueryRunner, page: int = PAGE) -> Iterator[list[dict[str, Any]]]:
    """Pages of subscriber rows (`SUBSCRIBER_FIELDS`), ordered by id."""
    after = ""
    while True:
        rows = runner.read(_PAGE_QUERY, {"after": after, "limit": page})
        if not rows:
            return
        batch = [row["s"] for row in rows]
        yield batch
        after = batch[-1]["id"]


def export_graph(
    runner: QueryRunner, *, as_of: datetime | None = None, page: int = PAGE
) -> ExportedGraph:
    """The whole identity graph as a `HeteroData`; see the module docstring."""
    started = time.perf_counter()
    if as_of is None:
        newest = newest_transaction_ms(runner)
        as_of_ms = newest if newest is not None else int(datetime.now(UTC).timestamp() * 1000)
    else:
        as_of_ms = int(as_of.timestamp() * 1000)
    builder = GraphBuilder(as_of_ms)
    pages = 0
    for batch in stream_subscribers(runner, page):
        pages += 1
        for row in batch:
            builder.add_subscriber(row)
    data = builder.build()
    y = data[SUBSCRIBER].y
    summary = ExportSummary(
        as_of=datetime.fromtimestamp(as_of_ms / 1000, UTC).isoformat(),
        subscribers=len(builder.subscriber_ids),
        labelled_fraud=int((y == 1).sum()),
        labelled_legitimate=int((y == 0).sum()),
        identifiers={label: int(data[label].num_nodes) for label in IDENTIFIER_LABELS},
        hubs=sum(int(data[label].hub.sum()) for label in IDENTIFIER_LABELS),
        edges={rel: len(builder.edges[rel][0]) for rel in RELATIONSHIPS},
        pages=pages,
        seconds=time.perf_counter() - started,
    )
    log.info("exported %d subscribers in %.2f s", summary.subscribers, summary.seconds)
    return ExportedGraph(
        data=data,
        subscriber_ids=builder.subscriber_ids,
        identifier_ids={
            label: list(builder.identifier_index[label]) for label in IDENTIFIER_LABELS
        },
        ring_sizes=np.asarray(builder.ring_sizes),
        summary=summary,
    )


def hub_masks(data: HeteroData) -> dict[str, Any]:
    """Identifier nodes flagged as hubs, per label (to leave out of component splits)."""
    return {label: data[label].hub for label in IDENTIFIER_LABELS if label in data.node_types}


def ids_of(exported: ExportedGraph, indices: Sequence[int]) -> list[str]:
    return [exported.subscriber_ids[i] for i in indices]
