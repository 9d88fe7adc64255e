"""Rings as first-class data: stable ids, membership and lineage.

A ring is a connected component of subscribers linked by shared (non-hub, weighted) identifiers
with at least ``min_ring_size`` members. Rings are ``(:Ring {id: 'R-12', status, size, ...})``
nodes; members point at their ring with ``MEMBER_OF`` and carry ``ring_id``.

Two paths keep rings current:

- the batch path (`reconcile_rings`) after each analytics run matches the new components to the
  existing rings by shared members, so a ring whose membership did not change keeps its id and
  is not written at all, and growth, merges, splits and dissolutions get lineage;
- the live path (`LiveRingTracker`) runs inside the ingest transaction that stores a new link to
  a shared identifier: it joins the subscriber to the ring(s) it now touches, merges rings it
  bridges, or creates a ring once a component reaches the minimum size. It never splits; the
  next batch run does.

Every change is a ``(:RingEvent {kind, ring_id, ...})`` linked to its ring, with
``published = false`` until the outbox publisher has put it on the rings topic. Kinds: created,
grew, shrank, merged (on the surviving ring, ``from_rings``; and on each absorbed ring,
``into_ring``), split (on the ring that lost members, ``into_rings``; the new part is
``created`` with ``split_from``) and dissolved.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, LiteralString

from ringwatch.config import ScoringConfig
from ringwatch.graph.db import QueryRunner, Tx

RING_PREFIX = "R-"

_NEXT_RING_NUMBERS: LiteralString = """
MERGE (q:Sequence {id: 'ring'})
ON CREATE SET q.value = 0
SET q.value = q.value + $count
RETURN q.value AS last
"""

_COMPONENTS: LiteralString = """
MATCH (s:Subscriber) WHERE s.component_id IS NOT NULL
WITH s.component_id AS component, collect(s.id) AS members
WHERE size(members) >= $min_size
RETURN component, members
"""

_ACTIVE_RINGS: LiteralString = """
MATCH (r:Ring {status: 'active'})
OPTIONAL MATCH (s:Subscriber)-[:MEMBER_OF]->(r)
RETURN r.id AS id, r.created_at AS created_at, collect(s.id) AS members
"""


_REMOVE_MEMBERS: LiteralString = """
UNWIND $rows AS row
MATCH (s:Subscriber {id: row.member})-[m:MEMBER_OF]->(r:Ring {id: row.ring})
DELETE m
WITH s, r WHERE s.ring_id = r.id
SET s.ring_id = null
"""

# Row bodies shared by the batch statements below and the live path's single statement
# (`live_apply_statement`), so that both leave rings, members and lineage the same way.
_JOIN_ROW: LiteralString = """
MATCH (s:Subscriber {id: row.member}), (r:Ring {id: row.ring})
MERGE (s)-[m:MEMBER_OF]->(r) ON CREATE SET m.since = $now
SET s.ring_id = r.id
"""
# Only subscribers are members, so the size is the ring's MEMBER_OF degree: with no label on the
# other end the server reads it from the node's relationship counts instead of visiting members.
_RING_STATE_ROW: LiteralString = """
MATCH (r:Ring {id: row.id})
SET r.status = row.status, r.updated_at = $now,
    r.size = COUNT { ()-[:MEMBER_OF]->(r) },
    r.merged_into = row.merged_into,
    r.closed_at = CASE WHEN row.status = 'active' THEN null ELSE $now END
"""
# With `event` and its ring `r` bound; records the ring's size and status as they are now.
_EVENT_OF_RING: LiteralString = """
CREATE (e:RingEvent {id: event.id, ring_id: r.id, kind: event.kind, at: $now,
                     source: event.source, size: r.size, status: r.status,
                     members_added: event.members_added, members_removed: event.members_removed,
                     from_rings: event.from_rings, into_ring: event.into_ring,
                     into_rings: event.into_rings, split_from: event.split_from,
                     published: false})
