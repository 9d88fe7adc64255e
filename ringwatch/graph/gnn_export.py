"""The identity graph as a PyTorch Geometric `HeteroData`, for training and batch inference.

One streaming pass over subscribers in pages ordered by id (each page one index seek and one
round trip, ``PAGE`` subscribers at a time, ``READERS`` ranges of ids read side by side): every
subscriber comes back with its stored scores, GDS values, FastRP embedding, ring size and every
identifier it links to (id, subscriber count, hub flag), so identifiers need no pass of their
own and no query is made per node.

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

`GraphBuilder` turns subscribers' stored values into feature rows; live scoring uses it on the
neighbourhood it reads, so training and serving agree.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Container, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
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
# Ranges of subscribers read at once: the server's work per page is most of an export and one
# query runs on one core, so two keep a two-core server busy (1M subscribers: 40 -> 26 s).
READERS = 2
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
# Where a model's config finds the identifier columns it reads: hub flags (to skip hubs) and
# user counts (to count neighbours); `TrainConfig.hub_feature` and `users_feature`.
IDENTIFIER_COLUMNS = {
    "hub_feature": IDENTIFIER_FEATURES.index("hub"),
    "users_feature": IDENTIFIER_FEATURES.index("subscribers"),
}
_INDEX = {name: i for i, name in enumerate(SUBSCRIBER_FEATURES)}
_USAGE_COLUMN = {f"usage.{c.value}": _INDEX[f"usage.{c.value}"] for c in Component}
_KIND_NUMBER = {IDENTIFIER_SCHEMA[kind].relationship: n for n, kind in enumerate(KINDS)}
_DAY_MS = 86_400_000
_EMBEDDING_BLOCK = 10_000
# A subscriber's stored values other than its links: keys of a `SUBSCRIBER_FIELDS` row and
# columns of a `_PAGE_QUERY` page, in the order `GraphBuilder._add_stored` takes them.
_STORED = ("id", "label", "ring_size", "usage_risk", "pagerank", "similarity_degree",
           "created_ms", "usage_reasons", "embedding")  # fmt: skip

# The values one subscriber contributes, as a map projection of `s`; shared with live scoring.
# Its pattern variables have names of their own: live scoring reads it where `i` is the
# identifier a neighbour was reached through, and a pattern reusing `i` would keep only the
# links to that one identifier.
SUBSCRIBER_FIELDS: LiteralString = (
    "s {.id, .label, .usage_risk, .usage_reasons, .pagerank, .similarity_degree, .embedding,\n"
    "   .gnn_risk,\n"
    "   created_ms: coalesce(s.created_at, s.first_seen).epochMillis,\n"
    "   ring_size: [(s)-[:MEMBER_OF]->(own_ring:Ring) | own_ring.size][0],\n"
    f"   links: [(s)-[own_link:{LINKS}]->(linked) |\n"
    "           [type(own_link), linked.id, coalesce(linked.subscribers, 0),\n"
    "            coalesce(linked.hub, false)]]}"
)

# One page of subscribers as columns (a list per field, links grouped by relationship type):
# the same values as `SUBSCRIBER_FIELDS`, without a map and a list per subscriber and link to
# decode, and ready for NumPy. A null stays in its column; an empty page returns empty lists.
# A range of the export reads pages up to its last id (`_PAGE_QUERY_UP_TO`); the last range,
# and an export in one range, reads to the end.
_PAGE_BODY: LiteralString = (
    "WITH s ORDER BY s.id LIMIT $limit\n"
    "WITH collect(s) AS page\n"
    "CALL (page) {\n"
    "  UNWIND range(0, size(page) - 1) AS row\n"
    "  WITH row, page[row] AS s\n"
    f"  MATCH (s)-[l:{LINKS}]->(i)\n"
    "  WITH type(l) AS type, collect(row) AS rows, collect(i.id) AS ids,\n"
    "       collect(coalesce(i.subscribers, 0)) AS users, collect(coalesce(i.hub, false)) AS hubs\n"
    "  RETURN collect({type: type, rows: rows, ids: ids, users: users, hubs: hubs}) AS links\n"
    "}\n"
    "RETURN [s IN page | s.id] AS id, [s IN page | s.label] AS label,\n"
    "       [s IN page | s.usage_risk] AS usage_risk,\n"
    "       [s IN page | s.usage_reasons] AS usage_reasons,\n"
    "       [s IN page | s.pagerank] AS pagerank,\n"
    "       [s IN page | s.similarity_degree] AS similarity_degree,\n"
    "       [s IN page | s.embedding] AS embedding,\n"
    "       [s IN page | coalesce(s.created_at, s.first_seen).epochMillis] AS created_ms,\n"
    "       [s IN page | [(s)-[:MEMBER_OF]->(r:Ring) | r.size][0]] AS ring_size,\n"
    "       links"
)
_PAGE_QUERY: LiteralString = "MATCH (s:Subscriber) WHERE s.id > $after\n" + _PAGE_BODY
_PAGE_QUERY_UP_TO: LiteralString = (
    "MATCH (s:Subscriber) WHERE s.id > $after AND s.id <= $last\n" + _PAGE_BODY
)
_COUNT_SUBSCRIBERS: LiteralString = "MATCH (s:Subscriber) RETURN count(s) AS subscribers"
_NTH_ID: LiteralString = (
    "MATCH (s:Subscriber) WHERE s.id > '' WITH s.id AS id ORDER BY id SKIP $skip LIMIT 1\nRETURN id"
)

_NEWEST_TRANSACTION: LiteralString = """
MATCH (t:Transaction) WHERE t.ts IS NOT NULL
RETURN t.ts.epochMillis AS ts ORDER BY t.ts DESC LIMIT 1
"""


def _log1p(values: np.ndarray) -> np.ndarray:
    return np.log1p(np.maximum(np.asarray(values, dtype=np.float64), 0.0))


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
    """Accumulates subscriber rows (`SUBSCRIBER_FIELDS`) into the arrays of a `HeteroData`.

    Each row only appends its raw values (a few list appends and one dict lookup per link);
    the features are computed for all rows at once, with NumPy, in `build`. Training, batch
    inference and live scoring all go through this class, so their features agree.
    """

    def __init__(self, as_of_ms: int) -> None:
        self.as_of_ms = as_of_ms
        self.subscriber_ids: list[str] = []
        self.y: list[int] = []
        self.ring_sizes: list[int] = []
        # Per subscriber: usage_risk, pagerank, similarity degree, creation time (NaN: unknown).
        self._values: list[tuple[float, float, float, float]] = []
        self._reason_cells: tuple[list[int], list[int], list[float]] = ([], [], [])
        self._embedded: list[int] = []
        # Embeddings as float32 blocks: a million lists of 32 Python floats would take a GB.
        self._embedding_blocks: list[np.ndarray] = []
        self._embeddings: list[Sequence[float]] = []
        # Every link a subscriber has (its features count them all, edges or not).
        self._links: tuple[list[int], list[int], list[int], list[bool]] = ([], [], [], [])
        self.identifier_index: dict[str, dict[str, int]] = {lb: {} for lb in IDENTIFIER_LABELS}
        self._identifier_users: dict[str, list[int]] = {lb: [] for lb in IDENTIFIER_LABELS}
        self._identifier_hub: dict[str, list[bool]] = {lb: [] for lb in IDENTIFIER_LABELS}
        self.edges: dict[str, tuple[list[int], list[int]]] = {r: ([], []) for r in RELATIONSHIPS}

    def _add_stored(
        self,
        sid: object,
        label: str | None,
        ring_size: int | None,
        usage_risk: float | None,
        pagerank: float | None,
        similarity_degree: float | None,
        created_ms: int | None,
        usage_reasons: str | None,
        embedding: Sequence[float] | None,
    ) -> int:
        """One subscriber's stored values (everything but its links, in `_STORED` order); its
        index."""
        index = len(self.subscriber_ids)
        self.subscriber_ids.append(str(sid))
        self.y.append(label_value(label))
        self.ring_sizes.append(int(ring_size or 0))
        self._values.append(
            (
                float(usage_risk or 0.0),
                float(pagerank or 0.0),
                float(similarity_degree or 0.0),
                math.nan if created_ms is None else float(created_ms),
            )
        )
        rows, columns, weights = self._reason_cells
        for code, weight in reason_codec.weights(usage_reasons):
            column = _USAGE_COLUMN.get(code)
            if column is not None:
                rows.append(index)
                columns.append(column)
                weights.append(weight)
        if embedding is not None and len(embedding) == EMBEDDING_DIMENSION:
            self._embedded.append(index)
            self._embeddings.append(embedding)
            if len(self._embeddings) >= _EMBEDDING_BLOCK:
                self._embedding_blocks.append(np.asarray(self._embeddings, dtype=np.float32))
                self._embeddings = []
        return index

    def add_subscriber(
        self, row: Mapping[str, Any], *, edges_to: Container[tuple[str, str]] | None = None
    ) -> int:
        """Add one subscriber row; with `edges_to`, only links to those (relationship, id)
        pairs become edges (its features still count every link)."""
        index = self._add_stored(*(row.get(name) for name in _STORED))
        link_subscribers, link_kinds, link_users, link_hubs = self._links
        for rel, ident, users, hub in row.get("links") or []:
            kind = _KIND_NUMBER.get(rel)
            if kind is None:
                continue
            link_subscribers.append(index)
            link_kinds.append(kind)
            link_users.append(int(users))
            link_hubs.append(bool(hub))
            if edges_to is not None and (rel, ident) not in edges_to:
                continue
            target = self.add_identifier(LABEL_OF_RELATIONSHIP[rel], str(ident), int(users), hub)
            sources, targets = self.edges[rel]
            sources.append(index)
            targets.append(target)
        return index

    def add_page(self, page: Mapping[str, Any]) -> None:
        """Add one page of subscribers as columns (`_PAGE_QUERY`), with every link an edge."""
        offset = len(self.subscriber_ids)
        for stored in zip(*(page[name] for name in _STORED), strict=True):
            self._add_stored(*stored)
        link_subscribers, link_kinds, link_users, link_hubs = self._links
        for group in page["links"]:
            rel = group["type"]
            kind = _KIND_NUMBER.get(rel)
            if kind is None:
                continue
            subscribers = [offset + row for row in group["rows"]]
            link_subscribers.extend(subscribers)
            link_kinds.extend([kind] * len(subscribers))
            link_users.extend(group["users"])
            link_hubs.extend(group["hubs"])
            label = LABEL_OF_RELATIONSHIP[rel]
            known = self.identifier_index[label]
            before = len(known)
            # An identifier's index is the number of those seen before it, as in add_identifier.
            targets = [known.setdefault(str(ident), len(known)) for ident in group["ids"]]
            if len(known) > before:
                found = np.asarray(targets, dtype=np.int64)
                new, first = np.unique(found, return_index=True)
                first = first[new >= before]
                self._identifier_users[label].extend(np.asarray(group["users"])[first].tolist())
                self._identifier_hub[label].extend(np.asarray(group["hubs"])[first].tolist())
            sources, edge_targets = self.edges[rel]
            sources.extend(subscribers)
            edge_targets.extend(targets)

    def add_identifier(self, label: str, ident: str, users: int, hub: bool) -> int:
        known = self.identifier_index[label]
        index = known.get(ident)
        if index is None:
            index = known[ident] = len(known)
            self._identifier_users[label].append(users)
            self._identifier_hub[label].append(bool(hub))
        return index

    def subscriber_features(self) -> np.ndarray:
        """The `SUBSCRIBER_FEATURES` matrix of every row added (float32)."""
        count = len(self.subscriber_ids)
        x = np.zeros((count, len(SUBSCRIBER_FEATURES)), dtype=np.float64)
        values = np.asarray(self._values, dtype=np.float64).reshape(-1, 4)
        x[:, _INDEX["usage_risk"]] = values[:, 0]
        rows, columns, weights = self._reason_cells
        # A usage reason's column holds its weight (the largest when a rule fired twice).
        np.maximum.at(x, (np.asarray(rows, np.int64), np.asarray(columns, np.int64)),
                      np.asarray(weights, np.float64))  # fmt: skip
        subscribers, kinds, users, hubs = (np.asarray(a) for a in self._links)
        subscribers = subscribers.astype(np.int64)
        users = users.astype(np.int64)
        hubs = hubs.astype(bool)
        shared = ~hubs & (users > 1)
        for number, kind in enumerate(KINDS):
            of_kind = kinds == number
            x[:, _INDEX[f"links.{kind.value}"]] = _log1p(
                np.bincount(subscribers[of_kind], minlength=count)
            )
            x[:, _INDEX[f"shared.{kind.value}"]] = _log1p(
                np.bincount(subscribers[of_kind & shared], minlength=count)
            )
        x[:, _INDEX["hub_links"]] = _log1p(np.bincount(subscribers[hubs], minlength=count))
        most = np.zeros(count, dtype=np.float64)
        np.maximum.at(most, subscribers[shared], users[shared].astype(np.float64))
        x[:, _INDEX["max_sharing"]] = _log1p(most)
        created = values[:, 3]
        unknown = np.isnan(created)
        x[:, _INDEX["age_unknown"]] = unknown
        age_days = (self.as_of_ms - np.where(unknown, self.as_of_ms, created)) / _DAY_MS
        x[:, _INDEX["account_age_days"]] = np.where(unknown, 0.0, _log1p(age_days))
        x[:, _INDEX["pagerank"]] = values[:, 1]
        x[:, _INDEX["similarity_degree"]] = _log1p(values[:, 2])
        x[:, _INDEX["ring_size"]] = _log1p(np.asarray(self.ring_sizes, dtype=np.float64))
        x[:, _INDEX["gds_missing"]] = 1.0
        if self._embedded:
            embedded = np.asarray(self._embedded, dtype=np.int64)
            x[embedded, _INDEX["gds_missing"]] = 0.0
            start = _INDEX["fastrp.0"]
            blocks = [*self._embedding_blocks, np.asarray(self._embeddings, dtype=np.float32)]
            x[embedded, start : start + EMBEDDING_DIMENSION] = np.concatenate(
                [block.reshape(-1, EMBEDDING_DIMENSION) for block in blocks]
            )
        return x.astype(np.float32)

    def identifier_features(self, label: str) -> np.ndarray:
        """The `IDENTIFIER_FEATURES` matrix of one identifier label (float32)."""
        users = np.asarray(self._identifier_users[label], dtype=np.float64)
        hubs = np.asarray(self._identifier_hub[label], dtype=np.float64)
        return np.column_stack([_log1p(users), hubs]).astype(np.float32).reshape(-1, 2)

    def arrays(self) -> tuple[dict[str, np.ndarray], dict[tuple[str, str, str], np.ndarray]]:
        """The features per node type (float32) and the edge index per edge type, reverse
        types included (as `ToUndirected` names them), as NumPy arrays: what `build` puts in
        a `HeteroData`, and what live scoring feeds the model directly."""
        x_dict = {SUBSCRIBER: self.subscriber_features()}
        for label in IDENTIFIER_LABELS:
            x_dict[label] = self.identifier_features(label)
        edge_index_dict: dict[tuple[str, str, str], np.ndarray] = {}
        for src, rel, dst in edge_types():
            sources, targets = self.edges[rel]
            edge_index = np.asarray([sources, targets], dtype=np.int64).reshape(2, -1)
            edge_index_dict[(src, rel, dst)] = edge_index  # (2, 0) when there are none
            edge_index_dict[(dst, f"rev_{rel}", src)] = edge_index[::-1].copy()
        return x_dict, edge_index_dict

    def build(self) -> HeteroData:
        import torch
        from torch_geometric.data import HeteroData

        x_dict, edge_index_dict = self.arrays()
        data = HeteroData()
        for node_type, x in x_dict.items():
            data[node_type].x = torch.from_numpy(x)
        data[SUBSCRIBER].y = torch.from_numpy(np.asarray(self.y, dtype=np.int64))
        for label in IDENTIFIER_LABELS:
            data[label].hub = data[label].x[:, 1] > 0.5
        for edge_type, edge_index in edge_index_dict.items():
            data[edge_type].edge_index = torch.from_numpy(edge_index)
        return data


def newest_transaction_ms(runner: QueryRunner) -> int | None:
    rows = runner.read(_NEWEST_TRANSACTION)
    return int(rows[0]["ts"]) if rows else None


def _read_page(runner: QueryRunner, after: str, last: str | None, limit: int) -> dict[str, Any]:
    if last is None:
        return runner.read(_PAGE_QUERY, {"after": after, "limit": limit})[0]
    return runner.read(_PAGE_QUERY_UP_TO, {"after": after, "last": last, "limit": limit})[0]


def _ranges(runner: QueryRunner, readers: int, page: int) -> list[tuple[str, str | None]]:
    """(after, last) id ranges of about equal size, one per reader; a graph of fewer than two
    pages per reader is one range."""
    count = int(runner.read(_COUNT_SUBSCRIBERS)[0]["subscribers"])
    if readers < 2 or count < 2 * page * readers:
        return [("", None)]
    ends: list[str] = []
    for k in range(1, readers):
        rows = runner.read(_NTH_ID, {"skip": count * k // readers - 1})
        if not rows:  # subscribers deleted since the count: one range reads them all
            return [("", None)]
        ends.append(str(rows[0]["id"]))
    return list(zip(["", *ends], [*ends, None], strict=True))


def stream_pages(
    runner: QueryRunner, page: int = PAGE, readers: int = READERS
) -> Iterator[dict[str, Any]]:
    """Pages of subscribers as columns (`_PAGE_QUERY`), every subscriber once.

    The subscribers are split into `readers` ranges of ids, each read in pages ordered by id,
    with the next page of every range read on its own thread while the caller works on the
    current one: the server reads several pages at once (one query uses one core) and its work
    overlaps with the caller's Python. Pages come one from each range in turn, so the order is
    the same on every run over the same graph.
    """
    ranges = _ranges(runner, readers, page)
    with ThreadPoolExecutor(max_workers=len(ranges), thread_name_prefix="export-page") as pool:
        pending = {
            number: pool.submit(_read_page, runner, after, last, page)
            for number, (after, last) in enumerate(ranges)
        }
        while pending:
            for number in list(pending):
                columns = pending[number].result()
                if not columns["id"]:
                    del pending[number]
                    continue
                last = ranges[number][1]
                pending[number] = pool.submit(
                    _read_page, runner, str(columns["id"][-1]), last, page
                )
                yield columns


def export_graph(
    runner: QueryRunner,
    *,
    as_of: datetime | None = None,
    page: int = PAGE,
    readers: int = READERS,
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
    for columns in stream_pages(runner, page, readers):
        pages += 1
        builder.add_page(columns)
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
