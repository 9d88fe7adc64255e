"""Alerts: list and read them, acknowledge and resolve them, and follow new ones as they come.

Alert nodes are raised by scoring (`ringwatch.graph.alerts`); this is the analysts' and the
workflows' side of them. Status moves open -> acknowledged -> resolved (or open -> resolved);
each step records when and by whom. Delivery to webhooks (`delivery`) is independent of it.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, LiteralString

import anyio
from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from ringwatch.graph.alerts import StoredAlert
from ringwatch.graph.db import QueryRunner, Tx
from ringwatch.graph.exceptions import GraphError
from ringwatch.ingest.events import LongText, ShortText
from ringwatch.service.deps import Graph
from ringwatch.service.errors import ApiError, not_found
from ringwatch.service.routes.common import (
    ID_PATTERN,
    ReasonOut,
    decode_cursor,
    encode_cursor,
    native,
)
from ringwatch.service.security import ReadKey, WriteKey

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])
AlertId = Annotated[str, Path(pattern=ID_PATTERN, description="Alert id.")]

POLL_INTERVAL_S = 0.5
STREAM_BATCH = 100


class AlertStatus(StrEnum):
    open = "open"
    acknowledged = "acknowledged"
    resolved = "resolved"


class PriorityFilter(StrEnum):
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"


class EntityKindFilter(StrEnum):
    subscriber = "subscriber"
    ring = "ring"


class DeliveryFilter(StrEnum):
    pending = "pending"
    sending = "sending"
    delivered = "delivered"
    failed = "failed"


KindFilter = Annotated[
    str | None,
    Query(pattern=r"^[a-z0-9][a-z0-9_.\-]{0,127}$", description="risk or a rule reason code."),
]


class AlertOut(BaseModel):
    id: str
    kind: str
    entity_kind: str
    entity_id: str
    priority: str
    risk: float
    reasons: list[ReasonOut]
    reason_codes: list[str]
    status: str
    created_at: datetime
    updated_at: datetime
    escalated_from: str | None = None
    delivery: str
    delivery_attempts: int = 0
    published: bool
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    acknowledge_note: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    resolution_note: str | None = None


class AlertPage(BaseModel):
    alerts: list[AlertOut]
    next_cursor: str | None


class AlertAction(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    actor: ShortText = Field(description="Who (a person, or the workflow acting).")
    note: LongText | None = None


def alert_out(props: dict[str, Any]) -> AlertOut:
    stored = StoredAlert.from_properties(props)
    extra = stored.extra
    return AlertOut(
        id=stored.id,
        kind=stored.kind,
        entity_kind=stored.entity_kind,
        entity_id=stored.entity_id,
        priority=stored.priority.value,
        risk=stored.risk,
        reasons=[ReasonOut(**reason.to_dict()) for reason in stored.reasons],
        reason_codes=stored.reason_codes,
        status=stored.status,
        created_at=stored.created_at,
        updated_at=stored.updated_at,
        escalated_from=stored.escalated_from,
        delivery=stored.delivery,
        delivery_attempts=stored.delivery_attempts,
        published=stored.published,
        acknowledged_at=native(extra.get("acknowledged_at")),
        acknowledged_by=extra.get("acknowledged_by"),
        acknowledge_note=extra.get("acknowledge_note"),
        resolved_at=native(extra.get("resolved_at")),
        resolved_by=extra.get("resolved_by"),
        resolution_note=extra.get("resolution_note"),
    )


# Cursors carry Neo4j's own text of created_at (nanoseconds kept), so paging is exact.
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$")
_ALERT_ID = re.compile(ID_PATTERN)


def _cursor(value: str | None) -> tuple[str, str] | None:
    decoded = decode_cursor(value, 2)
    if decoded is None:
        return None
    ts, ident = decoded
    if not (isinstance(ts, str) and _TIMESTAMP.match(ts)):
        raise ApiError(400, "invalid_cursor", "the cursor is not one this API returned")
    if not (isinstance(ident, str) and _ALERT_ID.match(ident)):
        raise ApiError(400, "invalid_cursor", "the cursor is not one this API returned")
    return ts, ident


_FILTERS: LiteralString = """
  AND ($status IS NULL OR a.status = $status)
  AND ($priority IS NULL OR a.priority = $priority)
  AND ($entity_kind IS NULL OR a.entity_kind = $entity_kind)
  AND ($entity_id IS NULL OR a.entity_id = $entity_id)
  AND ($kind IS NULL OR a.kind = $kind)
  AND ($delivery IS NULL OR a.delivery = $delivery)
