"""Small builders of valid events for tests (payload dicts, parsed through the real models)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from ringwatch.ingest.events import EventFamily, parse_event
from ringwatch.ingest.prepare import PreparedEvent, Preparer

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def at(hours: float = 0.0) -> str:
    return (T0 + timedelta(hours=hours)).isoformat()


def identity(
    event_id: str,
    subscriber_id: str,
    *,
    type: str = "subscriber.registered",
    hours: float = 0.0,
    **identifiers: list[str],
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "schema_version": 1,
        "type": type,
        "occurred_at": at(hours),
        "subscriber_id": subscriber_id,
        "identifiers": identifiers,
    }


def transaction(
    transaction_id: str,
    subscriber_id: str,
    *,
    type: str = "payment",
    hours: float = 0.0,
    amount: float | None = 10.0,
    **extra: Any,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "event_id": f"evt-{transaction_id}",
        "schema_version": 1,
        "type": type,
        "occurred_at": at(hours),
        "subscriber_id": subscriber_id,
        "transaction_id": transaction_id,
    }
    if type in ("payment", "transfer", "topup"):
        payload.update(amount=amount, currency="USD")
    if type in ("payment", "transfer"):
        payload["counterparty"] = {"kind": "merchant", "id": "m-shop"}
    if type == "call":
        payload.update(counterparty={"kind": "number", "id": "+12015550123"}, duration_s=60.0)
    if type == "sms":
        payload["counterparty"] = {"kind": "number", "id": "+12015550123"}
    if type == "data_usage":
        payload.update(data_mb=100.0, amount=amount, currency="USD")
    payload.update(extra)
    return payload


def label(event_id: str, subscriber_id: str, value: str, *, hours: float = 0.0) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "schema_version": 1,
        "occurred_at": at(hours),
        "subscriber_id": subscriber_id,
        "label": value,
        "source": "analyst",
    }


def family_of(payload: dict[str, Any]) -> EventFamily:
    if "label" in payload:
        return EventFamily.LABELS
    if "transaction_id" in payload:
        return EventFamily.TRANSACTIONS
    return EventFamily.IDENTITY


def prepared(*payloads: dict[str, Any], preparer: Preparer | None = None) -> list[PreparedEvent]:
    preparer = preparer or Preparer()
    return [preparer.prepare(parse_event(family_of(p), json.dumps(p).encode())) for p in payloads]
