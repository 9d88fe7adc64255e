"""Idempotent, batched upserts of prepared events into the identity graph.

One batch is one Neo4j transaction, so a batch is stored whole or not at all. Exactly-once
effects under redelivery come from *claims*: each identity event, transaction and label first
MERGEs a node keyed by its own id (`IngestedEvent`, `Transaction`, `Label`) and only events that
created their node in this transaction go on to change counters and usage windows. A redelivered
event finds its node and changes nothing.

Lock order is fixed (subscribers, then identifiers by kind and id, then buckets), and rows are
sorted, so concurrent workers on different partitions cannot deadlock on a shared identifier;
the driver retries the whole batch on the transient errors that remain.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, LiteralString, TypeVar

from ringwatch.graph.db import QueryRunner, Record, Tx
from ringwatch.graph.rings import LiveRingTracker, RingEvent
from ringwatch.ingest.normalize import IdentifierKind
from ringwatch.ingest.prepare import (
    IdentifierLink,
    PreparedEvent,
    PreparedIdentity,
    PreparedLabel,
    PreparedTransaction,
    usage_day_id,
)

E = TypeVar("E")


@dataclass(frozen=True)
class IdentifierSchema:
    label: str
    relationship: str


# The graph model's identifier kinds: node label and subscriber -> identifier relationship type.
IDENTIFIER_SCHEMA: dict[IdentifierKind, IdentifierSchema] = {
    IdentifierKind.DEVICE: IdentifierSchema("Device", "USES_DEVICE"),
    IdentifierKind.ADDRESS: IdentifierSchema("Address", "HAS_ADDRESS"),
    IdentifierKind.PAYMENT: IdentifierSchema("PaymentMethod", "PAYS_WITH"),
    IdentifierKind.PHONE: IdentifierSchema("Phone", "HAS_PHONE"),
    IdentifierKind.EMAIL: IdentifierSchema("Email", "HAS_EMAIL"),
    IdentifierKind.IP: IdentifierSchema("IP", "USES_IP"),
}

_CLAIM_IDENTITY = """
UNWIND $rows AS raw WITH raw {.*, ts: datetime({epochMillis: raw.ts})} AS row
MERGE (e:IngestedEvent {id: row.event_id})
  ON CREATE SET e.claim = $claim, e.type = row.type, e.ts = row.ts,
                e.subscriber_id = row.subscriber_id
WITH e, row WHERE e.claim = $claim
REMOVE e.claim
RETURN row.event_id AS id
"""

_UPSERT_SUBSCRIBERS = """
UNWIND $rows AS raw
WITH raw {.*, first_ts: datetime({epochMillis: raw.first_ts}),
              last_ts: datetime({epochMillis: raw.last_ts})} AS row
MERGE (s:Subscriber {id: row.subscriber_id})
  ON CREATE SET s.status = 'active'
SET s.first_seen = CASE WHEN s.first_seen IS NULL OR row.first_ts < s.first_seen
                        THEN row.first_ts ELSE s.first_seen END,
    s.last_seen = CASE WHEN s.last_seen IS NULL OR row.last_ts > s.last_seen
                       THEN row.last_ts ELSE s.last_seen END
"""

# Status and name follow the newest event that carries them, whatever the arrival order.
_APPLY_IDENTITY = """
UNWIND $rows AS raw WITH raw {.*, ts: datetime({epochMillis: raw.ts})} AS row
MATCH (s:Subscriber {id: row.subscriber_id})
FOREACH (_ IN CASE WHEN row.type = 'subscriber.registered'
                    AND (s.created_at IS NULL OR row.ts < s.created_at) THEN [1] ELSE [] END |
  SET s.created_at = row.ts)
FOREACH (_ IN CASE WHEN row.type = 'subscriber.closed'
                    AND (s.closed_at IS NULL OR row.ts < s.closed_at) THEN [1] ELSE [] END |
  SET s.closed_at = row.ts)
