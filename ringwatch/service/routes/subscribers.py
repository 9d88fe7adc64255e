"""Subscribers: profile with scores and reasons, the network around one, suspension."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, LiteralString

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from ringwatch.graph.usage import window_totals
from ringwatch.service.deps import Graph
from ringwatch.service.errors import not_found
from ringwatch.service.routes.common import ID_PATTERN, ReasonOut, native, reasons_out
from ringwatch.service.security import ReadKey, WriteKey

router = APIRouter(prefix="/v1/subscribers", tags=["subscribers"])
SubscriberId = Annotated[str, Path(pattern=ID_PATTERN, description="Subscriber id.")]
LINKS: LiteralString = "USES_DEVICE|HAS_ADDRESS|PAYS_WITH|HAS_PHONE|HAS_EMAIL|USES_IP"
KIND_OF = {
    "USES_DEVICE": "device",
    "HAS_ADDRESS": "address",
    "PAYS_WITH": "payment_method",
    "HAS_PHONE": "phone",
    "HAS_EMAIL": "email",
    "USES_IP": "ip",
}

_PROFILE: LiteralString = (
    "MATCH (s:Subscriber {id: $id})\n"
    "OPTIONAL MATCH (s)-[:MEMBER_OF]->(r:Ring)\n"
    "RETURN s {.*, embedding: null} AS s,\n"
    "       r {.id, .size, .risk, .priority, .status} AS ring,\n"
    f"       [(s)-[l:{LINKS}]->(i) | {{rel: type(l), id: i.id, hub: coalesce(i.hub, false),\n"
    "         subscribers: coalesce(i.subscribers, 1), first_seen: l.first_seen,\n"
    "         last_seen: l.last_seen, count: l.count}] AS identifiers"
)


class IdentifierOut(BaseModel):
    kind: str
    id: str
    hub: bool
    subscribers: int
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    count: int | None = None


class WindowOut(BaseModel):
    count: int
    spend: float
    topup: float
    data_mb: float
    calls: int
    short_calls: int
    night_calls: int
    sms: int
    distinct_devices: int
    distinct_ips: int
    distinct_counterparties: int


class ScoreOut(BaseModel):
    risk: float | None = None
    reasons: list[ReasonOut] = Field(default_factory=list)


class RingRef(BaseModel):
    id: str
    size: int | None = None
    risk: float | None = None
    priority: str | None = None
    status: str | None = None


class SubscriberProfile(BaseModel):
    id: str
    status: str | None = None
    name: str | None = None
    created_at: datetime | None = None
    last_seen: datetime | None = None
    label: str | None = None
    risk: float | None = None
    priority: str | None = None
    decision: str | None = None
    scored_at: datetime | None = None
    scores: dict[str, ScoreOut]
    ring: RingRef | None = None
    identifiers: list[IdentifierOut]
    usage_as_of: datetime | None = None
    usage: dict[str, WindowOut]


@router.get("/{subscriber_id}", response_model=SubscriberProfile)
def profile(
    subscriber_id: SubscriberId,
    graph: Graph,
    _: ReadKey,
    as_of: Annotated[
        datetime | None,
        Query(description="End of the usage windows (default: the subscriber's last activity)."),
    ] = None,
) -> SubscriberProfile:
    """Identifiers, usage windows (1 h, 24 h, 7 d, 30 d), every score with its reasons, ring."""
    rows = graph.read(_PROFILE, {"id": subscriber_id})
    if not rows:
        raise not_found("subscriber", subscriber_id)
    s, ring = rows[0]["s"], rows[0]["ring"]
    end = as_of or native(s.get("last_seen")) or datetime.now(UTC)
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    windows = window_totals(graph, subscriber_id, end)
    return SubscriberProfile(
        id=s["id"],
        status=s.get("status"),
        name=s.get("name"),
        created_at=native(s.get("created_at")),
        last_seen=native(s.get("last_seen")),
        label=s.get("label"),
        risk=s.get("risk"),
        priority=s.get("priority"),
        decision=s.get("decision"),
        scored_at=native(s.get("scored_at")),
        scores={
            "merged": ScoreOut(risk=s.get("risk"), reasons=reasons_out(s.get("risk_reasons"))),
            "usage": ScoreOut(
                risk=s.get("usage_risk"), reasons=reasons_out(s.get("usage_reasons"))
            ),
            "graph": ScoreOut(
                risk=s.get("graph_risk"), reasons=reasons_out(s.get("graph_reasons"))
            ),
            "gnn": ScoreOut(risk=s.get("gnn_risk"), reasons=reasons_out(s.get("gnn_reasons"))),
        },
        ring=RingRef(**ring) if ring and ring.get("id") else None,
        identifiers=[
            IdentifierOut(
                kind=KIND_OF.get(i["rel"], i["rel"]),
                id=i["id"],
                hub=i["hub"],
                subscribers=i["subscribers"],
                first_seen=native(i["first_seen"]),
                last_seen=native(i["last_seen"]),
                count=i["count"],
            )
            for i in sorted(rows[0]["identifiers"], key=lambda i: (i["rel"], i["id"]))
        ],
        usage_as_of=end,
        usage={name: WindowOut(**vars(window)) for name, window in windows.items()},
    )


# --- network ------------------------------------------------------------------------------------

_EXPAND_SUBSCRIBERS: LiteralString = (
    "UNWIND $ids AS sid MATCH (s:Subscriber {id: sid})\n"
    f"MATCH (s)-[l:{LINKS}]->(i)\n"
    "RETURN sid, type(l) AS rel, i.id AS identifier, coalesce(i.hub, false) AS hub,\n"
    "       coalesce(i.subscribers, 1) AS subscribers, labels(i)[0] AS label"
)
_EXPAND_IDENTIFIERS: LiteralString = (
    "UNWIND $rows AS row\n"
    # Reached through the (indexed) subscriber that led to it: identifier labels differ by kind.
    f"MATCH (:Subscriber {{id: row.via}})-[via:{LINKS}]->(i {{id: row.id}})\n"
    "WHERE type(via) = row.rel\n"
    f"MATCH (i)<-[l:{LINKS}]-(s:Subscriber) WHERE type(l) = row.rel\n"
    "WITH row, s ORDER BY s.id LIMIT 1000000\n"
    "WITH row, collect(s {.id, .risk, .priority, .ring_id, .status})[..$fanout] AS users\n"
    "RETURN row.id AS identifier, row.rel AS rel, users"
)


class NetworkNode(BaseModel):
    id: str
    type: str
    risk: float | None = None
    priority: str | None = None
    ring_id: str | None = None
    hub: bool = False
    subscribers: int | None = None
    expanded: bool = True


class NetworkEdge(BaseModel):
    source: str
    target: str
    type: str


class Network(BaseModel):
    root: str
    depth: int
    nodes: list[NetworkNode]
    edges: list[NetworkEdge]
    truncated: bool
    notes: list[str]


@router.get("/{subscriber_id}/network", response_model=Network)
def network(
    subscriber_id: SubscriberId,
    graph: Graph,
    _: ReadKey,
    depth: Annotated[int, Query(ge=1, le=3, description="Identifier hops to follow.")] = 1,
    fanout: Annotated[
        int, Query(ge=1, le=200, description="Subscribers shown per identifier at most.")
    ] = 25,
    max_nodes: Annotated[int, Query(ge=10, le=2000)] = 300,
) -> Network:
    """The subscribers linked to one through shared identifiers, as nodes and edges.

    Hub identifiers (carrier NAT, placeholder IMEIs) are shown with their subscriber count but
    not followed; each identifier shows at most `fanout` subscribers; the whole answer at most
    `max_nodes` nodes. `truncated` and `notes` say what was left out.
    """
    root = graph.read("MATCH (s:Subscriber {id: $id}) RETURN s {.id, .risk, .priority, "
                      ".ring_id} AS s", {"id": subscriber_id})  # fmt: skip
    if not root:
        raise not_found("subscriber", subscriber_id)
    nodes: dict[str, NetworkNode] = {}
    edges: set[tuple[str, str, str]] = set()
    notes: list[str] = []
    truncated = False
    r = root[0]["s"]
    nodes[f"subscriber:{subscriber_id}"] = NetworkNode(
        id=subscriber_id, type="subscriber", risk=r.get("risk"), priority=r.get("priority"),
        ring_id=r.get("ring_id"),
    )  # fmt: skip
    frontier = [subscriber_id]
    seen_identifiers: set[tuple[str, str]] = set()
    key_of: dict[tuple[str, str], str] = {}
    for _level in range(depth):
        if not frontier:
            break
        to_expand: list[dict[str, str]] = []
        for row in graph.read(_EXPAND_SUBSCRIBERS, {"ids": frontier}):
            key = f"{row['label'].lower()}:{row['identifier']}"
            if key not in nodes:
                nodes[key] = NetworkNode(
                    id=row["identifier"], type=KIND_OF.get(row["rel"]) or str(row["label"]),
                    hub=row["hub"], subscribers=row["subscribers"], expanded=not row["hub"],
                )  # fmt: skip
            edges.add((f"subscriber:{row['sid']}", key, row["rel"]))
            ident = (row["rel"], row["identifier"])
            key_of[ident] = key
            if row["hub"]:
                if ident not in seen_identifiers:
                    notes.append(f"hub {nodes[key].type} shared by {row['subscribers']} "
                                 "subscribers not expanded")  # fmt: skip
                    truncated = True
            elif ident not in seen_identifiers:
                to_expand.append({"rel": row["rel"], "id": row["identifier"], "via": row["sid"]})
            seen_identifiers.add(ident)
        next_frontier: list[str] = []
        if to_expand:
            rows = graph.read(_EXPAND_IDENTIFIERS, {"rows": to_expand, "fanout": fanout})
            for row in rows:
                key = key_of[(row["rel"], row["identifier"])]
                shown = nodes[key].subscribers or 0
                if shown > fanout:
                    truncated = True
                    notes.append(f"{nodes[key].type} shown with {fanout} of its "
                                 f"{nodes[key].subscribers} subscribers")  # fmt: skip
                for user in row["users"]:
                    skey = f"subscriber:{user['id']}"
                    if skey not in nodes:
                        if len(nodes) >= max_nodes:
                            truncated = True
                            continue
                        nodes[skey] = NetworkNode(
                            id=user["id"], type="subscriber", risk=user.get("risk"),
                            priority=user.get("priority"), ring_id=user.get("ring_id"),
                        )  # fmt: skip
                        next_frontier.append(user["id"])
                    edges.add((skey, key, row["rel"]))
        frontier = next_frontier
    if len(nodes) >= max_nodes:
        notes.append(f"stopped at {max_nodes} nodes")
    return Network(
        root=subscriber_id,
        depth=depth,
        nodes=list(nodes.values()),
        edges=[
            NetworkEdge(source=a.split(":", 1)[1], target=b.split(":", 1)[1], type=t)
            for a, b, t in sorted(edges)
        ],
        truncated=truncated,
        notes=sorted(set(notes)),
    )


# --- suspension (used by the P1 n8n workflow) ---------------------------------------------------

_SUSPEND: LiteralString = """
MATCH (s:Subscriber {id: $id})
SET s.status = 'suspended', s.status_at = $now, s.suspended_reason = $reason,
    s.suspended_by = $actor
RETURN s.id AS id, s.status AS status, s.status_at AS status_at
"""


class SuspendIn(BaseModel):
    reason: str = Field(min_length=1, max_length=500)
    actor: str = Field(min_length=1, max_length=200, description="Who (or which workflow).")


class SuspendOut(BaseModel):
    id: str
    status: str
    status_at: datetime


@router.post("/{subscriber_id}/suspend", response_model=SuspendOut)
def suspend(subscriber_id: SubscriberId, body: SuspendIn, graph: Graph, _: WriteKey) -> Any:
    """Suspend a subscriber (write scope): the status changes; nothing is deleted."""
    rows = graph.write(
        _SUSPEND,
        {"id": subscriber_id, "now": datetime.now(UTC), "reason": body.reason,
         "actor": body.actor},
    )  # fmt: skip
    if not rows:
        raise not_found("subscriber", subscriber_id)
    row = rows[0]
    return SuspendOut(id=row["id"], status=row["status"], status_at=native(row["status_at"]))