"""

_LIST: LiteralString = (
    "MATCH (a:Alert)\n"
    "WHERE ($after_ts IS NULL OR a.created_at < datetime($after_ts)\n"
    "       OR (a.created_at = datetime($after_ts) AND a.id > $after_id))\n"
    + _FILTERS
    + "WITH a ORDER BY a.created_at DESC, a.id LIMIT $limit\n"
    "RETURN a {.*} AS alert, toString(a.created_at) AS ts"
)


@router.get("", response_model=AlertPage)
def list_alerts(
    graph: Graph,
    _: ReadKey,
    status: AlertStatus | None = None,
    priority: PriorityFilter | None = None,
    entity_kind: EntityKindFilter | None = None,
    entity_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    kind: KindFilter = None,
    delivery: DeliveryFilter | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> AlertPage:
    """Alerts matching every filter given, newest first; pass `next_cursor` back for the next
    page (read scope)."""
    after = _cursor(cursor)
    rows = graph.read(
        _LIST,
        {
            "status": status.value if status else None,
            "priority": priority.value if priority else None,
            "entity_kind": entity_kind.value if entity_kind else None,
            "entity_id": entity_id,
            "kind": kind,
            "delivery": delivery.value if delivery else None,
            "after_ts": after[0] if after else None,
            "after_id": after[1] if after else None,
            "limit": limit + 1,
        },
    )
    page = rows[:limit]
    next_cursor = (
        encode_cursor(page[-1]["ts"], page[-1]["alert"]["id"]) if len(rows) > limit else None
    )
    return AlertPage(alerts=[alert_out(row["alert"]) for row in page], next_cursor=next_cursor)


# --- the stream ---------------------------------------------------------------------------------

_NEWEST: LiteralString = """
MATCH (a:Alert)
WITH a ORDER BY a.created_at DESC, a.id DESC LIMIT 1
RETURN toString(a.created_at) AS ts, a.id AS id
"""

_NEWER: LiteralString = (
    "MATCH (a:Alert)\n"
    "WHERE ($after_ts IS NULL OR a.created_at > datetime($after_ts)\n"
    "       OR (a.created_at = datetime($after_ts) AND a.id > $after_id))\n"
    + _FILTERS
    + "WITH a ORDER BY a.created_at, a.id LIMIT $limit\n"
    "RETURN a {.*} AS alert, toString(a.created_at) AS ts"
)


def _newest(graph: QueryRunner) -> tuple[str, str] | None:
    rows = graph.read(_NEWEST)
    return (str(rows[0]["ts"]), str(rows[0]["id"])) if rows else None


def _sse(alert: AlertOut, event_id: str) -> str:
    data = json.dumps(alert.model_dump(mode="json"), separators=(",", ":"))
    return f"id: {event_id}\nevent: alert\ndata: {data}\n\n"


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events."}},
)
async def stream_alerts(
    request: Request,
    graph: Graph,
    _: ReadKey,
    priority: PriorityFilter | None = None,
    entity_kind: EntityKindFilter | None = None,
    kind: KindFilter = None,
    heartbeat_s: Annotated[
        float, Query(ge=0.5, le=300, description="Seconds between keep-alive comments.")
    ] = 15.0,
    last_event_id: Annotated[
        str | None,
        Header(alias="Last-Event-ID", max_length=500, description="Resume after this event."),
    ] = None,
) -> StreamingResponse:
    """New alerts as Server-Sent Events (read scope): `event: alert`, the alert as JSON in
    `data:`, and an `id:` that, sent back as `Last-Event-ID` on reconnection, resumes right
    after it. Without one the stream starts after the newest alert there is. Comment lines
    (`: keep-alive`) are sent every `heartbeat_s` when nothing happens."""
    after = _cursor(last_event_id) or await run_in_threadpool(_newest, graph)
    params: dict[str, Any] = {
        "status": None,
        "priority": priority.value if priority else None,
        "entity_kind": entity_kind.value if entity_kind else None,
        "entity_id": None,
        "kind": kind,
        "delivery": None,
        "limit": STREAM_BATCH,
    }
    state = request.app.state

    async def events() -> AsyncIterator[str]:
        nonlocal after
        state.alert_streams = getattr(state, "alert_streams", 0) + 1
        try:
            yield "retry: 2000\n: connected\n\n"
            beat = time.monotonic()
            while not await request.is_disconnected():
                try:
                    rows = await run_in_threadpool(
                        graph.read,
                        _NEWER,
                        {**params, "after_ts": after[0] if after else None,
                         "after_id": after[1] if after else None},
                    )  # fmt: skip
                except GraphError:
                    rows = []
                    yield ": the graph database is unavailable; retrying\n\n"
                for row in rows:
                    after = (str(row["ts"]), str(row["alert"]["id"]))
                    yield _sse(alert_out(row["alert"]), encode_cursor(*after))
                    beat = time.monotonic()
                if len(rows) == STREAM_BATCH:
                    continue  # more are waiting
                if time.monotonic() - beat >= heartbeat_s:
                    yield ": keep-alive\n\n"
                    beat = time.monotonic()
                await anyio.sleep(POLL_INTERVAL_S)
        finally:
            state.alert_streams -= 1

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# --- one alert ----------------------------------------------------------------------------------

_ONE: LiteralString = "MATCH (a:Alert {id: $id}) RETURN a {.*} AS alert"


@router.get("/{alert_id}", response_model=AlertOut)
def get_alert(alert_id: AlertId, graph: Graph, _: ReadKey) -> AlertOut:
    """One alert with its reasons, status and delivery state (read scope)."""
    rows = graph.read(_ONE, {"id": alert_id})
    if not rows:
        raise not_found("alert", alert_id)
    return alert_out(rows[0]["alert"])


# Taking the alert's write lock first: two concurrent actions are applied one after the other,
# each reading the status the other left.
_LOCK: LiteralString = """
MATCH (a:Alert {id: $id})
SET a.status_lock = true
REMOVE a.status_lock
RETURN a.status AS status
"""

_ACKNOWLEDGE: LiteralString = """
MATCH (a:Alert {id: $id})
SET a.status = 'acknowledged', a.acknowledged_at = $now, a.acknowledged_by = $actor,
    a.acknowledge_note = $note, a.updated_at = $now