FOREACH (_ IN CASE WHEN row.status IS NOT NULL
                    AND (s.status_at IS NULL OR row.ts >= s.status_at) THEN [1] ELSE [] END |
  SET s.status = row.status, s.status_at = row.ts)
FOREACH (_ IN CASE WHEN row.name IS NOT NULL
                    AND (s.name_at IS NULL OR row.ts >= s.name_at) THEN [1] ELSE [] END |
  SET s.name = row.name, s.name_at = row.ts)
"""


def _link_statement(schema: IdentifierSchema) -> LiteralString:
    # Label and type come from IDENTIFIER_SCHEMA, a constant of the product; values from input
    # travel only as parameters. `subscribers` counts distinct linked subscribers; over the cap
    # the identifier is a hub (kept out of ring projection).
    return (
        "UNWIND $rows AS raw\n"
        "WITH raw {.*, first_ts: datetime({epochMillis: raw.first_ts}),\n"
        "              last_ts: datetime({epochMillis: raw.last_ts})} AS row\n"
        "MATCH (s:Subscriber {id: row.subscriber_id})\n"
        f"MERGE (i:{schema.label} {{id: row.id}})\n"
        "  ON CREATE SET i.subscribers = 0, i.hub = row.placeholder\n"
        # The earliest sighting wins whatever the commit order; written only when earlier, so a
        # shared identifier is not write-locked by every row.
        "FOREACH (_ IN CASE WHEN i.first_seen IS NULL OR row.first_ts < i.first_seen"
        " THEN [1] ELSE [] END | SET i.first_seen = row.first_ts)\n"
        f"MERGE (s)-[r:{schema.relationship}]->(i)\n"
        "  ON CREATE SET r.first_seen = row.first_ts, r.last_seen = row.last_ts, r.count = 0,\n"
        "                i.subscribers = i.subscribers + 1\n"
        "SET r.count = r.count + row.n,\n"
        "    r.first_seen = CASE WHEN row.first_ts < r.first_seen"
        " THEN row.first_ts ELSE r.first_seen END,\n"
        "    r.last_seen = CASE WHEN row.last_ts > r.last_seen"
        " THEN row.last_ts ELSE r.last_seen END\n"
        "WITH s, i, r.count = row.n AS created\n"
        "CALL (i) { WITH i WHERE NOT i.hub AND i.subscribers > $hub_cap\n"
        "  SET i.hub = true, i.hub_since = datetime() }\n"
        # Subscribers that just got linked to an identifier someone else has: what live ring
        # tracking needs to look at.
        "WITH s, i, created WHERE created AND NOT i.hub AND i.subscribers > 1\n"
        "RETURN DISTINCT s.id AS subscriber_id\n"
    )


_LINK_STATEMENTS: dict[IdentifierKind, LiteralString] = {
    kind: _link_statement(schema) for kind, schema in IDENTIFIER_SCHEMA.items()
}

# Claims the transaction and, for new ones only, links it to its subscriber and counterparty in
# the same pass (one index lookup per transaction instead of one per edge).
_CLAIM_TRANSACTIONS = """
UNWIND $rows AS raw WITH raw {.*, ts: datetime({epochMillis: raw.ts})} AS row
MERGE (t:Transaction {id: row.transaction_id})
  ON CREATE SET t.claim = $claim, t.event_id = row.event_id, t.ts = row.ts, t.kind = row.kind,
                t.amount = row.amount, t.currency = row.currency, t.data_mb = row.data_mb,
                t.duration_s = row.duration_s, t.direction = row.direction,
                t.lat = row.lat, t.lon = row.lon, t.country = row.country,
                t.subscriber_id = row.subscriber_id
WITH t, row WHERE t.claim = $claim
REMOVE t.claim
WITH t, row
MATCH (s:Subscriber {id: row.subscriber_id})
CREATE (s)-[:MADE]->(t)
FOREACH (_ IN CASE WHEN row.counterparty_kind = 'merchant' THEN [1] ELSE [] END |
  MERGE (m:Merchant {id: row.counterparty_id})
  CREATE (t)-[:TO]->(m))
