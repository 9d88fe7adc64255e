"""Live GNN scores: one subscriber, or a prospect, scored inductively from its neighbourhood.

The promoted model (loaded once per process, `ringwatch.models.serving`) is applied to a
neighbourhood read in one query: the target's identifiers (with their stored subscriber counts
and hub flags) and, per identifier, as many other subscribers as the model sampled per
identifier in training (`users_per_identifier`; `ModelsConfig.live_fanout` overrides it),
with the stored values their features come from (`gnn_export.SUBSCRIBER_FIELDS`). That is
the whole receptive field of the default two-layer model (subscriber → identifiers → their
subscribers), so nothing is retrained and a subscriber created a second ago is scored like any
other. Features are built by the export's own functions, as of the request time.

A prospect (signup) has no stored values: no usage, age 0, its identifiers counted with itself
added; its GDS values are unknown, so its FastRP embedding is taken as the mean of the
embeddings of the subscribers it would share identifiers with (FastRP averages neighbourhoods,
so a new node's embedding is close to its neighbours'), and its ring size as the largest ring
among them plus one. With no neighbours it is marked outside the projection, like an isolated
subscriber in training.

Nothing here imports PyTorch until a model is promoted and a score is asked for.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString

from ringwatch.config import ModelsConfig
from ringwatch.graph.db import QueryRunner
from ringwatch.graph.gnn_export import (
    EMBEDDING_DIMENSION,
    LINKS,
    SUBSCRIBER_FIELDS,
    GraphBuilder,
)
from ringwatch.graph.gnn_run import gnn_reason
from ringwatch.graph.writer import IDENTIFIER_SCHEMA
from ringwatch.ingest.normalize import IdentifierKind
from ringwatch.ingest.prepare import IdentifierLink
from ringwatch.models.registry import LoadedModel
from ringwatch.models.serving import promoted_model
from ringwatch.scoring.reasons import Reason

# The first `fanout` users the store gives, not the first by id: ordering would read every user
# of a hub identifier (9,439 at 1M subscribers, 30 ms) to keep ten. The model was trained on
# random samples of neighbours, so any bounded subset serves; the store returns the same one
# until the identifier's links change.
_USERS: LiteralString = (
    "CALL (i, target) {\n"
    f"  OPTIONAL MATCH (i)<-[:{LINKS}]-(s:Subscriber) WHERE target IS NULL OR s <> target\n"
    "  WITH s LIMIT $fanout\n"
    "  RETURN collect(" + SUBSCRIBER_FIELDS + ") AS users\n"
    "}\n"
)

_SUBSCRIBER_NEIGHBOURHOOD: LiteralString = (
    "MATCH (s:Subscriber {id: $id})\n"
    "WITH s AS target, " + SUBSCRIBER_FIELDS + " AS row\n"
    "CALL (target) {\n"
    f"  OPTIONAL MATCH (target)-[l:{LINKS}]->(i)\n"
    "  WITH target, l, i WHERE i IS NOT NULL\n"
    + _USERS
    + "  RETURN collect({rel: type(l), id: i.id, subscribers: coalesce(i.subscribers, 0),\n"
    "                  hub: coalesce(i.hub, false), users: users}) AS found\n"
    "}\n"
    "RETURN row, found"
)


def _identifiers_query(kinds: Sequence[IdentifierKind]) -> LiteralString:
    branches: list[LiteralString] = []
    for kind in kinds:
        schema = IDENTIFIER_SCHEMA[kind]
        branches.append(
            f"  UNWIND ${kind.value} AS id MATCH (i:{schema.label} {{id: id}})\n"
            f"  RETURN i, '{schema.relationship}' AS rel\n"
        )
    union: LiteralString = "  UNION ALL\n".join(branches)
    return (
        "CALL () {\n" + union + "}\n"
        "WITH i, rel, null AS target\n"
        + _USERS
        + "RETURN rel, i.id AS id, coalesce(i.subscribers, 0) AS subscribers,\n"
        "       coalesce(i.hub, false) AS hub, users"
    )


_QUERIES: dict[tuple[IdentifierKind, ...], LiteralString] = {}


@dataclass(frozen=True)
class LiveScore:
    risk: float
    reason: Reason
    version: str


def _score(model: LoadedModel, target: Mapping[str, Any], found: list[dict[str, Any]],
           at: datetime) -> LiveScore:  # fmt: skip
    builder = GraphBuilder(int(at.timestamp() * 1000))
    own = {(f["rel"], f["id"]) for f in found}
    builder.add_subscriber(target)
    seen = {target.get("id")}
    best: tuple[str, str, str, float, bool] | None = None
    for identifier in found:
        for user in identifier["users"]:
            if user["id"] not in seen:
                seen.add(user["id"])
                builder.add_subscriber(user, edges_to=own)
            # Cheap neighbour evidence: a confirmed fraud, else the highest stored GNN score.
            fraud = user.get("label") == "fraud"
            value = 1.0 if fraud else float(user.get("gnn_risk") or 0.0)
            if not identifier["hub"] and (best is None or value > best[3]):
                best = (str(user["id"]), identifier["rel"], str(identifier["id"]), value, fraud)
    risk = model.scorer.score_arrays(*builder.arrays(), 0)
    return LiveScore(risk, gnn_reason(model.manifest, risk, best), model.manifest.version)


def _model(config: ModelsConfig) -> LoadedModel | None:
    return promoted_model(config.dir, config.reload_check_s)


DEFAULT_USERS_PER_IDENTIFIER = 10  # a model that records no sample sizes (the fallback)


def users_per_identifier(config: ModelsConfig, model: LoadedModel) -> int:
    """Subscribers read per identifier: the configured number, or as many as the model's
    neighbour sampling took per identifier (its second hop) in training and batch scoring. Mean
    aggregation over more is not wrong, but costs reads and is not what the model was fitted on.
    """
    if config.live_fanout is not None:
        return config.live_fanout
    fanout = model.manifest.config.get("fanout")
    if isinstance(fanout, list) and fanout:
        return int(fanout[min(1, len(fanout) - 1)])
    return DEFAULT_USERS_PER_IDENTIFIER


def score_subscriber(
    runner: QueryRunner, subscriber_id: str, config: ModelsConfig, at: datetime
) -> LiveScore | None:
    """The promoted model's score of an existing subscriber, or None (no model, no subscriber)."""
    model = _model(config)
    if model is None:
        return None
    rows = runner.read(
        _SUBSCRIBER_NEIGHBOURHOOD,
        {"id": subscriber_id, "fanout": users_per_identifier(config, model)},
    )
    if not rows:
        return None
    return _score(model, rows[0]["row"], rows[0]["found"], at)


