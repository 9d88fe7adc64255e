"""Live alerts: what the ingest worker raises right after a batch is stored.

Two sources of candidates, both stored through the one alert machinery
(`ringwatch.graph.alerts`: deterministic ids, one alert series per entity and kind, ``risk``
re-raised only on escalation, the Kafka outbox). They use the kinds the batch uses, so an alert
raised here is not raised again by the next ``ringwatch analyze``, and the reverse:

- **Rings** created, grown or merged by live ring tracking (the batch's `RingEvent`s). The ring
  is scored with the batch's own ring-risk formula (`ringwatch.scoring.graph.ring_risk`) on its
  members as they are now: labelled fraud among them, a signup burst of new accounts, a strong
  identifier (device, card, email, phone) used by three or more, dense linking, their stored
  usage risk. Nothing here needs the GDS pipeline. When the last batch run scored the ring
  higher, that score stands. The priority band of the risk raises a ``risk`` alert at P3 or
  above, again only when it escalates, with a ``ring.live`` reason naming what changed.
- **Subscribers** with transactions in the batch, scored by the real-time usage scorer
  (`ringwatch.graph.usage_scores.usage_score_for`, the one the API's transaction scoring uses)
  over the 24 h up to their newest transaction in the batch. Each configured rule that fires
  (`IngestConfig.live_alert_usage_rules`: ``usage.daily_charge_limit`` and ``usage.burst`` by
  default) raises an alert of that rule's kind once per subscriber, at P3 or above.

Scoring every subscriber of a busy batch would cost three reads each, so a subscriber is scored
only when a cheap necessary condition holds for one of the rules, read for the whole batch in
one statement: its day buckets covering the 24 h hold more than the limit (charges); it has at
least the burst threshold of transactions from an hour before its first transaction in the
batch to an hour after its last (a burst involving one of them fits in that span); a located
transaction in the batch (travel). Other rules have no such bound: with one of them configured,
every subscriber with a transaction in the batch is scored. Subscribers already alerted on
every rule they could break are not scored again.

Redelivery raises nothing twice (the ids are deterministic) and mends a crash between the
batch's commit and its alerts: a redelivered batch writes nothing new and so has no ring
events, but its rings are checked again when it holds events the graph already had.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, LiteralString

from ringwatch.config import ScoringConfig
from ringwatch.graph.alerts import StoredAlert, raise_alerts
from ringwatch.graph.db import QueryRunner
from ringwatch.graph.rings import RingEvent
from ringwatch.graph.usage_scores import usage_score_for
from ringwatch.graph.writer import WriteResult
from ringwatch.ingest.prepare import PreparedEvent, PreparedIdentity, PreparedTransaction
from ringwatch.scoring import reasons as reason_codec
from ringwatch.scoring.alerts import RISK_KIND, AlertCandidate, alert_candidates
from ringwatch.scoring.graph import SharedIdentifier, SubscriberFacts, ring_facts, ring_risk
from ringwatch.scoring.reasons import Reason, ranked
from ringwatch.scoring.risk import Priority, priority
from ringwatch.scoring.usage import Component, day_number, day_start

CHARGE_RULE = Component.DAILY_CHARGE_LIMIT.code
BURST_RULE = Component.BURST.code
TRAVEL_RULE = Component.IMPOSSIBLE_TRAVEL.code
BOUNDED_RULES = frozenset({CHARGE_RULE, BURST_RULE, TRAVEL_RULE})
"""Rules with a cheap necessary condition; any other configured rule means scoring everyone."""

# Ring lineage kinds that leave the ring with members it did not have before.
_GROWING_KINDS = frozenset({"created", "grew", "merged"})

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NEVER = 2**62  # a burst threshold no count reaches: the transaction range is not read
_HOUR = timedelta(hours=1)
_DAY = timedelta(days=1)


def _ms(value: datetime) -> int:
    return (value.astimezone(UTC) - _EPOCH) // timedelta(milliseconds=1)


def _from_ms(value: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=value)


def _ring_members_query(pattern: LiteralString) -> LiteralString:
    # The relationship types come from the configured constants (`link_pattern`), never input.
    return (
        "UNWIND $ids AS rid\n"
        "MATCH (r:Ring {id: rid}) WHERE r.status = 'active'\n"
        "CALL (r) {\n"
        "  MATCH (s:Subscriber)-[:MEMBER_OF]->(r)\n"
        "  RETURN collect({id: s.id, label: s.label, usage_risk: s.usage_risk,\n"
        "    created_at: s.created_at.epochMillis,\n"
        "    seen: coalesce(s.last_seen, s.created_at, s.first_seen).epochMillis,\n"
        f"    shared: [(s)-[l:{pattern}]->(i) WHERE NOT coalesce(i.hub, false)\n"
        "             AND i.subscribers > 1 | [type(l), i.id, i.subscribers]]}) AS members\n"
        "}\n"
        "RETURN r.id AS id, r.risk AS risk, r.reasons AS reasons, members,\n"
        "  COLLECT { MATCH (a:Alert) WHERE a.entity_id = r.id AND a.entity_kind = 'ring'\n"
        "            RETURN [a.kind, a.priority] } AS alerted"
    )


_RINGS_OF: LiteralString = """
UNWIND $ids AS sid
MATCH (s:Subscriber {id: sid}) WHERE s.ring_id IS NOT NULL
RETURN DISTINCT s.ring_id AS ring_id
"""

# Per subscriber: spend and transaction count in the day buckets that cover its 24 h window and
# the hour either side of its transactions in the batch (at least the window's charges); only
# when that count reaches the burst threshold, its transactions from an hour before its first
# in the batch to an hour after its last (at least the size of any burst one of them is part
# of). Index ranges only; most subscribers need the first one alone.
_USAGE_BOUNDS: LiteralString = """
UNWIND $rows AS row
CALL (row) {
  OPTIONAL MATCH (b:UsageBucket)
  WHERE b.subscriber_id = row.sid AND b.grain = 'day'
    AND b.start >= datetime({epochMillis: row.day_from})
    AND b.start <= datetime({epochMillis: row.as_of + $hour_ms})
  RETURN coalesce(sum(b.spend), 0.0) AS spend, coalesce(sum(b.count), 0) AS count
}
CALL (row, count) {
  UNWIND CASE WHEN count >= $burst THEN [1] ELSE [] END AS wanted
  MATCH (t:Transaction)
  WHERE t.subscriber_id = row.sid
    AND t.ts >= datetime({epochMillis: row.first - $hour_ms})
    AND t.ts <= datetime({epochMillis: row.as_of + $hour_ms})
  RETURN count(t) AS around
}
RETURN row.sid AS sid, spend, around,
       COLLECT { MATCH (a:Alert) WHERE a.entity_id = row.sid AND a.entity_kind = 'subscriber'
                 RETURN [a.kind, a.priority] } AS alerted
