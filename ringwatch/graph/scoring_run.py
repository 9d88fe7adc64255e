"""Batch scoring: read every subscriber's evidence, score rings and subscribers, write back.

Runs after the analytics pipeline, ring reconciliation and the usage scores. Reads subscribers
in pages ordered by id (index-backed), builds ring facts from their members, computes ring risk,
graph risk and merged risk (rule merge, or the calibrated stacking model when there are enough
labels), writes everything back in batches, and raises alert candidates for what crossed into a
higher priority.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, LiteralString

from ringwatch.config import ScoringConfig
from ringwatch.graph.alerts import all_alerted_priorities, raise_alerts
from ringwatch.graph.analytics import link_pattern
from ringwatch.graph.db import QueryRunner
from ringwatch.graph.drift import save_snapshot
from ringwatch.scoring import reasons as reason_codec
from ringwatch.scoring.alerts import AlertCandidate, alert_candidates
from ringwatch.scoring.graph import (
    STRONG_TYPES,
    RingFacts,
    Scored,
    SharedIdentifier,
    SubscriberFacts,
    ring_facts,
    ring_risk,
    subscriber_graph_risk,
)
from ringwatch.scoring.merge import (
    StackingModel,
    apply_label,
    merged_reasons,
    rule_merge,
    train_stacking,
)
from ringwatch.scoring.risk import decision, priority

log = logging.getLogger(__name__)

PAGE = 5_000
# Rules that alert on their own, whatever the merged risk (the seeds' $500-a-day trigger).
SUBSCRIBER_RULE_CODES = frozenset({"usage.daily_charge_limit", "usage.impossible_travel"})


def _facts_query(pattern: str) -> LiteralString:
    return (  # Relationship types come from the configured constants, never from input.
        "MATCH (s:Subscriber) WHERE s.id > $after\n"
        "WITH s ORDER BY s.id LIMIT $limit\n"
        "RETURN s.id AS id, s.created_at AS created_at, s.label AS label,\n"
        "  s.ring_id AS ring_id, s.usage_risk AS usage_risk, s.usage_reasons AS usage_reasons,\n"
        "  s.gnn_risk AS gnn_risk, s.gnn_reasons AS gnn_reasons,\n"
        "  s.similarity_degree AS similarity_degree,\n"
        "  s.pagerank AS pagerank, s.fraud_proximity AS fraud_proximity,\n"
        f"  [(s)-[r:{pattern}]->(i) WHERE NOT coalesce(i.hub, false) AND i.subscribers > 1\n"
        "     | [type(r), i.id, i.subscribers]] AS shared,\n"
        "  [(s)-[x:SIMILAR_TO]-(o:Subscriber) | [x.score, o.id]] AS similar,\n"
        f"  COUNT {{ MATCH (s)-[:{pattern}]->(i)<-[:{pattern}]-(o:Subscriber)\n"
        "          WHERE o <> s AND o.label = 'fraud' AND NOT coalesce(i.hub, false)\n"
        "          RETURN DISTINCT o } AS near_fraud"
    )


_WRITE_SUBSCRIBERS: LiteralString = """
UNWIND $rows AS row
MATCH (s:Subscriber {id: row.id})
SET s.graph_risk = row.graph_risk, s.graph_reasons = row.graph_reasons,
    s.risk = row.risk, s.priority = row.priority, s.decision = row.decision,
    s.risk_reasons = row.reasons, s.risk_reason_codes = row.codes, s.risk_model = row.model,
    s.scored_at = $now
