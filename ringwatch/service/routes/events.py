"""Event ingestion over HTTP: validated like Kafka ingest, then published to the family's topic.

For producers that cannot speak Kafka. Each event is checked with the same models as the
ingest workers (`parse_event`), so what is accepted here is what the workers will store; the
valid ones are published keyed by subscriber id and the answer waits until the broker has
acknowledged them. Ingest is idempotent on event ids, so a client may retry a whole request.
Event contents are never logged.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from ringwatch.config import Settings
from ringwatch.ingest.events import EventFamily, parse_event
from ringwatch.ingest.exceptions import EventValidationError
from ringwatch.ingest.kafka import EventProducer, topic_for
from ringwatch.service.errors import ApiError, error_body
from ringwatch.service.security import WriteKey

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/events", tags=["events"])

MAX_EVENTS = 1000
DELIVERY_TIMEOUT_S = 10.0
# Messages the broker has not acknowledged by then fail instead of lingering in the queue.
PRODUCER_OPTIONS: dict[str, str | int | float | bool] = {"message.timeout.ms": 10_000}

_producer_lock = threading.Lock()


class Rejected(BaseModel):
    index: int
    problem: str


class Accepted(BaseModel):
    accepted: int
    rejected: list[Rejected]


def producer_of(request: Request) -> EventProducer:
    """The app's one producer, made on first use; the lifespan flushes it at shutdown."""
    state = request.app.state
    producer: EventProducer | None = getattr(state, "producer", None)
    if producer is None:
        with _producer_lock:
            producer = getattr(state, "producer", None)
            if producer is None:
                settings: Settings = state.settings
                producer = EventProducer(settings.kafka, PRODUCER_OPTIONS)
                state.producer = producer
    return producer


class _Receipts:
    """Delivery reports of one request's messages (called from librdkafka's poll threads)."""

    def __init__(self) -> None:
        self.delivered = 0
        self.failed = 0
        self._lock = threading.Lock()

    def __call__(self, error: object, _message: object) -> None:
        with self._lock:
            if error is None:
                self.delivered += 1
            else:
                self.failed += 1


def _publish(producer: EventProducer, topic: str, events: Sequence[tuple[str, bytes]]) -> _Receipts:
    receipts = _Receipts()
    for key, value in events:
        producer.publish(topic, value, key, on_delivery=receipts)
    producer.flush(DELIVERY_TIMEOUT_S)
    return receipts


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _items(raw: bytes) -> list[Any]:
    try:
        body = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise ApiError(400, "invalid_json", "the body is not valid JSON") from None
    if isinstance(body, dict) and set(body) == {"events"}:
        events = body["events"]
        if not isinstance(events, list):
            raise ApiError(422, "invalid_request", "events: must be a list of events")
        if not events:
            raise ApiError(422, "invalid_request", "events: the list is empty")
        if len(events) > MAX_EVENTS:
            raise ApiError(
                413, "too_large", f"events: {len(events)} events, at most {MAX_EVENTS} per request"
            )
        return events
    return [body]


@router.post(
    "/{family}",
    status_code=202,
    response_model=Accepted,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            {"type": "object", "description": "One event of the family."},
                            {
                                "type": "object",
                                "properties": {"events": {"type": "array", "maxItems": MAX_EVENTS}},
                                "required": ["events"],
                            },
                        ]
                    }
                }
            },
        }
    },
)
async def ingest_events(family: EventFamily, request: Request, _: WriteKey) -> Any:
    """Publish events of one family (identity, transactions or labels) to its Kafka topic
    (write scope). The body is one event or `{"events": [...]}` with up to 1000 of them, each
    in the JSON Schema of `docs/events/`.

    Every event is validated on its own: the valid ones are published (keyed by subscriber id)
    and the answer comes once the broker has acknowledged them, 202 with how many were accepted
    and, for each rejected one, its index and what is wrong with it. When none is valid: 422.
    When the broker does not confirm: 503, and the request may be retried as it is."""
    items = _items(await request.body())
    valid: list[tuple[str, bytes]] = []
    rejected: list[Rejected] = []
    for index, item in enumerate(items):
        # ASCII: a lone surrogate in a string stays an escape, and the models reject it.
        try:
            value = json.dumps(item, separators=(",", ":")).encode()
        except (ValueError, RecursionError):
            rejected.append(Rejected(index=index, problem="event: nested too deeply"))
            continue
        try:
            event = parse_event(family, value)
        except EventValidationError as exc:
            rejected.append(Rejected(index=index, problem="; ".join(exc.problems)))
            continue
        valid.append((event.subscriber_id, value))
    if not valid:
        return JSONResponse(
            error_body(
                "invalid_events",
                "no event in the request is valid",
                {"accepted": 0, "rejected": [r.model_dump() for r in rejected]},
            ),
            status_code=422,
        )
    settings: Settings = request.app.state.settings
    producer = producer_of(request)
    receipts = await run_in_threadpool(_publish, producer, topic_for(settings.kafka, family), valid)
    if receipts.delivered != len(valid):
        log.warning(
            "events not confirmed by Kafka: %d of %d (%d failed)",
            len(valid) - receipts.delivered, len(valid), receipts.failed,
        )  # fmt: skip
        raise ApiError(
            503,
            "unavailable",
            f"Kafka confirmed {receipts.delivered} of {len(valid)} events; retry the request "
            "(events are idempotent on event_id)",
            {"confirmed": receipts.delivered, "failed": receipts.failed},
        )
    return Accepted(accepted=len(valid), rejected=rejected)
