"""The webhook delivery outbox on `(:Alert)` nodes: claiming due alerts and recording attempts.

```text
(:Alert {delivery: 'pending' | 'sending' | 'delivered' | 'failed',
         delivery_attempts,      failed attempts so far (a lease that ran out counts as one)
         delivery_next_at,       pending: when it is due; sending: when the lease runs out
         delivery_claim,         the token of the worker holding the lease (sending only)
         delivery_error,         the last failed attempt, short: "n8n: HTTP 503; slack: timeout"
         delivered_via,          the sinks that accepted it, e.g. ['n8n', 'slack']
         delivery_fallback,      true when Slack stood in for an unreachable n8n
         delivered_at, delivery_failed_at})
```

A worker *claims* a batch in one transaction: it picks due alerts (`pending` whose time has
come, or `sending` whose lease ran out), locks them, reads them again under the lock, and sets
``delivery = 'sending'``, its claim token and ``delivery_next_at = now + lease``. Two workers
that pick the same alert queue on its lock; the second one reads it as claimed and leaves it.
Results are recorded only while the claim token is still the worker's own, so a worker whose
lease was taken over cannot overwrite the newer attempt. A worker that dies mid-send leaves its
alerts `sending`; once the lease runs out they are due again, and the receivers deduplicate the
second send by its idempotency key (the alert id).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, LiteralString

from ringwatch.graph.alerts import StoredAlert
from ringwatch.graph.db import QueryRunner, Tx

PENDING = "pending"
SENDING = "sending"
DELIVERED = "delivered"
FAILED = "failed"
DELIVERY_STATES = (PENDING, SENDING, DELIVERED, FAILED)

LEASE_EXPIRED = "lease expired: the worker stopped before recording the result"

# Served by the index alert_delivery_due (delivery, delivery_next_at): one seek per state.
_DUE: LiteralString = """
MATCH (a:Alert)
WHERE a.delivery IN ['pending', 'sending'] AND a.delivery_next_at <= $now
  AND a.priority IN $priorities
RETURN a.id AS id
ORDER BY a.delivery_next_at, a.id
LIMIT $limit
"""

# Taking the write lock: a second claimer waits here until the first one commits.
_LOCK: LiteralString = """
UNWIND $ids AS id
MATCH (a:Alert {id: id})
SET a.delivery_lock = true
REMOVE a.delivery_lock
RETURN count(a) AS locked
"""

# Read again under the lock: only what is still due is claimed. A lease that ran out counts as
# a failed attempt, so an alert that crashes every worker ends as 'failed', not in a loop.
_CLAIM: LiteralString = """
UNWIND $ids AS id
MATCH (a:Alert {id: id})
WHERE a.delivery IN ['pending', 'sending'] AND a.delivery_next_at <= $now
WITH a, a.delivery = 'sending' AS expired
WITH a, expired,
     coalesce(a.delivery_attempts, 0) + CASE WHEN expired THEN 1 ELSE 0 END AS attempts
WITH a, expired, attempts, attempts >= $max_attempts AS exhausted
SET a.delivery_attempts = attempts,
    a.delivery_error = CASE WHEN expired THEN $lease_error ELSE a.delivery_error END,
    a.delivery = CASE WHEN exhausted THEN 'failed' ELSE 'sending' END,
    a.delivery_claim = CASE WHEN exhausted THEN null ELSE $claim END,
    a.delivery_next_at = CASE WHEN exhausted THEN a.delivery_next_at ELSE $lease_until END,
    a.delivery_failed_at = CASE WHEN exhausted THEN $now ELSE a.delivery_failed_at END
RETURN a {.*} AS alert, expired
"""

_DELIVERED: LiteralString = """
MATCH (a:Alert {id: $id})
WHERE a.delivery = 'sending' AND a.delivery_claim = $claim
SET a.delivery = 'delivered', a.delivered_at = $now, a.delivered_via = $via,
    a.delivery_fallback = $fallback
REMOVE a.delivery_claim
RETURN count(a) AS marked
"""

_ATTEMPT_FAILED: LiteralString = """
MATCH (a:Alert {id: $id})
WHERE a.delivery = 'sending' AND a.delivery_claim = $claim
SET a.delivery = CASE WHEN $final THEN 'failed' ELSE 'pending' END,
    a.delivery_attempts = coalesce(a.delivery_attempts, 0) + 1,
    a.delivery_next_at = $next_at,
    a.delivery_error = $error,
    a.delivered_via = $via,
    a.delivery_failed_at = CASE WHEN $final THEN $now ELSE null END
