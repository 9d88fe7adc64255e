"""Alert nodes: raised once from candidates, read back for tests and the API.

```text
(:Alert {id, dedup_key, kind, entity_kind, entity_id, priority, risk, reasons, reason_codes,
         status: 'open', created_at, updated_at, escalated_from,
         published: false,                                   Kafka outbox (ringwatch.graph.outbox)
         delivery: 'pending', delivery_attempts: 0, delivery_next_at})   webhook delivery outbox
  -[:ABOUT]->(:Subscriber|:Ring {id})
```

The id is deterministic (`AlertCandidate.id`) and unique in the schema, so storing MERGEs on it:
the same candidate raised again, by a re-run or by two processes at the same moment, finds the
node that is there and creates nothing. A claim token set only when the node is created tells
this transaction which alerts are its own, and only those are returned.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, LiteralString

from ringwatch.graph.db import QueryRunner, Tx
from ringwatch.scoring import reasons as reason_codec
from ringwatch.scoring.alerts import (
    DEFAULT_RULE_CODES,
    RULE_MIN_PRIORITY,
    AlertCandidate,
    EntityKind,
    alert_candidates,
)
from ringwatch.scoring.reasons import Reason
from ringwatch.scoring.risk import Priority

log = logging.getLogger(__name__)

# Labels are literals of the statements, chosen from this fixed mapping, never from input.
_FIND_ENTITIES: dict[EntityKind, LiteralString] = {
    "subscriber": "UNWIND $ids AS id MATCH (e:Subscriber {id: id}) RETURN e.id AS id",
    "ring": "UNWIND $ids AS id MATCH (e:Ring {id: id}) RETURN e.id AS id",
}

_ALERT_PROPERTIES: LiteralString = """
  ON CREATE SET a.claim = $claim, a.dedup_key = row.dedup_key, a.kind = row.kind,
                a.entity_kind = row.entity_kind, a.entity_id = row.entity_id,
                a.priority = row.priority, a.risk = row.risk, a.reasons = row.reasons,
                a.reason_codes = row.reason_codes, a.status = 'open',
                a.created_at = $now, a.updated_at = $now, a.escalated_from = row.escalated_from,
                a.published = false, a.delivery = 'pending', a.delivery_attempts = 0,
                a.delivery_next_at = $now
WITH a, e WHERE a.claim = $claim
REMOVE a.claim
CREATE (a)-[:ABOUT]->(e)
RETURN a {.*} AS alert
"""

_RAISE: dict[EntityKind, LiteralString] = {
    "subscriber": """
UNWIND $rows AS row
MATCH (e:Subscriber {id: row.entity_id})
MERGE (a:Alert {id: row.id})
"""
    + _ALERT_PROPERTIES,
    "ring": """
UNWIND $rows AS row
MATCH (e:Ring {id: row.entity_id})
MERGE (a:Alert {id: row.id})
"""
    + _ALERT_PROPERTIES,
}

_ALERTED = """
MATCH (a:Alert)
WHERE a.entity_id = $entity_id AND a.entity_kind = $entity_kind
RETURN a.kind AS kind, collect(a.priority) AS priorities
"""

_LIST = """
MATCH (a:Alert)
WHERE ($status IS NULL OR a.status = $status)
  AND ($priority IS NULL OR a.priority = $priority)
  AND ($entity_kind IS NULL OR a.entity_kind = $entity_kind)
  AND ($entity_id IS NULL OR a.entity_id = $entity_id)
  AND ($kind IS NULL OR a.kind = $kind)
  AND ($delivery IS NULL OR a.delivery = $delivery)