FOREACH (_ IN CASE WHEN row.counterparty_kind = 'number' THEN [1] ELSE [] END |
  MERGE (p:Phone {id: row.counterparty_id})
    ON CREATE SET p.subscribers = 0, p.hub = false
  CREATE (t)-[:TO]->(p))
FOREACH (_ IN CASE WHEN row.counterparty_kind = 'subscriber' THEN [1] ELSE [] END |
  MERGE (c:Subscriber {id: row.counterparty_id})
    ON CREATE SET c.status = 'active'
  CREATE (t)-[:TO]->(c))
RETURN row.transaction_id AS id
"""

_TRANSACTION_DEVICE = """
UNWIND $rows AS row
MATCH (t:Transaction {id: row.transaction_id}), (d:Device {id: row.id})
CREATE (t)-[:ON_DEVICE]->(d)
"""

_TRANSACTION_IP = """
UNWIND $rows AS row
MATCH (t:Transaction {id: row.transaction_id}), (i:IP {id: row.id})
CREATE (t)-[:FROM_IP]->(i)
"""

# Usage windows: 7 d and 30 d (and the daily baseline) are sums over day buckets; 1 h and 24 h
# read the subscriber's recent transactions. Both are exact (each transaction is added once, by
# the batch that claimed it) and durable (in the graph: nothing is replayed after a restart).
_UPSERT_BUCKETS = """
UNWIND $rows AS raw WITH raw {.*, start: datetime({epochMillis: raw.start})} AS row
MATCH (s:Subscriber {id: row.subscriber_id})
MERGE (b:UsageBucket {id: row.id})
  ON CREATE SET b.subscriber_id = row.subscriber_id, b.grain = row.grain, b.start = row.start,
                b.count = 0, b.spend = 0.0, b.topup = 0.0, b.data_mb = 0.0, b.calls = 0,
                b.short_calls = 0, b.night_calls = 0, b.call_s = 0.0, b.sms = 0,
                b.claim = $claim
SET b.count = b.count + row.count, b.spend = b.spend + row.spend, b.topup = b.topup + row.topup,
    b.data_mb = b.data_mb + row.data_mb, b.calls = b.calls + row.calls,
    b.short_calls = b.short_calls + row.short_calls,
    b.night_calls = b.night_calls + row.night_calls,
    b.call_s = b.call_s + row.call_s, b.sms = b.sms + row.sms
// A new bucket gets its edge once; an existing one already has it (no MERGE scan needed).
FOREACH (_ IN CASE WHEN b.claim = $claim THEN [1] ELSE [] END | CREATE (s)-[:HAS_USAGE]->(b))
REMOVE b.claim
"""

_CLAIM_LABELS = """
UNWIND $rows AS raw WITH raw {.*, ts: datetime({epochMillis: raw.ts})} AS row
MERGE (l:Label {id: row.event_id})
  ON CREATE SET l.claim = $claim, l.label = row.label, l.source = row.source,
                l.analyst = row.analyst, l.reason = row.reason, l.ts = row.ts,
                l.subscriber_id = row.subscriber_id, l.ring_id = row.ring_id,
                l.transaction_id = row.transaction_id