CREATE (e)-[:OF]->(r)
"""

# With `ring_id`, `members` and `origin` bound: the new ring and its members, one row per ring
# after it (`r`, and whatever else was in scope).
_NEW_RING_ROW: LiteralString = """
CREATE (r:Ring {id: ring_id, status: 'active', size: size(members), created_at: $now,
                updated_at: $now, origin: origin})
WITH *
CALL (r, members) {
  UNWIND members AS member
  MATCH (s:Subscriber {id: member})
  CREATE (s)-[:MEMBER_OF {since: $now}]->(r)
  SET s.ring_id = r.id
}
"""

_CREATE_RINGS: LiteralString = (
    "UNWIND $rings AS ring\n"
    "WITH ring.id AS ring_id, ring.members AS members, ring.origin AS origin" + _NEW_RING_ROW
)
_ADD_MEMBERS: LiteralString = "UNWIND $rows AS row" + _JOIN_ROW
_UPDATE_RINGS: LiteralString = "UNWIND $rows AS row" + _RING_STATE_ROW
_RECORD_EVENTS: LiteralString = (
    "UNWIND $events AS event\nMATCH (r:Ring {id: event.ring_id})" + _EVENT_OF_RING
)


@dataclass
class RingEvent:
    ring_id: str
    kind: str
    source: str
    members_added: list[str] = field(default_factory=list)
    members_removed: list[str] = field(default_factory=list)
    from_rings: list[str] = field(default_factory=list)
    into_ring: str | None = None
    into_rings: list[str] = field(default_factory=list)
    split_from: list[str] = field(default_factory=list)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ring_id": self.ring_id,
            "kind": self.kind,
            "source": self.source,
            "members_added": sorted(self.members_added),
            "members_removed": sorted(self.members_removed),
            "from_rings": sorted(self.from_rings),
            "into_ring": self.into_ring,
            "into_rings": sorted(self.into_rings),
            "split_from": sorted(self.split_from),
        }


@dataclass
class RingPlan:
    """What a reconciliation will change; pure data, computed without touching the graph."""

    # New rings: (placeholder key, members, split_from rings).
    created: list[tuple[int, set[str], list[str]]] = field(default_factory=list)
    # Surviving rings: ring id -> members to add / remove.
    added: dict[str, set[str]] = field(default_factory=dict)
    removed: dict[str, set[str]] = field(default_factory=dict)
    merged_into: dict[str, str] = field(default_factory=dict)  # absorbed ring -> survivor
    dissolved: list[str] = field(default_factory=list)
    split_into: dict[str, list[int]] = field(default_factory=dict)  # ring -> placeholders
    unchanged: int = 0


@dataclass
class ReconcileSummary:
    rings: int = 0
    created: int = 0
    grew: int = 0
    shrank: int = 0
    merged: int = 0
    split: int = 0
    dissolved: int = 0
    unchanged: int = 0
    events: list[RingEvent] = field(default_factory=list)


def ring_number(ring_id: str) -> int:
    """``R-12`` -> 12; used to prefer the oldest ring when two compete for one component."""
    return int(ring_id.removeprefix(RING_PREFIX))


def plan_reconciliation(
    components: Mapping[int, set[str]], rings: Mapping[str, set[str]]
) -> RingPlan:
    """Match this run's components (already filtered to ring size) to the existing rings.

    Each component takes the id of the ring it shares most members with, a ring going to at
    most one component (the one holding most of its members; the oldest ring wins a tie).
    Components nobody claims become new rings; rings that got no component are merged into the
    ring that took most of their members, or dissolved when none of their members is in a ring.
    """
    ring_of = {member: ring for ring, members in rings.items() for member in members}
    component_of = {member: comp for comp, members in components.items() for member in members}
    overlap: dict[tuple[str, int], int] = defaultdict(int)
    for member, ring in ring_of.items():
        comp = component_of.get(member)
        if comp is not None:
            overlap[(ring, comp)] += 1
    pairs = sorted(
        overlap.items(), key=lambda item: (-item[1], ring_number(item[0][0]), item[0][1])
    )
    ring_to_component: dict[str, int] = {}
    component_to_ring: dict[int, str] = {}
    for (ring, comp), _count in pairs:
        if ring not in ring_to_component and comp not in component_to_ring:
            ring_to_component[ring] = comp
            component_to_ring[comp] = ring

    plan = RingPlan()
    for placeholder, comp in enumerate(sorted(c for c in components if c not in component_to_ring)):
        members = components[comp]
        sources = sorted({ring_of[m] for m in members if m in ring_of})
        plan.created.append((placeholder, set(members), sources))
        for ring in sources:
            if ring in ring_to_component:  # a surviving ring lost this part: a split
                plan.split_into.setdefault(ring, []).append(placeholder)
    for ring, members in rings.items():
        comp = ring_to_component.get(ring)
        if comp is None:
            destinations: dict[str, int] = defaultdict(int)
            for member in members:
                other = component_of.get(member)
                if other is not None and other in component_to_ring:
                    destinations[component_to_ring[other]] += 1
            if destinations:
                plan.merged_into[ring] = max(
                    destinations, key=lambda r: (destinations[r], -ring_number(r))
                )
            else:
                plan.dissolved.append(ring)
            continue
        new_members = components[comp]
        added, removed = new_members - members, members - new_members
        if added:
            plan.added[ring] = added
        if removed:
            plan.removed[ring] = removed
        if not added and not removed:
            plan.unchanged += 1
    return plan


def reconcile_rings(
    runner: QueryRunner, *, min_ring_size: int, now: datetime | None = None
) -> ReconcileSummary:
    """Bring Ring nodes in line with the components of the last analytics run."""
    now = now or datetime.now(UTC)
    components = {
        int(row["component"]): set(row["members"])
        for row in runner.read(_COMPONENTS, {"min_size": min_ring_size})
    }
    rings = {row["id"]: set(row["members"]) for row in runner.read(_ACTIVE_RINGS)}
    plan = plan_reconciliation(components, rings)
    return runner.write_transaction(lambda tx: _apply(tx, plan, rings, now))


def _mint(tx: Tx, count: int) -> list[str]:
    if count == 0:
        return []
    last = int(tx.run(_NEXT_RING_NUMBERS, {"count": count})[0]["last"])
    return [f"{RING_PREFIX}{number}" for number in range(last - count + 1, last + 1)]


def _apply(
    tx: Tx, plan: RingPlan, rings: Mapping[str, set[str]], now: datetime
) -> ReconcileSummary:
    summary = ReconcileSummary(unchanged=plan.unchanged)
    ids = _mint(tx, len(plan.created))
    new_id = {placeholder: ids[index] for index, (placeholder, _, _) in enumerate(plan.created)}
    events: list[RingEvent] = []

    # Members leave old rings first, so a subscriber is never in two rings at once.
    removals = [
        {"member": member, "ring": ring}
        for ring, members in plan.removed.items()
        for member in sorted(members)
    ]
    for ring in [*plan.merged_into, *plan.dissolved]:
        removals.extend({"member": member, "ring": ring} for member in sorted(rings[ring]))
    if removals:
        tx.run(_REMOVE_MEMBERS, {"rows": removals})

    if plan.created:
        tx.run(
            _CREATE_RINGS,
            {
                "rings": [
                    {"id": new_id[p], "members": sorted(m), "origin": "split" if s else "batch"}
                    for p, m, s in plan.created
                ],
                "now": now,
            },
        )
    additions = [
        {"member": member, "ring": ring}
        for ring, members in plan.added.items()
        for member in sorted(members)
    ]
    if additions:
        tx.run(_ADD_MEMBERS, {"rows": additions, "now": now})

    updates = [{"id": ring, "status": "active", "merged_into": None}
               for ring in {*plan.added, *plan.removed}]  # fmt: skip
    updates += [{"id": r, "status": "merged", "merged_into": into}
                for r, into in plan.merged_into.items()]  # fmt: skip
    updates += [{"id": r, "status": "dissolved", "merged_into": None} for r in plan.dissolved]
    if updates:
        tx.run(_UPDATE_RINGS, {"rows": updates, "now": now})

    absorbed_by: dict[str, list[str]] = defaultdict(list)
    for ring, into in plan.merged_into.items():
        absorbed_by[into].append(ring)
        events.append(RingEvent(ring, "merged", "batch", into_ring=into,
                                members_removed=sorted(rings[ring])))  # fmt: skip
        summary.merged += 1
    for placeholder, members, sources in plan.created:
        events.append(RingEvent(new_id[placeholder], "created", "batch",
                                members_added=sorted(members), split_from=sources))  # fmt: skip
        summary.created += 1
    for ring, placeholders in plan.split_into.items():
        events.append(RingEvent(ring, "split", "batch",
                                into_rings=[new_id[p] for p in placeholders]))  # fmt: skip
        summary.split += 1
    for ring in sorted({*plan.added, *absorbed_by}):
        absorbed = absorbed_by.get(ring, [])
        added = sorted(plan.added.get(ring, set()))
        if absorbed:
            events.append(RingEvent(ring, "merged", "batch", from_rings=absorbed,
                                    members_added=added))  # fmt: skip
        else:
            events.append(RingEvent(ring, "grew", "batch", members_added=added))
            summary.grew += 1
    for ring, members in plan.removed.items():
        if ring not in plan.split_into:
            events.append(RingEvent(ring, "shrank", "batch", members_removed=sorted(members)))
            summary.shrank += 1
    for ring in plan.dissolved:
        events.append(RingEvent(ring, "dissolved", "batch", members_removed=sorted(rings[ring])))
        summary.dissolved += 1
    if events:
        tx.run(_RECORD_EVENTS, {"events": [event.row() for event in events], "now": now})
    summary.events = events
    summary.rings = len(rings) - len(plan.merged_into) - len(plan.dissolved) + len(plan.created)
    return summary


# ------------------------------------------------------------------------------- live path
#
# The tracker runs inside every ingest transaction that links a shared identifier, and each
# statement is a round trip to the server, so an update is kept to few statements: the walk's
# neighbour queries (usually one; the first also takes the lock) and, only when rings change,
# one statement that applies every change.

_LIVE_NEIGHBOURS = """
UNWIND $ids AS sid
MATCH (s:Subscriber {id: sid})
// The walk's next step is from the neighbours outside rings: answering for them as well saves
// that round trip in most updates, whose walk ends there.
CALL (s) {
  RETURN s AS visit
  UNION
  MATCH (s)-[:%(links)s]->(i)<-[:%(links)s]-(n:Subscriber)
  WHERE NOT coalesce(i.hub, false) AND i.subscribers > 1 AND n <> s
    AND NOT EXISTS { (n)-[:MEMBER_OF]->(:Ring) }
  RETURN n AS visit
}
WITH DISTINCT visit AS s
OPTIONAL MATCH (s)-[:MEMBER_OF]->(own:Ring)
CALL (s) {
  MATCH (s)-[:%(links)s]->(i) WHERE NOT coalesce(i.hub, false) AND i.subscribers > 1
  MATCH (i)<-[:%(links)s]-(n:Subscriber) WHERE n <> s
  OPTIONAL MATCH (n)-[:MEMBER_OF]->(r:Ring)
  RETURN collect(DISTINCT [n.id, r.id, r.size]) AS neighbours
}
RETURN s.id AS sid, own.id AS ring, own.size AS ring_size, neighbours
"""

# Prefixed to the first neighbour query of an update. The subquery runs before any row is read,
# so the reads after it see every ring change committed by the update that held the lock before.
_LIVE_LOCK: LiteralString = """
CALL () { MERGE (lock:Sequence {id: 'live-rings'}) SET lock.held_at = timestamp() }
"""

# One subscriber's update in one statement when the common shapes allow (the ingest of a single
# event): take the lock, read the neighbourhood (`_LIVE_NEIGHBOURS`, which answers for the loose
# neighbours as well), and when that is the whole component and it touches at most one ring,
# apply the change right there: the loose subscribers join that ring ('join'), or form a new one
# ('form'), or nothing changes ('none'). Otherwise ('walk': the walk must go further, or rings
# merge) the rows read are returned and the update goes on in Python with the lock held. The
# writes are the batch statements' row bodies, so either way rings and lineage end the same.
_LIVE_SETTLE_DECIDE: LiteralString = """
WITH collect({sid: sid, ring: ring, ring_size: ring_size, neighbours: neighbours}) AS rows
WITH rows, [row IN rows | row.sid] AS visited
WITH rows,
     any(row IN rows WHERE any(n IN row.neighbours WHERE n[1] IS NULL AND NOT n[0] IN visited))
       AS further,
     reduce(found = [], ring IN [row IN rows WHERE row.ring IS NOT NULL | row.ring]
                                + reduce(met = [], row IN rows | met + [n IN row.neighbours
                                                                        WHERE n[1] IS NOT NULL
                                                                        | n[1]])
            | CASE WHEN ring IN found THEN found ELSE found + [ring] END) AS rings,
     [row IN rows WHERE row.ring IS NULL | row.sid] AS loose