// Marker labels let Neo4j Browser's style sheet colour by priority (GraSS cannot read values).
REMOVE s:P1:P2:P3
FOREACH (_ IN CASE row.priority WHEN 'P1' THEN [1] ELSE [] END | SET s:P1)
FOREACH (_ IN CASE row.priority WHEN 'P2' THEN [1] ELSE [] END | SET s:P2)
FOREACH (_ IN CASE row.priority WHEN 'P3' THEN [1] ELSE [] END | SET s:P3)
"""

_WRITE_RINGS: LiteralString = """
UNWIND $rows AS row
MATCH (r:Ring {id: row.id})
SET r += row.properties, r.scored_at = $now
REMOVE r:P1:P2:P3
FOREACH (_ IN CASE row.properties.priority WHEN 'P1' THEN [1] ELSE [] END | SET r:P1)
FOREACH (_ IN CASE row.properties.priority WHEN 'P2' THEN [1] ELSE [] END | SET r:P2)
FOREACH (_ IN CASE row.properties.priority WHEN 'P3' THEN [1] ELSE [] END | SET r:P3)
"""


@dataclass
class ScoringSummary:
    subscribers: int = 0
    rings: int = 0
    model: str = "rules"
    by_priority: dict[str, int] = field(default_factory=dict)
    rings_by_priority: dict[str, int] = field(default_factory=dict)
    alerts_raised: int = 0


def read_facts(
    runner: QueryRunner, config: ScoringConfig
) -> Iterator[tuple[SubscriberFacts, dict[str, Any]]]:
    """Every subscriber's facts, plus the raw values the stacking model uses."""
    query = _facts_query(link_pattern(config))
    after = ""
    while True:
        rows = runner.read(query, {"after": after, "limit": PAGE})
        if not rows:
            return
        for row in rows:
            created = row["created_at"]
            similar = max(row["similar"], default=None, key=lambda pair: pair[0])
            facts = SubscriberFacts(
                id=row["id"],
                created_at=created.to_native() if created is not None else None,
                label=row["label"],
                ring_id=row["ring_id"],
                shared=[SharedIdentifier(rel, ident, int(n)) for rel, ident, n in row["shared"]],
                similarity_max=float(similar[0]) if similar else 0.0,
                similar_to=similar[1] if similar else None,
                similarity_degree=float(row["similarity_degree"] or 0.0),
                pagerank=float(row["pagerank"] or 0.0),
                fraud_proximity=float(row["fraud_proximity"] or 0.0),
                labelled_fraud_neighbours=int(row["near_fraud"]),
                usage_risk=float(row["usage_risk"] or 0.0),
            )
            extra = {
                "usage_reasons": row["usage_reasons"],
                "gnn_risk": row["gnn_risk"],
                "gnn_reasons": row["gnn_reasons"],
            }
            yield facts, extra
        after = rows[-1]["id"]


def _features(
    facts: SubscriberFacts,
    usage: list[reason_codec.Reason],
    graph: Scored,
    ring: RingFacts | None,
    ring_scored: Scored | None,
    gnn: float | None,
    as_of: datetime,
) -> dict[str, float]:
    """Stacking features. Nothing here reveals the subscriber's own label."""
    age_days = (as_of - facts.created_at).days if facts.created_at else 3650
    own_fraud = int(facts.label == "fraud")
    own_legit = int(facts.label == "legitimate")
    row: dict[str, float] = {
        "usage_risk": facts.usage_risk,
        "account_age_days": float(max(age_days, 0)),
        "shared_identifiers": float(len(facts.shared)),
        "strong_shared_max": float(
            max((s.subscribers for s in facts.shared if s.relationship in STRONG_TYPES), default=0)
        ),
        "similarity_max": facts.similarity_max,
        "similarity_degree": facts.similarity_degree,
        "pagerank": facts.pagerank,
        "labelled_fraud_neighbours": float(facts.labelled_fraud_neighbours),
        "gnn_risk": float(gnn or 0.0),
    }
    for reason in usage:
        row[f"usage:{reason.code}"] = max(row.get(f"usage:{reason.code}", 0.0), reason.weight)
    for reason in graph.reasons:
        if reason.code not in ("graph.near_fraud", "graph.ring"):
            row[f"graph:{reason.code}"] = reason.weight
    if ring is not None and ring_scored is not None:
        row.update(
            ring_size=float(ring.size),
            ring_density=ring.density,
            ring_new_account_share=ring.new_account_share,
            ring_signup_burst=ring.signup_burst_share,
            ring_strong_shared=float(ring.strong_shared),
            ring_max_accounts_per_identifier=float(ring.max_accounts_per_identifier),
            ring_mean_usage_risk=ring.mean_usage_risk,
            ring_labelled_fraud_others=float(ring.labelled_fraud - own_fraud),
            ring_labelled_legitimate_others=float(ring.labelled_legitimate - own_legit),
        )
    return row


