"""Who uses an identifier: looked up by kind and raw value, normalised the way ingest does."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, LiteralString

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel

from ringwatch.graph.writer import IDENTIFIER_SCHEMA
from ringwatch.ingest.exceptions import NormalisationError
from ringwatch.ingest.normalize import IdentifierKind
from ringwatch.ingest.prepare import Preparer
from ringwatch.service.deps import AppSettings, Graph
from ringwatch.service.errors import ApiError
from ringwatch.service.routes.common import ID_PATTERN
from ringwatch.service.security import ReadKey

router = APIRouter(prefix="/v1/identifiers", tags=["identifiers"])


class Kind(StrEnum):
    device = "device"
    address = "address"
    payment_method = "payment_method"
    phone = "phone"
    email = "email"
    ip = "ip"

    @property
    def identifier_kind(self) -> IdentifierKind:
        return IdentifierKind.PAYMENT if self is Kind.payment_method else IdentifierKind(self.value)


def _lookup(label: str, rel: str) -> LiteralString:
    # Label and type come from IDENTIFIER_SCHEMA (constants); the id is a parameter.
    return (
        f"MATCH (i:{label} {{id: $id}})\n"
        f"OPTIONAL MATCH (i)<-[l:{rel}]-(s:Subscriber)\n"
        "WITH i, l, s ORDER BY s.id\n"
        "WITH i, collect(CASE WHEN s IS NULL THEN null ELSE {id: s.id, status: s.status,\n"
        "  risk: s.risk, priority: s.priority, ring_id: s.ring_id, first_seen: l.first_seen,\n"
        "  last_seen: l.last_seen, count: l.count} END) AS users\n"
        "RETURN i.id AS id, coalesce(i.hub, false) AS hub,\n"
        "       coalesce(i.subscribers, size(users)) AS subscribers, users[..$limit] AS users"
    )


_LOOKUPS = {
    kind: _lookup(
        IDENTIFIER_SCHEMA[kind.identifier_kind].label,
        IDENTIFIER_SCHEMA[kind.identifier_kind].relationship,
    )
    for kind in Kind
}


class IdentifierUser(BaseModel):
    id: str
    status: str | None = None
    risk: float | None = None
    priority: str | None = None
    ring_id: str | None = None


class IdentifierUsers(BaseModel):
    kind: Kind
    id: str
    found: bool
    hub: bool
    subscribers: int
    users: list[IdentifierUser]
    truncated: bool


@router.get("/{kind}/{value}", response_model=IdentifierUsers)
def who_uses(
    kind: Kind,
    value: Annotated[str, Path(pattern=ID_PATTERN, description="The raw value, as typed.")],
    graph: Graph,
    settings: AppSettings,
    _: ReadKey,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> IdentifierUsers:
    """Subscribers linked to an identifier. The value is normalised (and keyed-hashed when PII
    hashing is on) exactly as ingest stores it, so any spelling finds the same node."""
    preparer = Preparer(
        pii_hmac_key=settings.scoring.pii_hmac_key, default_region=settings.ingest.default_region
    )
    try:
        node_id = preparer.identifier(kind.identifier_kind, value).id
    except NormalisationError as exc:
        raise ApiError(
            422, "invalid_identifier", f"not a valid {kind.value}: {exc.reason}"
        ) from None
    rows = graph.read(_LOOKUPS[kind], {"id": node_id, "limit": limit})
    if not rows:
        return IdentifierUsers(kind=kind, id=node_id, found=False, hub=False, subscribers=0,
                               users=[], truncated=False)  # fmt: skip
    row = rows[0]
    users = [IdentifierUser(**{k: u[k] for k in ("id", "status", "risk", "priority", "ring_id")})
             for u in row["users"]]  # fmt: skip
    return IdentifierUsers(
        kind=kind, id=row["id"], found=True, hub=row["hub"], subscribers=row["subscribers"],
        users=users, truncated=row["subscribers"] > len(users),
    )  # fmt: skip