CALL (loose) {
  UNWIND loose AS member WITH member ORDER BY member RETURN collect(member) AS members
}
WITH rows, rings, members,
     CASE WHEN further OR size(rings) > 1 THEN 'walk'
          WHEN size(rings) = 1 AND size(members) > 0 THEN 'join'
          WHEN size(rings) = 0 AND size(members) >= $min_size THEN 'form'
          ELSE 'none' END AS shape
// `$event` is a `RingEvent.row()` without members; the kind is set below.
WITH *, $event AS base
WITH *, base {.*, members_added: members} AS lineage
CALL (shape, rings, members) {
  WITH * WHERE shape = 'join'
  UNWIND members AS member
  WITH {member: member, ring: rings[0]} AS row"""
_LIVE_SETTLE_APPLY: LiteralString = """}
CALL (shape, rings, lineage) {
  WITH * WHERE shape = 'join'
  WITH lineage, {id: rings[0], status: 'active', merged_into: null} AS row"""
_LIVE_SETTLE_GREW: LiteralString = """  WITH r, lineage {.*, kind: 'grew'} AS event"""
_LIVE_SETTLE_FORM: LiteralString = """}
CALL (shape, members, lineage) {
  WITH * WHERE shape = 'form'
  MERGE (q:Sequence {id: 'ring'}) ON CREATE SET q.value = 0
  SET q.value = q.value + 1
  WITH $prefix + toString(q.value) AS ring_id, members, 'live' AS origin, lineage"""
_LIVE_SETTLE_CREATED: LiteralString = """  WITH r, lineage {.*, kind: 'created'} AS event"""
_LIVE_SETTLE_END: LiteralString = """  RETURN collect(r.id) AS created
}
RETURN shape, coalesce(created[0], rings[0]) AS ring, members,
       CASE shape WHEN 'walk' THEN rows ELSE [] END AS rows
