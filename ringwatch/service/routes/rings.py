"""Rings ranked by risk, and one ring with its members, evidence, lineage and reasons."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, LiteralString

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel

from ringwatch.graph.analytics import link_pattern
from ringwatch.service.deps import AppSettings, Graph
from ringwatch.service.errors import not_found
from ringwatch.service.routes.common import (
    ID_PATTERN,
    ReasonOut,
    decode_cursor,
    encode_cursor,
    native,
    reasons_out,
)
from ringwatch.service.routes.subscribers import KIND_OF
from ringwatch.service.security import ReadKey

router = APIRouter(prefix="/v1/rings", tags=["rings"])


class RingStatus(StrEnum):
    active = "active"
    merged = "merged"
    dissolved = "dissolved"


class PriorityFilter(StrEnum):
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"


_LIST: LiteralString = """
MATCH (r:Ring)
WHERE r.status = $status
  AND ($priority IS NULL OR r.priority = $priority)
  AND coalesce(r.risk, 0.0) >= $min_risk AND coalesce(r.size, 0) >= $min_size
  AND ($after_risk IS NULL OR coalesce(r.risk, 0.0) < $after_risk
       OR (coalesce(r.risk, 0.0) = $after_risk AND r.id > $after_id))
WITH r ORDER BY coalesce(r.risk, 0.0) DESC, r.id LIMIT $limit
RETURN r {.id, .status, .size, .risk, .priority, .decision, .identifier_types, .created_at,
          .updated_at, .new_account_share, .labelled_fraud, .reasons} AS ring