def score_all(
    runner: QueryRunner,
    config: ScoringConfig,
    *,
    as_of: datetime,
    now: datetime | None = None,
    raise_alert_candidates: bool = True,
) -> ScoringSummary:
    now = now or datetime.now(UTC)
    summary = ScoringSummary()
    everyone: list[tuple[SubscriberFacts, dict[str, Any]]] = list(read_facts(runner, config))
    members: dict[str, list[SubscriberFacts]] = defaultdict(list)
    for facts, _ in everyone:
        if facts.ring_id:
            members[facts.ring_id].append(facts)
    rings: dict[str, tuple[RingFacts, Scored]] = {}
    for ring_id, ring_members in members.items():
        facts_of_ring = ring_facts(ring_id, ring_members, as_of=as_of, config=config)
        rings[ring_id] = (facts_of_ring, ring_risk(facts_of_ring))

    rows: list[dict[str, float]] = []
    graph_scores: list[Scored] = []
    usage_reasons: list[list[reason_codec.Reason]] = []
    for facts, extra in everyone:
        ring, ring_scored = rings.get(facts.ring_id or "", (None, None))
        graph = subscriber_graph_risk(facts, ring, ring_scored, as_of=as_of, config=config)
        usage = reason_codec.loads(extra["usage_reasons"])
        graph_scores.append(graph)
        usage_reasons.append(usage)
        rows.append(_features(facts, usage, graph, ring, ring_scored, extra["gnn_risk"], as_of))

    model: StackingModel | None = train_stacking(
        rows,
        [facts.label == "fraud" for facts, _ in everyone],
        min_per_class=config.min_labels_per_class,
    )
    stacked = model.probabilities if model is not None else None
    summary.model = model.method if model else "rules"

    alerted = all_alerted_priorities(runner, "subscriber") if raise_alert_candidates else {}
    candidates: list[AlertCandidate] = []
    batch: list[dict[str, Any]] = []
    batch_scores: list[float] = []
    for index, (facts, extra) in enumerate(everyone):
        graph = graph_scores[index]
        gnn = float(extra["gnn_risk"]) if extra["gnn_risk"] is not None else 0.0
        reasons = merged_reasons(
            usage_reasons[index], graph.reasons, reason_codec.loads(extra["gnn_reasons"])
        )
        if stacked is not None and model is not None:
            risk = float(stacked[index])
            reasons.append(model.reason(risk))
        else:
            risk = rule_merge({"usage": facts.usage_risk, "graph": graph.risk, "gnn": gnn})
        risk = apply_label(risk, facts.label, reasons)
        batch_scores.append(risk)
        band = priority(risk, config)
        summary.by_priority[band.value] = summary.by_priority.get(band.value, 0) + 1
        batch.append(
            {
                "id": facts.id,
                "graph_risk": graph.risk,
                "graph_reasons": reason_codec.dumps(graph.reasons),
                "risk": risk,
                "priority": band.value,
                "decision": decision(risk, config).value,
                "reasons": reason_codec.dumps(reasons),
                "codes": reason_codec.codes(reasons),
                "model": summary.model,
            }
        )
        if raise_alert_candidates:
            candidates.extend(
                alert_candidates(
                    "subscriber",
                    facts.id,
                    risk=risk,
                    priority=band,
                    reasons=reasons,
                    alerted=alerted.get(facts.id, {}),
                    rule_codes=SUBSCRIBER_RULE_CODES,
                )
            )
        if len(batch) >= PAGE:
            runner.write(_WRITE_SUBSCRIBERS, {"rows": batch, "now": now})
            batch = []
    if batch:
        runner.write(_WRITE_SUBSCRIBERS, {"rows": batch, "now": now})
    summary.subscribers = len(everyone)

    ring_alerted = all_alerted_priorities(runner, "ring") if raise_alert_candidates else {}
    ring_rows: list[dict[str, Any]] = []
    for ring_id, (facts_of_ring, scored) in rings.items():
        band = priority(scored.risk, config)
        summary.rings_by_priority[band.value] = summary.rings_by_priority.get(band.value, 0) + 1
        ring_rows.append({"id": ring_id, "properties": _ring_properties(facts_of_ring, scored,
                                                                       config)})  # fmt: skip
        if raise_alert_candidates:
            candidates.extend(
                alert_candidates(
                    "ring",
                    ring_id,
                    risk=scored.risk,
                    priority=band,
                    reasons=scored.reasons,
                    alerted=ring_alerted.get(ring_id, {}),
                    rule_codes=frozenset(),
                )
            )
    for start in range(0, len(ring_rows), PAGE):
        runner.write(_WRITE_RINGS, {"rows": ring_rows[start : start + PAGE], "now": now})
    summary.rings = len(rings)
    if candidates:
        summary.alerts_raised = len(raise_alerts(runner, candidates, now))
    if batch_scores:
        save_snapshot(runner, batch_scores, now)
    return summary


def _ring_properties(ring: RingFacts, scored: Scored, config: ScoringConfig) -> dict[str, Any]:
    return {
        "size": ring.size,
        "risk": scored.risk,
        "priority": priority(scored.risk, config).value,
        "decision": decision(scored.risk, config).value,
        "reasons": reason_codec.dumps(scored.reasons),
        "reason_codes": reason_codec.codes(scored.reasons),
        "identifier_types": sorted(ring.identifier_types),
        "shared_identifiers": ring.shared_identifiers,
        "density": ring.density,
        "new_account_share": ring.new_account_share,
        "signup_burst_share": ring.signup_burst_share,
        "labelled_fraud": ring.labelled_fraud,
        "labelled_legitimate": ring.labelled_legitimate,
        "mean_usage_risk": ring.mean_usage_risk,
    }