def score_prospect(
    runner: QueryRunner, links: Sequence[IdentifierLink], config: ModelsConfig, at: datetime
) -> LiveScore | None:
    """The promoted model's score of a prospect with these (normalised) identifiers."""
    model = _model(config)
    if model is None or not links:
        return None
    ids: dict[str, list[str]] = defaultdict(list)
    for link in links:
        ids[link.kind.value].append(link.id)
    kinds = tuple(kind for kind in IdentifierKind if ids.get(kind.value))
    if kinds not in _QUERIES:
        _QUERIES[kinds] = _identifiers_query(kinds)
    found = runner.read(_QUERIES[kinds], {**ids, "fanout": users_per_identifier(config, model)})
    stored = {(row["rel"], row["id"]): row for row in found}
    prospect_links: list[tuple[str, str, int, bool]] = []
    for link in links:
        rel = IDENTIFIER_SCHEMA[link.kind].relationship
        row = stored.get((rel, link.id))
        users = int(row["subscribers"]) + 1 if row else 1
        hub = bool(row["hub"]) if row else link.placeholder
        prospect_links.append((rel, link.id, users, hub))
    neighbours = [u for row in found if not row["hub"] for u in row["users"]]
    embeddings = [u["embedding"] for u in neighbours if u.get("embedding") is not None]
    embedding = None
    if embeddings:
        embedding = [sum(e[i] for e in embeddings) / len(embeddings)
                     for i in range(EMBEDDING_DIMENSION)]  # fmt: skip
    rings = [int(u["ring_size"]) for u in neighbours if u.get("ring_size")]
    target = {
        "id": None,
        "created_ms": int(at.timestamp() * 1000),
        "links": prospect_links,
        "embedding": embedding,
        "ring_size": max(rings) + 1 if rings else None,
    }
    # Identifiers the graph does not know yet are the prospect's alone: still nodes and edges.
    for rel, ident, _, hub in prospect_links:
        if (rel, ident) not in stored:
            found.append({"rel": rel, "id": ident, "subscribers": 1, "hub": hub, "users": []})
    return _score(model, target, found, at)