WITH l, row WHERE l.claim = $claim
REMOVE l.claim
RETURN row.event_id AS id
"""

# The subscriber's current label is the newest one, whatever the arrival order.
_APPLY_LABELS = """
UNWIND $rows AS raw WITH raw {.*, ts: datetime({epochMillis: raw.ts})} AS row
MATCH (l:Label {id: row.event_id}), (s:Subscriber {id: row.subscriber_id})
CREATE (l)-[:ABOUT]->(s)
WITH s, row WHERE s.label_at IS NULL OR row.ts >= s.label_at
SET s.label = row.label, s.label_at = row.ts, s.label_source = row.source
"""


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _epoch_ms(value: datetime) -> int:
    return (value - _EPOCH) // timedelta(milliseconds=1)


class _EpochTx:
    """Sends the rows' datetimes as epoch milliseconds; the statements rebuild them in Cypher.

    The driver's conversion of Python datetimes costs tens of microseconds each, about half of
    a batch's client time; integers cost next to nothing. Times are kept to the millisecond.
    """

    def __init__(self, tx: Tx) -> None:
        self._tx = tx

    def run(self, query: LiteralString, params: Mapping[str, Any] | None = None) -> list[Record]:
        converted = dict(params or {})
        rows = converted.get("rows")
        if isinstance(rows, list):
            converted["rows"] = [
                {k: _epoch_ms(v) if isinstance(v, datetime) else v for k, v in row.items()}
                for row in rows
            ]
        return self._tx.run(query, converted)


@dataclass
class WriteResult:
    """What a batch changed. Duplicates are events the graph already had (redelivery)."""

    identity: int = 0
    transactions: int = 0
    labels: int = 0
    duplicates: int = 0
    # Ring lineage written by live ring tracking in this batch (published after the commit).
    ring_events: list[RingEvent] = field(default_factory=list)

    @property
    def written(self) -> int:
        return self.identity + self.transactions + self.labels

    def __iadd__(self, other: WriteResult) -> WriteResult:
        self.identity += other.identity
        self.transactions += other.transactions
        self.labels += other.labels
        self.duplicates += other.duplicates
        self.ring_events.extend(other.ring_events)
        return self


def _dedupe(
    events: Iterable[PreparedEvent],
) -> tuple[list[PreparedIdentity], list[PreparedTransaction], list[PreparedLabel], int]:
    identity: dict[str, PreparedIdentity] = {}
    transactions: dict[str, PreparedTransaction] = {}
    labels: dict[str, PreparedLabel] = {}
    total = 0
    for event in events:
        total += 1
        if isinstance(event, PreparedIdentity):
            identity.setdefault(event.event_id, event)
        elif isinstance(event, PreparedTransaction):
            transactions.setdefault(event.transaction_id, event)
        else:
            labels.setdefault(event.event_id, event)
    duplicates = total - len(identity) - len(transactions) - len(labels)
    return list(identity.values()), list(transactions.values()), list(labels.values()), duplicates


def _subscriber_rows(
    events: Iterable[PreparedIdentity | PreparedTransaction],
) -> list[dict[str, Any]]:
    spans: dict[str, list[datetime]] = {}
    for event in events:
        span = spans.setdefault(event.subscriber_id, [event.ts, event.ts])
        span[0] = min(span[0], event.ts)
        span[1] = max(span[1], event.ts)
    return [
        {"subscriber_id": sid, "first_ts": span[0], "last_ts": span[1]}
        for sid, span in sorted(spans.items())
    ]


def _link_rows(
    events: Iterable[tuple[str, datetime, Sequence[IdentifierLink]]],
) -> dict[IdentifierKind, list[dict[str, Any]]]:
    """Aggregated per (kind, subscriber, identifier): one MERGE per pair per batch."""
    pairs: dict[tuple[IdentifierKind, str, str], dict[str, Any]] = {}
    for subscriber_id, ts, links in events:
        for link in links:
            key = (link.kind, link.id, subscriber_id)
            row = pairs.get(key)
            if row is None:
                pairs[key] = {
                    "subscriber_id": subscriber_id,
                    "id": link.id,
                    "first_ts": ts,
                    "last_ts": ts,
                    "n": 1,
                    "placeholder": link.placeholder,
                }
            else:
                row["first_ts"] = min(row["first_ts"], ts)
                row["last_ts"] = max(row["last_ts"], ts)
                row["n"] += 1
    by_kind: dict[IdentifierKind, list[dict[str, Any]]] = defaultdict(list)
    # Sorted by identifier: every worker locks shared identifiers in the same order.
    for (kind, _, _), row in sorted(pairs.items(), key=lambda item: item[0]):
        by_kind[kind].append(row)
    return by_kind


def _bucket_rows(transactions: Iterable[PreparedTransaction]) -> list[dict[str, Any]]:
    buckets: dict[str, dict[str, Any]] = {}
    for t in transactions:
        day = t.ts.replace(hour=0, minute=0, second=0, microsecond=0)
        bucket_id = usage_day_id(t.subscriber_id, day)
        row = buckets.setdefault(
            bucket_id,
            {
                "id": bucket_id,
                "subscriber_id": t.subscriber_id,
                "grain": "day",
                "start": day,
                "count": 0,
                "spend": 0.0,
                "topup": 0.0,
                "data_mb": 0.0,
                "calls": 0,
                "short_calls": 0,
                "night_calls": 0,
                "call_s": 0.0,
                "sms": 0,
            },
        )
        row["count"] += 1
        row["spend"] += t.spend
        row["topup"] += t.topup
        row["data_mb"] += t.data_mb or 0.0
        row["calls"] += int(t.is_call)
        row["short_calls"] += int(t.is_short_call)
        row["night_calls"] += int(t.is_night_call)
        row["call_s"] += t.call_s
        row["sms"] += int(t.kind == "sms")
    return [buckets[key] for key in sorted(buckets)]


def _transaction_row(t: PreparedTransaction) -> dict[str, Any]:
    return {
        "event_id": t.event_id,
        "transaction_id": t.transaction_id,
        "subscriber_id": t.subscriber_id,
        "ts": t.ts,
        "kind": t.kind,
        "amount": t.amount,
        "currency": t.currency,
        "data_mb": t.data_mb,
        "duration_s": t.duration_s,
        "direction": t.direction,
        "lat": t.lat,
        "lon": t.lon,
        "country": t.country,
        "counterparty_kind": t.counterparty_kind,
        "counterparty_id": t.counterparty_id,
    }


class GraphWriter:
    """Stores batches of prepared events; `write` is safe to repeat with the same events."""

    def __init__(
        self,
        runner: QueryRunner,
        *,
        hub_cap: int,
        ring_tracker: LiveRingTracker | None = None,
        ring_link_types: frozenset[str] = frozenset(),
    ) -> None:
        self.runner = runner
        self.hub_cap = hub_cap
        # With a tracker, new links to shared identifiers of `ring_link_types` update rings in
        # the same transaction, so a ring exists the moment the event forming it is stored.
        self.ring_tracker = ring_tracker
        self.ring_link_types = ring_link_types

    def write(self, events: Sequence[PreparedEvent]) -> WriteResult:
        identity, transactions, labels, in_batch_duplicates = _dedupe(events)
        if not (identity or transactions or labels):
            return WriteResult(duplicates=in_batch_duplicates)
        result = self.runner.write_transaction(
            lambda tx: self._write(_EpochTx(tx), identity, transactions, labels)
        )
        result.duplicates += in_batch_duplicates
        return result

    def _write(
        self,
        tx: Tx,
        identity: list[PreparedIdentity],
        transactions: list[PreparedTransaction],
        labels: list[PreparedLabel],
    ) -> WriteResult:
        # A fresh claim token per attempt: a retried transaction starts from a rolled-back graph.
        claim = uuid.uuid4().hex
        new_identity = self._claimed(
            tx,
            _CLAIM_IDENTITY,
            claim,
            identity,
            lambda e: {
                "event_id": e.event_id,
                "type": e.type,
                "ts": e.ts,
                "subscriber_id": e.subscriber_id,
            },
            lambda e: e.event_id,
        )
        if transactions:
            # Subscribers first: the transaction claim links to them. (first/last seen are a
            # min/max, so updating them for redelivered transactions changes nothing.)
            tx.run(_UPSERT_SUBSCRIBERS, {"rows": _subscriber_rows(transactions)})
            # Sorted by counterparty: workers take shared merchant/number locks in one order.
            transactions.sort(key=lambda t: (str(t.counterparty_id), t.transaction_id))
        new_transactions = self._claimed(
            tx,
            _CLAIM_TRANSACTIONS,
            claim,
            transactions,
            _transaction_row,
            lambda t: t.transaction_id,
        )
        new_labels = self._claimed(
            tx,
            _CLAIM_LABELS,
            claim,
            labels,
            lambda e: {
                "event_id": e.event_id,
                "subscriber_id": e.subscriber_id,
                "ts": e.ts,
                "label": e.label,
                "source": e.source,
                "analyst": e.analyst,
                "reason": e.reason,
                "ring_id": e.ring_id,
                "transaction_id": e.transaction_id,
            },
            lambda e: e.event_id,
        )

        subscribers = _subscriber_rows(new_identity)
        label_subscribers = [
            {"subscriber_id": e.subscriber_id, "first_ts": e.ts, "last_ts": e.ts}
            for e in new_labels
        ]
        if subscribers or label_subscribers:
            tx.run(_UPSERT_SUBSCRIBERS, {"rows": subscribers + label_subscribers})
        if new_identity:
            tx.run(
                _APPLY_IDENTITY,
                {
                    "rows": [
                        {
                            "subscriber_id": e.subscriber_id,
                            "type": e.type,
                            "ts": e.ts,
                            "status": e.status,
                            "name": e.name,
                        }
                        for e in sorted(new_identity, key=lambda e: (e.subscriber_id, e.ts))
                    ]
                },
            )
        link_rows = _link_rows(
            [(e.subscriber_id, e.ts, e.links) for e in new_identity]
            + [(t.subscriber_id, t.ts, t.links) for t in new_transactions]
        )
        newly_linked: set[str] = set()
        for kind, schema in IDENTIFIER_SCHEMA.items():
            if link_rows.get(kind):
                linked = tx.run(
                    _LINK_STATEMENTS[kind], {"rows": link_rows[kind], "hub_cap": self.hub_cap}
                )
                if schema.relationship in self.ring_link_types:
                    newly_linked.update(record["subscriber_id"] for record in linked)
        ring_events: list[RingEvent] = []
        if self.ring_tracker is not None and newly_linked:
            ring_events = self.ring_tracker.update(tx, newly_linked, datetime.now(UTC))
        if new_transactions:
            self._identifier_edges(tx, new_transactions)
            tx.run(_UPSERT_BUCKETS, {"rows": _bucket_rows(new_transactions), "claim": claim})
        if new_labels:
            tx.run(
                _APPLY_LABELS,
                {
                    "rows": [
                        {
                            "event_id": e.event_id,
                            "subscriber_id": e.subscriber_id,
                            "ts": e.ts,
                            "label": e.label,
                            "source": e.source,
                        }
                        for e in sorted(new_labels, key=lambda e: (e.subscriber_id, e.ts))
                    ]
                },
            )
        duplicates = (
            len(identity)
            - len(new_identity)
            + len(transactions)
            - len(new_transactions)
            + len(labels)
            - len(new_labels)
        )
        return WriteResult(
            len(new_identity), len(new_transactions), len(new_labels), duplicates, ring_events
        )

    @staticmethod
    def _claimed(
        tx: Tx,
        statement: LiteralString,
        claim: str,
        events: list[E],
        to_row: Callable[[E], dict[str, Any]],
        key: Callable[[E], str],
    ) -> list[E]:
        if not events:
            return []
        rows = [to_row(e) for e in events]
        fresh = {record["id"] for record in tx.run(statement, {"rows": rows, "claim": claim})}
        return [e for e in events if key(e) in fresh]

    @staticmethod
    def _identifier_edges(tx: Tx, transactions: list[PreparedTransaction]) -> None:
        for link_kind, statement in (
            (IdentifierKind.DEVICE, _TRANSACTION_DEVICE),
            (IdentifierKind.IP, _TRANSACTION_IP),
        ):
            edge_rows = [
                {"transaction_id": t.transaction_id, "id": link.id}
                for t in transactions
                for link in t.links
                if link.kind is link_kind
            ]
            if edge_rows:
                tx.run(statement, {"rows": edge_rows})