"""


@dataclass(frozen=True)
class Transacted:
    """One subscriber's transactions in the batch."""

    subscriber_id: str
    first: datetime
    as_of: datetime  # the newest
    located: bool


@dataclass(frozen=True)
class Suspect:
    """A subscriber some rule may fire for, and what it was alerted on (kind -> priority)."""

    span: Transacted
    alerted: dict[str, Priority]


def _transacted(events: Sequence[PreparedEvent]) -> dict[str, Transacted]:
    spans: dict[str, Transacted] = {}
    for event in events:
        if not isinstance(event, PreparedTransaction):
            continue
        located = event.lat is not None and event.lon is not None
        seen = spans.get(event.subscriber_id)
        if seen is None:
            spans[event.subscriber_id] = Transacted(
                event.subscriber_id, event.ts, event.ts, located
            )
        else:
            spans[event.subscriber_id] = Transacted(
                event.subscriber_id,
                min(seen.first, event.ts),
                max(seen.as_of, event.ts),
                seen.located or located,
            )
    return spans


def _alerted(pairs: Sequence[Sequence[str]]) -> dict[str, Priority]:
    """[kind, priority] pairs of an entity's alerts -> each kind's highest priority."""
    alerted: dict[str, Priority] = {}
    for kind, value in pairs:
        level = Priority(value)
        if kind not in alerted or level.rank > alerted[kind].rank:
            alerted[kind] = level
    return alerted