"""


def _live_settle_statement(neighbours: LiteralString) -> LiteralString:
    return (
        _LIVE_LOCK
        + "CALL () {"
        + neighbours
        + "}"
        + _LIVE_SETTLE_DECIDE
        + _JOIN_ROW
        + _LIVE_SETTLE_APPLY
        + _RING_STATE_ROW
        + _LIVE_SETTLE_GREW
        + _EVENT_OF_RING
        + _LIVE_SETTLE_FORM
        + _NEW_RING_ROW
        + _LIVE_SETTLE_CREATED
        + _EVENT_OF_RING
        + _LIVE_SETTLE_END
    )


_RING_MEMBERS: LiteralString = """
UNWIND $rings AS ring
MATCH (s:Subscriber)-[:MEMBER_OF]->(:Ring {id: ring})
RETURN ring, collect(s.id) AS members
"""

# Every change of one live update, as one statement. Rings, members and lineage end as the batch
# statements above would leave them: joining, ring state and lineage use the same row bodies;
# ring creation and leaving are written here. An update sends only the parts it needs (a ring
# that grows neither creates nor dissolves one), so the server plans and runs no empty parts;
# each shape is its own cached plan.
_LIVE_CREATE: LiteralString = (
    """
// Ring numbers come from the batch path's sequence, in the same statement.
CALL () {
  MERGE (q:Sequence {id: 'ring'}) ON CREATE SET q.value = 0
  SET q.value = q.value + size($new_rings)
  RETURN q.value AS last
}
WITH [n IN range(1, size($new_rings)) | $prefix + toString(last - size($new_rings) + n)] AS new_ids
CALL (new_ids) {
  UNWIND range(0, size(new_ids) - 1) AS index
  WITH new_ids[index] AS ring_id, $new_rings[index] AS members, 'live' AS origin"""
    + _NEW_RING_ROW
    + """}