"""

_RESOLVE: LiteralString = """
MATCH (a:Alert {id: $id})
SET a.status = 'resolved', a.resolved_at = $now, a.resolved_by = $actor,
    a.resolution_note = $note, a.updated_at = $now
"""


def _transition(
    graph: QueryRunner, alert_id: str, action: str, body: AlertAction
) -> dict[str, Any]:
    target = "acknowledged" if action == "acknowledge" else "resolved"

    def work(tx: Tx) -> dict[str, Any] | str | None:
        locked = tx.run(_LOCK, {"id": alert_id})
        if not locked:
            return None
        status = str(locked[0]["status"])
        if action == "acknowledge" and status == "resolved":
            return status
        if status != target:  # a repeated action changes nothing
            tx.run(
                _ACKNOWLEDGE if action == "acknowledge" else _RESOLVE,
                {"id": alert_id, "now": datetime.now(UTC), "actor": body.actor,
                 "note": body.note},
            )  # fmt: skip
        props: dict[str, Any] = tx.run(_ONE, {"id": alert_id})[0]["alert"]
        return props

    outcome = graph.write_transaction(work)
    if outcome is None:
        raise not_found("alert", alert_id)
    if isinstance(outcome, str):
        raise ApiError(
            409,
            "conflict",
            f"the alert is {outcome}; a resolved alert cannot be acknowledged",
            {"status": outcome},
        )
    return outcome


@router.post("/{alert_id}/acknowledge", response_model=AlertOut)
def acknowledge(alert_id: AlertId, body: AlertAction, graph: Graph, _: WriteKey) -> AlertOut:
    """Acknowledge an open alert (write scope): someone is on it. Records when, who and the
    note. Acknowledging again changes nothing; a resolved alert cannot be (409)."""
    return alert_out(_transition(graph, alert_id, "acknowledge", body))


@router.post("/{alert_id}/resolve", response_model=AlertOut)
def resolve(alert_id: AlertId, body: AlertAction, graph: Graph, _: WriteKey) -> AlertOut:
    """Resolve an open or acknowledged alert (write scope). Records when, who and the note;
    resolving again changes nothing."""
    return alert_out(_transition(graph, alert_id, "resolve", body))
