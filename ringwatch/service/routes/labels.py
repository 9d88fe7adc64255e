"""Labels: an analyst's confirmed outcome for a subscriber, and a subscriber's labels.

A label posted here is stored exactly as a `labels` event from Kafka would be: the same model
(`LabelEvent`), the same preparation and the same graph writer, so it is idempotent on its
`event_id` and the subscriber's current label is the newest one by time.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, LiteralString

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ringwatch.graph.writer import GraphWriter
from ringwatch.ingest.events import Id, LabelEvent, LongText, ShortText, Slug
from ringwatch.ingest.events import Label as LabelValue
from ringwatch.ingest.prepare import Preparer
from ringwatch.service.deps import AppSettings, Graph
from ringwatch.service.errors import ApiError, not_found
from ringwatch.service.routes.common import ID_PATTERN, native
from ringwatch.service.security import ReadKey, WriteKey

router = APIRouter(tags=["labels"])


class LabelIn(BaseModel):
    """A confirmed outcome: fraud or legitimate."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    subscriber_id: Id
    label: LabelValue
    analyst: ShortText = Field(description="Who decided.")
    reason: LongText = Field(description="Why, in a sentence or two.")
    ring_id: Id | None = Field(default=None, description="The ring the decision was about.")
    source: Slug = Field(default="analyst", description="analyst, chargeback, ...")
    event_id: Id | None = Field(
        default=None,
        description="Idempotency key: sending the same one again changes nothing (generated "
        "when absent).",
    )


class LabelOut(BaseModel):
    event_id: str
    subscriber_id: str
    label: str
    source: str | None = None
    analyst: str | None = None
    reason: str | None = None
    ring_id: str | None = None
    transaction_id: str | None = None
    ts: datetime | None = None


class SubscriberLabels(BaseModel):
    subscriber_id: str
    current: str | None = Field(description="The subscriber's label now (the newest one).")
    labels: list[LabelOut] = Field(description="Newest first.")
    truncated: bool


_CHECK: LiteralString = """
OPTIONAL MATCH (s:Subscriber {id: $subscriber_id})
OPTIONAL MATCH (r:Ring {id: $ring_id})
OPTIONAL MATCH (l:Label {id: $event_id})
RETURN s IS NOT NULL AS subscriber, r IS NOT NULL AS ring, l {.*} AS label
"""

_READ: LiteralString = "MATCH (l:Label {id: $event_id}) RETURN l {.*} AS label"


def _out(props: dict[str, Any]) -> LabelOut:
    return LabelOut(
        event_id=props["id"],
        subscriber_id=props["subscriber_id"],
        label=props["label"],
        source=props.get("source"),
        analyst=props.get("analyst"),
        reason=props.get("reason"),
        ring_id=props.get("ring_id"),
        transaction_id=props.get("transaction_id"),
        ts=native(props.get("ts")),
    )


def _replayed(stored: dict[str, Any], body: LabelIn) -> JSONResponse:
    """The same event id again: 200 with what is stored, if it is the same label."""
    if stored.get("subscriber_id") != body.subscriber_id or stored.get("label") != body.label:
        raise ApiError(
            409,
            "conflict",
            "this event_id was already used for a different label; use a new event_id",
            {"event_id": stored["id"]},
        )
    return JSONResponse(_out(stored).model_dump(mode="json"), status_code=200)


@router.post(
    "/v1/labels",
    status_code=201,
    response_model=LabelOut,
    responses={200: {"model": LabelOut, "description": "The same event_id was stored before."}},
)
def create_label(body: LabelIn, graph: Graph, settings: AppSettings, _: WriteKey) -> Any:
    """Record an analyst's decision (write scope), through the same path as Kafka ingest.

    201 with the stored label; the same `event_id` again is 200 and changes nothing (a
    different label under a used `event_id` is 409). The subscriber, and the ring when given,
    must exist (404)."""
    event_id = body.event_id or f"label-{uuid.uuid4().hex}"
    found = graph.read(
        _CHECK, {"subscriber_id": body.subscriber_id, "ring_id": body.ring_id,
                 "event_id": event_id},
    )[0]  # fmt: skip
    if found["label"] is not None:
        return _replayed(found["label"], body)
    if not found["subscriber"]:
        raise not_found("subscriber", body.subscriber_id)
    if body.ring_id is not None and not found["ring"]:
        raise not_found("ring", body.ring_id)
    event = LabelEvent(
        event_id=event_id,
        schema_version=1,
        occurred_at=datetime.now(UTC),
        subscriber_id=body.subscriber_id,
        label=body.label,
        source=body.source,
        analyst=body.analyst,
        reason=body.reason,
        ring_id=body.ring_id,
    )
    preparer = Preparer(
        pii_hmac_key=settings.scoring.pii_hmac_key, default_region=settings.ingest.default_region
    )
    result = GraphWriter(graph, hub_cap=settings.scoring.hub_cap).write([preparer.prepare(event)])
    stored = graph.read(_READ, {"event_id": event_id})[0]["label"]
    if not result.labels:  # another request stored the same event id first
        return _replayed(stored, body)
    return JSONResponse(_out(stored).model_dump(mode="json"), status_code=201)


_LIST: LiteralString = """
MATCH (s:Subscriber {id: $id})
OPTIONAL MATCH (l:Label)-[:ABOUT]->(s)
WITH s, l ORDER BY l.ts DESC, l.id
RETURN s.label AS current, collect(l {.*}) AS labels
"""


@router.get("/v1/subscribers/{subscriber_id}/labels", response_model=SubscriberLabels)
def subscriber_labels(
    subscriber_id: Annotated[str, Path(pattern=ID_PATTERN, description="Subscriber id.")],
    graph: Graph,
    _: ReadKey,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> SubscriberLabels:
    """A subscriber's labels, newest first, and its current label (read scope)."""
    rows = graph.read(_LIST, {"id": subscriber_id})
    if not rows:
        raise not_found("subscriber", subscriber_id)
    labels = rows[0]["labels"]
    return SubscriberLabels(
        subscriber_id=subscriber_id,
        current=rows[0]["current"],
        labels=[_out(props) for props in labels[:limit]],
        truncated=len(labels) > limit,
    )