"""
)
_LIVE_NO_CREATE: LiteralString = """
WITH [] AS new_ids
"""
_LIVE_LEAVE: LiteralString = """
// Members of absorbed rings leave them before joining the survivor: never in two rings.
CALL () {
  UNWIND $leaving AS row
  MATCH (:Subscriber {id: row.member})-[m:MEMBER_OF]->(:Ring {id: row.ring})
  DELETE m
}
"""
_LIVE_JOIN: LiteralString = "CALL () {\n  UNWIND $joining AS row" + _JOIN_ROW + "}\n"
_LIVE_UPDATE: LiteralString = "CALL () {\n  UNWIND $updates AS row" + _RING_STATE_ROW + "}\n"
_LIVE_EVENTS: LiteralString = (
    """// Last, so each event records its ring's final size and status.
CALL (new_ids) {
  UNWIND $events AS event
  MATCH (r:Ring {id: coalesce(event.ring_id, new_ids[event.new_ring])})"""
    + _EVENT_OF_RING
    + """}
RETURN new_ids
"""
)


def live_apply_statement(
    *, creates: bool, leaves: bool, joins: bool, updates: bool
) -> LiteralString:
    """The live apply statement with the parts an update needs (lineage is always written)."""
    return (
        (_LIVE_CREATE if creates else _LIVE_NO_CREATE)
        + (_LIVE_LEAVE if leaves else "")
        + (_LIVE_JOIN if joins else "")
        + (_LIVE_UPDATE if updates else "")
        + _LIVE_EVENTS
    )


def live_tracker(config: ScoringConfig) -> tuple[LiveRingTracker, frozenset[str]]:
    """The tracker for the configured ring-forming identifier types, and those types."""
    from ringwatch.graph.analytics import identifier_weights, link_pattern

    return (
        LiveRingTracker(link_pattern(config), min_ring_size=config.min_ring_size),
        frozenset(identifier_weights(config)),
    )


@dataclass
class LiveChange:
    """What one component found by the walk needs: a new ring, or growth / a merge."""

    loose: list[str]  # subscribers outside rings, who join the ring
    survivor: str | None = None  # None: `loose` form a new ring
    absorbed: list[str] = field(default_factory=list)  # rings merged into the survivor


def plan_live_changes(
    components: Iterable[tuple[Sequence[str], Sequence[str]]],
    sizes: Mapping[str, int],
    *,
    min_ring_size: int,
) -> list[LiveChange]:
    """The changes for the components the walk found, each given as (its rings, its subscribers
    outside rings). The largest ring survives a merge (the oldest of equals)."""
    changes: list[LiveChange] = []
    for rings, loose in components:
        if not rings:
            if len(loose) >= min_ring_size:
                changes.append(LiveChange(sorted(loose)))
            continue
        ordered = sorted(rings, key=ring_number)
        survivor = max(ordered, key=lambda r: (sizes.get(r, 0), -ring_number(r)))
        absorbed = [r for r in ordered if r != survivor]
        if loose or absorbed:
            changes.append(LiveChange(sorted(loose), survivor, absorbed))
    return changes


class LiveRingTracker:
    """Keeps ring membership current inside the ingest transaction that links identifiers.

    Invariant kept between batch runs: every component with at least ``min_ring_size``
    subscribers is (contained in) one active ring. So when a subscriber gains a link to a shared
    identifier, the component it now belongs to is: the rings its neighbours are in (taken
    whole, without walking them) plus the neighbours outside rings, whose own components are
    smaller than a ring and are walked a few steps.
    """

    MAX_WALK = 500  # subscribers outside rings visited per batch, a bound on the walk

    def __init__(self, link_pattern: str, *, min_ring_size: int) -> None:
        neighbours: LiteralString = _LIVE_NEIGHBOURS % {"links": link_pattern}
        self.query: LiteralString = _LIVE_LOCK + neighbours  # the first query of a walk
        self.walk_query: LiteralString = neighbours  # when the walk goes further, lock held
        self.settle_query = _live_settle_statement(neighbours)  # one subscriber, see there
        self.min_ring_size = min_ring_size

    def update(self, tx: Tx, subscriber_ids: Iterable[str], now: datetime) -> list[RingEvent]:
        frontier = sorted(set(subscriber_ids))
        if not frontier:
            return []
        if len(frontier) == 1:
            event = RingEvent("", "", "live")  # its ring, kind and members from the answer
            params = {"ids": frontier, "min_size": self.min_ring_size, "event": event.row(),
                      "prefix": RING_PREFIX, "now": now}  # fmt: skip
            (answer,) = tx.run(self.settle_query, params)
            kind = {"join": "grew", "form": "created"}.get(answer["shape"])
            if kind is not None:
                event.ring_id, event.kind = str(answer["ring"]), kind
                event.members_added = list(answer["members"])
                return [event]
            if answer["shape"] == "none":
                return []
            components, sizes = self._walk(tx, frontier, answered=answer["rows"])
        else:
            components, sizes = self._walk(tx, frontier)
        changes = plan_live_changes(components, sizes, min_ring_size=self.min_ring_size)
        if not changes:
            return []
        return self._apply(tx, changes, now)

    def _walk(
        self, tx: Tx, frontier: list[str], answered: Iterable[Mapping[str, Any]] | None = None
    ) -> tuple[list[tuple[list[str], list[str]]], dict[str, int]]:
        """The components around `frontier` as (rings, subscribers outside rings), and the
        size of each ring met. `answered`: the first neighbour rows, already read with the
        lock taken (by the settle statement)."""
        parent: dict[str, str] = {}

        def find(node: str) -> str:
            root = node
            while parent.setdefault(root, root) != root:
                root = parent[root]
            while parent[node] != root:
                parent[node], node = root, parent[node]
            return root

        def union(a: str, b: str) -> None:
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[ra] = rb

        # The first query takes the lock: one live ring update at a time across all ingest
        # workers, or two workers could each see the other's ring as absent and put one
        # subscriber in two rings.
        query = self.query if answered is None else self.walk_query
        # By subscriber, answered ahead of the step that visits it.
        rows: dict[str, Mapping[str, Any]] = {row["sid"]: row for row in answered or ()}
        sizes: dict[str, int] = {}
        visited: set[str] = set()
        while frontier and len(visited) < self.MAX_WALK:
            visited.update(frontier)
            if missing := [sid for sid in frontier if sid not in rows]:
                rows.update((row["sid"], row) for row in tx.run(query, {"ids": missing}))
                query = self.walk_query
            next_frontier: set[str] = set()
            for sid in frontier:
                if (row := rows.get(sid)) is None:
                    continue
                own = row["ring"]
                if own is not None:
                    sizes[own] = int(row["ring_size"] or 0)
                node = f"ring:{own}" if own else f"sub:{sid}"
                find(node)
                for neighbour, ring, size in row["neighbours"]:
                    if ring is not None:
                        sizes[ring] = int(size or 0)
                        union(node, f"ring:{ring}")
                    else:
                        union(node, f"sub:{neighbour}")
                        if neighbour not in visited:
                            next_frontier.add(neighbour)
            frontier = sorted(next_frontier)

        groups: dict[str, set[str]] = defaultdict(set)
        for node in list(parent):
            groups[find(node)].add(node)
        components = [
            (
                [n.removeprefix("ring:") for n in group if n.startswith("ring:")],
                [n.removeprefix("sub:") for n in group if n.startswith("sub:")],
            )
            for group in groups.values()
        ]
        return components, sizes

    def _apply(self, tx: Tx, changes: Sequence[LiveChange], now: datetime) -> list[RingEvent]:
        absorbed = [ring for change in changes for ring in change.absorbed]
        members_of: dict[str, list[str]] = {}
        if absorbed:  # merges are rare; only they need the members of whole rings
            rows = tx.run(_RING_MEMBERS, {"rings": absorbed})
            members_of = {row["ring"]: sorted(row["members"]) for row in rows}

        new_rings: list[list[str]] = []
        created: list[RingEvent] = []
        leaving: list[dict[str, str]] = []
        joining: list[dict[str, str]] = []
        updates: list[dict[str, str | None]] = []
        events: list[RingEvent] = []
        event_rows: list[dict[str, Any]] = []

        def record(event: RingEvent, new_ring: int | None = None) -> None:
            events.append(event)
            row = event.row() | {"new_ring": new_ring}
            event_rows.append(row if new_ring is None else row | {"ring_id": None})

        for change in changes:
            if change.survivor is None:
                # The ring's id is minted by the apply statement; the event gets it from the answer.
                event = RingEvent("", "created", "live", members_added=change.loose)
                record(event, new_ring=len(new_rings))
                new_rings.append(change.loose)
                created.append(event)
                continue
            survivor = change.survivor
            moved: list[str] = []
            for ring in change.absorbed:
                members = members_of.get(ring, [])
                leaving += [{"member": m, "ring": ring} for m in members]
                moved += members
                updates.append({"id": ring, "status": "merged", "merged_into": survivor})
                record(RingEvent(ring, "merged", "live", into_ring=survivor,
                                 members_removed=members))  # fmt: skip
            joining += [{"member": m, "ring": survivor} for m in [*moved, *change.loose]]
            updates.append({"id": survivor, "status": "active", "merged_into": None})
            kind = "merged" if change.absorbed else "grew"
            record(RingEvent(survivor, kind, "live", from_rings=list(change.absorbed),
                             members_added=[*moved, *change.loose]))  # fmt: skip

        statement = live_apply_statement(
            creates=bool(new_rings),
            leaves=bool(leaving),
            joins=bool(joining),
            updates=bool(updates),
        )
        (answer,) = tx.run(
            statement,
            {
                "new_rings": new_rings,
                "leaving": leaving,
                "joining": joining,
                "updates": updates,
                "events": event_rows,
                "prefix": RING_PREFIX,
                "now": now,
            },
        )
        for event, ring_id in zip(created, answer["new_ids"], strict=True):
            event.ring_id = ring_id
        return events