def _change_reason(ring_id: str, events: Sequence[RingEvent], size: int) -> Reason:
    """What live tracking just did to the ring, in one sentence (no member ids)."""
    kinds = [event.kind for event in events]
    added = sum(len(event.members_added) for event in events)
    absorbed = sorted({ring for event in events for ring in event.from_rings})
    if "created" in kinds:
        text = f"ring {ring_id} formed live from {size} subscribers"
    elif absorbed:
        text = f"ring {ring_id} absorbed {', '.join(absorbed)} live, now {size} subscribers"
    else:
        text = f"ring {ring_id} grew live by {added} to {size} subscribers"
    evidence: dict[str, Any] = {"changes": kinds, "members_added": added, "size": size}
    if absorbed:
        evidence["from_rings"] = absorbed
    return Reason("ring.live", text, 0.0, evidence)


class LiveAlerter:
    """Raises the alerts a stored batch calls for (see the module documentation).

    The ring and the usage candidates are found separately (`ring_alert_candidates`,
    `usage_candidates`), so that a failure of one does not cost the other, and stored together
    (`raise_`, one transaction; only the alerts it created are returned). `check_rings` and
    `check_usage` do both for one source.
    """

    def __init__(
        self,
        runner: QueryRunner,
        config: ScoringConfig,
        *,
        usage_rules: Collection[str],
        reads: ThreadPoolExecutor | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        unknown = set(usage_rules) - {component.code for component in Component}
        if unknown:
            raise ValueError(f"unknown usage rules: {', '.join(sorted(unknown))}")
        self.runner = runner
        self.config = config
        self.usage_rules = frozenset(usage_rules)
        # Imported here: the analytics module brings the GDS client (and pandas) with it.
        from ringwatch.graph.analytics import link_pattern

        self.members_query = _ring_members_query(link_pattern(config))
        # Several subscribers scored in one batch are scored side by side.
        self.reads = reads
        self.clock = clock

    # ------------------------------------------------------------------------------- rings

    def rings_to_check(
        self, events: Sequence[PreparedEvent], result: WriteResult
    ) -> dict[str, list[RingEvent]]:
        """Ring id -> the live changes that make it worth scoring (empty: a redelivery)."""
        changes: dict[str, list[RingEvent]] = {}
        for event in result.ring_events:
            # An absorbed ring's "merged" event names its survivor; the survivor has its own.
            if event.kind in _GROWING_KINDS and event.into_ring is None:
                changes.setdefault(event.ring_id, []).append(event)
        if result.duplicates:
            # Events the graph already had: an earlier delivery may have stopped between its
            # commit and its alerts. Their subscribers' rings are checked again.
            subscribers = sorted(
                {e.subscriber_id for e in events if isinstance(e, PreparedIdentity)}
            )
            if subscribers:
                for row in self.runner.read(_RINGS_OF, {"ids": subscribers}):
                    changes.setdefault(str(row["ring_id"]), [])
        return changes

    def ring_candidates(self, changes: Mapping[str, Sequence[RingEvent]]) -> list[AlertCandidate]:
        if not changes:
            return []
        rows = self.runner.read(self.members_query, {"ids": sorted(changes)})
        candidates: list[AlertCandidate] = []
        for row in rows:
            ring_id = str(row["id"])
            members = row["members"]
            if len(members) < 2:
                continue
            facts = [
                SubscriberFacts(
                    id=member["id"],
                    created_at=(
                        _from_ms(member["created_at"]) if member["created_at"] is not None else None
                    ),
                    label=member["label"],
                    ring_id=ring_id,
                    shared=[
                        SharedIdentifier(rel, ident, int(n)) for rel, ident, n in member["shared"]
                    ],
                    usage_risk=float(member["usage_risk"] or 0.0),
                )
                for member in members
            ]
            # The ring's own clock: a history replayed from the past is judged as of its time.
            seen = [int(member["seen"]) for member in members if member["seen"] is not None]
            as_of = _from_ms(max(seen)) if seen else self.clock()
            scored = ring_risk(ring_facts(ring_id, facts, as_of=as_of, config=self.config))
            risk, reasons = scored.risk, scored.reasons
            if row["risk"] is not None and float(row["risk"]) > risk:
                risk, reasons = float(row["risk"]), reason_codec.loads(row["reasons"])
            if changes[ring_id]:
                reasons = [*reasons, _change_reason(ring_id, changes[ring_id], len(members))]
            candidates.extend(
                alert_candidates(
                    "ring",
                    ring_id,
                    risk=min(max(risk, 0.0), 1.0),
                    priority=priority(risk, self.config),
                    reasons=ranked(reasons),
                    alerted=_alerted(row["alerted"]),
                    rule_codes=frozenset(),
                )
            )
        return candidates

    def ring_alert_candidates(
        self, events: Sequence[PreparedEvent], result: WriteResult
    ) -> list[AlertCandidate]:
        """What the rings the batch created, grew or merged call for."""
        return self.ring_candidates(self.rings_to_check(events, result))

    def check_rings(
        self, events: Sequence[PreparedEvent], result: WriteResult
    ) -> list[StoredAlert]:
        """Alerts for the rings the batch created, grew or merged."""
        return self.raise_(self.ring_alert_candidates(events, result))

    def raise_(self, candidates: Sequence[AlertCandidate]) -> list[StoredAlert]:
        """Store the candidates (one transaction); returns the alerts created."""
        return raise_alerts(self.runner, candidates, self.clock()) if candidates else []

    # ------------------------------------------------------------------------------- usage

    def usage_suspects(self, events: Sequence[PreparedEvent]) -> dict[str, Suspect]:
        """Subscribers of the batch for whom some configured rule may fire, with their alerts.

        One statement for the batch gives each subscriber's bounds and the kinds it was
        already alerted on.
        """
        transacted = _transacted(events)
        if not transacted or not self.usage_rules:
            return {}
        rows = [
            {
                "sid": t.subscriber_id,
                "first": _ms(t.first),
                "as_of": _ms(t.as_of),
                # Days covering both the 24 h window and the span the burst count reads.
                "day_from": _ms(day_start(day_number(min(t.as_of - _DAY, t.first - _HOUR)))),
            }
            for t in sorted(transacted.values(), key=lambda t: t.subscriber_id)
        ]
        burst = (
            self.config.burst_transactions_per_hour if BURST_RULE in self.usage_rules else _NEVER
        )
        params = {"rows": rows, "hour_ms": _HOUR // timedelta(milliseconds=1), "burst": burst}
        unbounded = bool(self.usage_rules - BOUNDED_RULES)
        suspects: dict[str, Suspect] = {}
        for record in self.runner.read(_USAGE_BOUNDS, params):
            span = transacted.get(str(record["sid"]))
            if span is None:
                continue
            if (
                unbounded
                or (
                    CHARGE_RULE in self.usage_rules
                    and float(record["spend"]) > self.config.daily_charge_limit
                )
                or (
                    BURST_RULE in self.usage_rules
                    and int(record["around"]) >= self.config.burst_transactions_per_hour
                )
                or (TRAVEL_RULE in self.usage_rules and span.located)
            ):
                suspects[span.subscriber_id] = Suspect(span, _alerted(record["alerted"]))
        return suspects

    def usage_candidates(self, events: Sequence[PreparedEvent]) -> list[AlertCandidate]:
        """What the batch's transactions call for: one candidate per rule newly broken."""
        # A subscriber alerted on every configured rule has nothing left to raise.
        todo = [
            suspect
            for _, suspect in sorted(self.usage_suspects(events).items())
            if not self.usage_rules <= set(suspect.alerted)
        ]

        def score(suspect: Suspect) -> list[AlertCandidate]:
            span = suspect.span
            usage = usage_score_for(self.runner, span.subscriber_id, self.config, span.as_of)
            found = alert_candidates(
                "subscriber",
                span.subscriber_id,
                risk=usage.risk,
                priority=priority(usage.risk, self.config),
                reasons=usage.reasons,
                alerted=suspect.alerted,
                rule_codes=self.usage_rules,
            )
            # The subscriber's merged risk is the batch's to judge; live usage raises rules only.
            return [candidate for candidate in found if candidate.kind != RISK_KIND]

        if self.reads is not None and len(todo) > 1:
            scored = list(self.reads.map(score, todo))
        else:
            scored = [score(suspect) for suspect in todo]
        return [candidate for found in scored for candidate in found]

    def check_usage(
        self, events: Sequence[PreparedEvent], _result: WriteResult | None = None
    ) -> list[StoredAlert]:
        """Alerts for the subscribers whose transactions in the batch break a usage rule."""
        return self.raise_(self.usage_candidates(events))


__all__ = ["BOUNDED_RULES", "LiveAlerter", "Suspect", "Transacted"]