"""


class RingSummary(BaseModel):
    id: str
    status: str
    size: int | None = None
    risk: float | None = None
    priority: str | None = None
    decision: str | None = None
    identifier_types: list[str] = []
    created_at: datetime | None = None
    updated_at: datetime | None = None
    new_account_share: float | None = None
    labelled_fraud: int | None = None
    top_reason: str | None = None


class RingPage(BaseModel):
    rings: list[RingSummary]
    next_cursor: str | None


def _summary(ring: dict[str, Any]) -> RingSummary:
    reasons = [r for r in reasons_out(ring.get("reasons")) if r.weight > 0]
    return RingSummary(
        id=ring["id"],
        status=ring["status"],
        size=ring.get("size"),
        risk=ring.get("risk"),
        priority=ring.get("priority"),
        decision=ring.get("decision"),
        identifier_types=[KIND_OF.get(t, t) for t in ring.get("identifier_types") or []],
        created_at=native(ring.get("created_at")),
        updated_at=native(ring.get("updated_at")),
        new_account_share=ring.get("new_account_share"),
        labelled_fraud=ring.get("labelled_fraud"),
        top_reason=reasons[0].text if reasons else None,
    )


@router.get("", response_model=RingPage)
def list_rings(
    graph: Graph,
    _: ReadKey,
    status: RingStatus = RingStatus.active,
    priority: PriorityFilter | None = None,
    min_risk: Annotated[float, Query(ge=0.0, le=1.0)] = 0.0,
    min_size: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> RingPage:
    """Rings ranked by risk (then id), filtered; pass `next_cursor` back for the next page."""
    after = decode_cursor(cursor, 2)
    rows = graph.read(
        _LIST,
        {
            "status": status.value,
            "priority": priority.value if priority else None,
            "min_risk": min_risk,
            "min_size": min_size,
            "after_risk": float(after[0]) if after else None,
            "after_id": str(after[1]) if after else None,
            "limit": limit + 1,
        },
    )
    rings = [_summary(row["ring"]) for row in rows[:limit]]
    next_cursor = (
        encode_cursor(rings[-1].risk or 0.0, rings[-1].id) if len(rows) > limit and rings else None
    )
    return RingPage(rings=rings, next_cursor=next_cursor)


def _detail_query(pattern: str) -> LiteralString:
    return (
        "MATCH (r:Ring {id: $id})\n"
        "OPTIONAL MATCH (m:Subscriber)-[:MEMBER_OF]->(r)\n"
        "WITH r, collect(m) AS members\n"
        "CALL (members) {\n"
        "  UNWIND members AS m\n"
        f"  MATCH (m)-[l:{pattern}]->(i)\n"
        "  WITH i, type(l) AS rel, collect(DISTINCT m.id) AS users WHERE size(users) >= 2\n"
        "  RETURN collect({id: i.id, rel: rel, hub: coalesce(i.hub, false),\n"
        "                  members: users, subscribers: i.subscribers}) AS shared\n"
        "}\n"
        "OPTIONAL MATCH (e:RingEvent)-[:OF]->(r)\n"
        "WITH r, members, shared, e ORDER BY e.at\n"
        "RETURN r {.*} AS ring,\n"
        "  [m IN members | m {.id, .risk, .priority, .created_at, .label, .status}] AS members,\n"
        "  shared, collect(e {.kind, .at, .source, .members_added, .members_removed,\n"
        "                     .from_rings, .into_ring, .into_rings, .split_from}) AS lineage"
    )


class Member(BaseModel):
    id: str
    risk: float | None = None
    priority: str | None = None
    created_at: datetime | None = None
    label: str | None = None
    status: str | None = None


class SharedIdentifier(BaseModel):
    kind: str
    id: str
    hub: bool
    members: list[str]
    subscribers: int | None = None


class EvidencePath(BaseModel):
    """Two members and the identifier that links them: member -[kind]-> identifier <- member."""

    source: str
    target: str
    via_kind: str
    via: str


class LineageEvent(BaseModel):
    kind: str
    at: datetime | None = None
    source: str | None = None
    members_added: list[str] = []
    members_removed: list[str] = []
    from_rings: list[str] = []
    into_ring: str | None = None
    into_rings: list[str] = []
    split_from: list[str] = []


class RingDetail(RingSummary):
    members: list[Member]
    shared_identifiers: list[SharedIdentifier]
    evidence_paths: list[EvidencePath]
    evidence_truncated: bool
    lineage: list[LineageEvent]
    reasons: list[ReasonOut]
    density: float | None = None
    signup_burst_share: float | None = None
    merged_into: str | None = None


MAX_PATHS = 200


@router.get("/{ring_id}", response_model=RingDetail)
def ring_detail(
    ring_id: Annotated[str, Path(pattern=ID_PATTERN)],
    graph: Graph,
    settings: AppSettings,
    _: ReadKey,
) -> RingDetail:
    """One ring: members, the identifiers they share, the evidence paths between members,
    its lineage (created, grew, merged, split, dissolved) and why it is a ring."""
    rows = graph.read(_detail_query(link_pattern(settings.scoring)), {"id": ring_id})
    if not rows:
        raise not_found("ring", ring_id)
    row = rows[0]
    ring = row["ring"]
    shared = sorted(row["shared"], key=lambda s: (-len(s["members"]), s["rel"], s["id"]))
    paths: list[EvidencePath] = []
    for identifier in shared:
        first, *others = sorted(identifier["members"])
        for other in others:  # a star per identifier: enough to connect everyone it links
            paths.append(EvidencePath(source=first, target=other,
                                      via_kind=KIND_OF.get(identifier["rel"], identifier["rel"]),
                                      via=identifier["id"]))  # fmt: skip
    summary = _summary(ring)
    return RingDetail(
        **summary.model_dump(),
        members=[
            Member(**{**m, "created_at": native(m.get("created_at"))})
            for m in sorted(row["members"], key=lambda m: m["id"])
        ],
        shared_identifiers=[
            SharedIdentifier(
                kind=KIND_OF.get(s["rel"], s["rel"]),
                id=s["id"],
                hub=s["hub"],
                members=sorted(s["members"]),
                subscribers=s["subscribers"],
            )
            for s in shared
        ],
        evidence_paths=paths[:MAX_PATHS],
        evidence_truncated=len(paths) > MAX_PATHS,
        lineage=[
            LineageEvent(
                **{k: v for k, v in {**e, "at": native(e.get("at"))}.items() if v is not None}
            )
            for e in row["lineage"]
            if e.get("kind")
        ],
        reasons=reasons_out(ring.get("reasons")),
        density=ring.get("density"),
        signup_burst_share=ring.get("signup_burst_share"),
        merged_into=ring.get("merged_into"),
    )