RETURN a {.*} AS alert
ORDER BY a.created_at DESC, a.id
LIMIT $limit
"""


@dataclass(frozen=True, slots=True)
class StoredAlert:
    """An Alert node as stored."""

    id: str
    dedup_key: str
    kind: str
    entity_kind: EntityKind
    entity_id: str
    priority: Priority
    risk: float
    reasons: list[Reason]
    reason_codes: list[str]
    status: str
    created_at: datetime
    updated_at: datetime
    escalated_from: str | None
    published: bool
    delivery: str
    delivery_attempts: int = 0
    published_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_properties(cls, properties: Mapping[str, Any]) -> StoredAlert:
        props = dict(properties)
        known = {name for name in cls.__dataclass_fields__ if name != "extra"}
        entity_kind: EntityKind = "ring" if props["entity_kind"] == "ring" else "subscriber"
        return cls(
            id=str(props["id"]),
            dedup_key=str(props["dedup_key"]),
            kind=str(props["kind"]),
            entity_kind=entity_kind,
            entity_id=str(props["entity_id"]),
            priority=Priority(props["priority"]),
            risk=float(props["risk"]),
            reasons=reason_codec.loads(props.get("reasons")),
            reason_codes=[str(code) for code in props.get("reason_codes") or []],
            status=str(props["status"]),
            created_at=_native(props["created_at"]),
            updated_at=_native(props["updated_at"]),
            escalated_from=props.get("escalated_from"),
            published=bool(props.get("published", False)),
            delivery=str(props.get("delivery", "pending")),
            delivery_attempts=int(props.get("delivery_attempts") or 0),
            published_at=_native(props["published_at"]) if props.get("published_at") else None,
            extra={k: v for k, v in props.items() if k not in known},
        )


def _native(value: Any) -> datetime:
    native = value.to_native() if hasattr(value, "to_native") else value
    if not isinstance(native, datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__}")
    return native


def _row(candidate: AlertCandidate) -> dict[str, Any]:
    return {
        "id": candidate.id,
        "dedup_key": candidate.dedup_key,
        "kind": candidate.kind,
        "entity_kind": candidate.entity_kind,
        "entity_id": candidate.entity_id,
        "priority": candidate.priority.value,
        "risk": float(candidate.risk),
        "reasons": reason_codec.dumps(candidate.reasons),
        "reason_codes": candidate.reason_codes,
        "escalated_from": candidate.escalated_from_id,
    }


def raise_alerts(
    runner: QueryRunner, candidates: Sequence[AlertCandidate], now: datetime
) -> list[StoredAlert]:
    """Store the candidates as open alerts; returns only the alerts this call created.

    A candidate whose alert exists already (same id) changes nothing. A candidate about an
    entity that is not in the graph is skipped with a warning: an alert is always about a node.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    # One row per alert id, sorted: concurrent callers take the alerts' locks in one order.
    rows_by_id = {candidate.id: _row(candidate) for candidate in candidates}
    by_kind: dict[EntityKind, list[dict[str, Any]]] = {}
    for row in sorted(rows_by_id.values(), key=lambda r: (r["entity_id"], r["id"])):
        by_kind.setdefault(row["entity_kind"], []).append(row)
    if not by_kind:
        return []

    def work(tx: Tx) -> list[dict[str, Any]]:
        # A fresh claim per attempt: a retried transaction starts from a rolled-back graph.
        claim = uuid.uuid4().hex
        created: list[dict[str, Any]] = []
        for entity_kind, rows in by_kind.items():
            ids = sorted({row["entity_id"] for row in rows})
            found = {record["id"] for record in tx.run(_FIND_ENTITIES[entity_kind], {"ids": ids})}
            missing = [entity_id for entity_id in ids if entity_id not in found]
            if missing:
                log.warning(
                    "no alert for %d %s(s) not in the graph: %s",
                    len(missing),
                    entity_kind,
                    ", ".join(missing[:5]),
                )
            present = [row for row in rows if row["entity_id"] in found]
            if present:
                created.extend(
                    record["alert"]
                    for record in tx.run(
                        _RAISE[entity_kind], {"rows": present, "claim": claim, "now": now}
                    )
                )
        return created

    return [StoredAlert.from_properties(props) for props in runner.write_transaction(work)]


def alerted_priorities(
    runner: QueryRunner, entity_kind: EntityKind, entity_id: str
) -> dict[str, Priority]:
    """For one entity: each kind already alerted -> the highest priority alerted for it."""
    alerted: dict[str, Priority] = {}
    for record in runner.read(_ALERTED, {"entity_kind": entity_kind, "entity_id": entity_id}):
        priorities = [Priority(value) for value in record["priorities"]]
        alerted[str(record["kind"])] = max(priorities, key=lambda p: p.rank)
    return alerted


def alert_on_score(
    runner: QueryRunner,
    entity_kind: EntityKind,
    entity_id: str,
    *,
    risk: float,
    priority: Priority,
    reasons: Sequence[Reason],
    now: datetime,
    rule_codes: Collection[str] = DEFAULT_RULE_CODES,
    rule_min_priority: Priority = RULE_MIN_PRIORITY,
) -> list[StoredAlert]:
    """Raise what an entity's new score calls for: read what was alerted, decide, store.

    Safe to call again with the same score (nothing new) and from several processes at once
    (deterministic ids): a stale read only means a candidate whose alert already exists.
    """
    candidates = alert_candidates(
        entity_kind,
        entity_id,
        risk=risk,
        priority=priority,
        reasons=reasons,
        alerted=alerted_priorities(runner, entity_kind, entity_id),
        rule_codes=rule_codes,
        rule_min_priority=rule_min_priority,
    )
    return raise_alerts(runner, candidates, now)


def list_alerts(
    runner: QueryRunner,
    *,
    status: str | None = None,
    priority: Priority | None = None,
    entity_kind: EntityKind | None = None,
    entity_id: str | None = None,
    kind: str | None = None,
    delivery: str | None = None,
    limit: int = 100,
) -> list[StoredAlert]:
    """Alerts matching every filter given, newest first.

    `delivery` is the webhook delivery state: pending, sending, delivered or failed.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    params = {
        "status": status,
        "priority": priority.value if priority is not None else None,
        "entity_kind": entity_kind,
        "entity_id": entity_id,
        "kind": kind,
        "delivery": delivery,
        "limit": limit,
    }
    return [StoredAlert.from_properties(r["alert"]) for r in runner.read(_LIST, params)]


_ALL_ALERTED: LiteralString = """
MATCH (a:Alert) WHERE a.entity_kind = $entity_kind
RETURN a.entity_id AS entity_id, a.kind AS kind, collect(a.priority) AS priorities
"""


def all_alerted_priorities(
    runner: QueryRunner, entity_kind: EntityKind
) -> dict[str, dict[str, Priority]]:
    """`alerted_priorities` for every entity of a kind at once (for batch scoring)."""
    alerted: dict[str, dict[str, Priority]] = {}
    for record in runner.read(_ALL_ALERTED, {"entity_kind": entity_kind}):
        priorities = [Priority(value) for value in record["priorities"]]
        alerted.setdefault(str(record["entity_id"]), {})[str(record["kind"])] = max(
            priorities, key=lambda p: p.rank
        )
    return alerted