REMOVE a.delivery_claim
RETURN count(a) AS marked
"""

_RELEASE: LiteralString = """
UNWIND $ids AS id
MATCH (a:Alert {id: id})
WHERE a.delivery = 'sending' AND a.delivery_claim = $claim
SET a.delivery = 'pending', a.delivery_next_at = $now
REMOVE a.delivery_claim
RETURN count(a) AS released
"""

_COUNTS: LiteralString = """
MATCH (a:Alert)
RETURN a.delivery AS delivery, count(a) AS alerts
"""


@dataclass(frozen=True, slots=True)
class Claim:
    """One worker's batch: the alerts it may send until `lease_until`."""

    token: str
    lease_until: datetime
    alerts: list[StoredAlert] = field(default_factory=list)
    candidates: int = 0
    """Due alerts this claim looked at (some may have gone to another worker)."""
    expired: int = 0
    """Alerts retaken after another worker's lease ran out."""
    exhausted: list[str] = field(default_factory=list)
    """Ids whose expired lease was their last attempt: now 'failed'."""


def claim_due(
    runner: QueryRunner,
    now: datetime,
    *,
    limit: int,
    lease_s: float,
    priorities: Collection[str],
    max_attempts: int,
) -> Claim:
    """Claim up to `limit` due alerts of the given priorities for `lease_s` seconds."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if limit < 1:
        raise ValueError("limit must be at least 1")
    token = uuid.uuid4().hex
    lease_until = now + timedelta(seconds=lease_s)
    wanted = sorted(set(priorities))
    if not wanted:
        return Claim(token, lease_until)

    def work(tx: Tx) -> tuple[list[str], list[dict[str, Any]]]:
        due = tx.run(_DUE, {"now": now, "priorities": wanted, "limit": limit})
        ids = [str(row["id"]) for row in due]
        if not ids:
            return [], []
        # One lock order for every worker: overlapping claims wait, they do not deadlock.
        ordered = sorted(ids)
        tx.run(_LOCK, {"ids": ordered})
        rows = tx.run(
            _CLAIM,
            {
                "ids": ordered,
                "now": now,
                "claim": token,
                "lease_until": lease_until,
                "max_attempts": max_attempts,
                "lease_error": LEASE_EXPIRED,
            },
        )
        return ids, rows

    ids, rows = runner.write_transaction(work)
    position = {alert_id: index for index, alert_id in enumerate(ids)}
    rows.sort(key=lambda row: position[str(row["alert"]["id"])])  # the due order
    alerts: list[StoredAlert] = []
    exhausted: list[str] = []
    expired = 0
    for row in rows:
        alert = StoredAlert.from_properties(row["alert"])
        expired += bool(row["expired"])
        if alert.delivery == SENDING:
            alerts.append(alert)
        else:
            exhausted.append(alert.id)
    return Claim(token, lease_until, alerts, len(ids), expired, exhausted)


def record_delivered(
    runner: QueryRunner,
    claim: str,
    alert_id: str,
    now: datetime,
    *,
    via: Sequence[str],
    fallback: bool,
) -> bool:
    """Mark an alert delivered; False if the claim was no longer this worker's."""
    rows = runner.write(
        _DELIVERED,
        {"id": alert_id, "claim": claim, "now": now, "via": list(via), "fallback": fallback},
    )
    return bool(rows and rows[0]["marked"])


def record_failed_attempt(
    runner: QueryRunner,
    claim: str,
    alert_id: str,
    now: datetime,
    *,
    error: str,
    via: Sequence[str],
    next_at: datetime | None,
) -> bool:
    """Count a failed attempt: due again at `next_at`, or 'failed' for good when it is None.

    `via` keeps the sinks that did accept the alert, so a retry only goes to the others.
    """
    rows = runner.write(
        _ATTEMPT_FAILED,
        {
            "id": alert_id,
            "claim": claim,
            "now": now,
            "final": next_at is None,
            "next_at": next_at if next_at is not None else now,
            "error": error,
            "via": list(via),
        },
    )
    return bool(rows and rows[0]["marked"])


def release(runner: QueryRunner, claim: str, alert_ids: Sequence[str], now: datetime) -> int:
    """Hand claimed alerts back unsent (no attempt counted); returns how many."""
    if not alert_ids:
        return 0
    rows = runner.write(_RELEASE, {"ids": sorted(alert_ids), "claim": claim, "now": now})
    return int(rows[0]["released"]) if rows else 0


def delivery_counts(runner: QueryRunner) -> dict[str, int]:
    """Alerts by delivery state (every state present, zero when none)."""
    counts = dict.fromkeys(DELIVERY_STATES, 0)
    for row in runner.read(_COUNTS):
        counts[str(row["delivery"])] = int(row["alerts"])
    return counts
