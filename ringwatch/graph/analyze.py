"""`ringwatch analyze`: the whole batch run, in the order each step needs the previous one.

1. GDS pipeline (components, similarity, communities, centrality, fraud proximity, embeddings);
2. ring reconciliation (stable ids, lineage);
3. usage/velocity scores;
4. GNN scores, when a model is promoted (`ringwatch models promote`);
5. ring, graph and merged risk with reasons, and alert candidates;
6. ring lineage and new alerts published from the graph outbox to Kafka.

Each step is timed; the report says what was found.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, LiteralString

from graphdatascience import GraphDataScience
from neo4j import Driver

from ringwatch.config import Settings
from ringwatch.graph.analytics import PipelineOptions, PipelineReport, StepTiming, run_pipeline
from ringwatch.graph.db import Neo4jRunner, QueryRunner
from ringwatch.graph.gnn_run import score_if_promoted
from ringwatch.graph.rings import ReconcileSummary, reconcile_rings
from ringwatch.graph.scoring_run import ScoringSummary, score_all
from ringwatch.graph.usage_scores import newest_transaction_time, score_all_usage

log = logging.getLogger(__name__)

_NEWEST_ACTIVITY: LiteralString = """
MATCH (s:Subscriber) WHERE s.last_seen IS NOT NULL
RETURN s.last_seen AS at ORDER BY at DESC LIMIT 1
"""

TOP_RINGS: LiteralString = """
MATCH (r:Ring {status: 'active'})
RETURN r.id AS id, r.size AS size, r.risk AS risk, r.priority AS priority,
       r.identifier_types AS identifier_types, r.reasons AS reasons
ORDER BY r.risk DESC, r.size DESC, r.id
LIMIT $limit
"""


@dataclass
class AnalysisReport:
    as_of: datetime
    pipeline: PipelineReport
    rings: ReconcileSummary
    usage: Any
    scoring: ScoringSummary
    published: dict[str, int] = field(default_factory=dict)
    steps: list[StepTiming] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(step.seconds for step in self.steps)


def data_time(runner: QueryRunner) -> datetime:
    """The time the data describes: its newest transaction, else its newest activity, else now.

    Scores are computed as of this time, so a history loaded from the past is judged by its own
    clock rather than by today's.
    """
    newest = newest_transaction_time(runner)
    if newest is not None:
        return newest
    rows = runner.read(_NEWEST_ACTIVITY)
    if rows:
        value = rows[0]["at"]
        return value.to_native() if hasattr(value, "to_native") else value  # type: ignore[no-any-return]
    return datetime.now(UTC)


def analyze(
    driver: Driver,
    gds: GraphDataScience,
    settings: Settings,
    *,
    as_of: datetime | None = None,
    lookback_days: int = 30,
    publish: bool = True,
    options: PipelineOptions | None = None,
) -> AnalysisReport:
    runner = Neo4jRunner(driver, settings.neo4j.database)
    config = settings.scoring
    steps: list[StepTiming] = []

    def timed(name: str, started: float, **detail: Any) -> None:
        seconds = time.perf_counter() - started
        steps.append(StepTiming(name, seconds, detail))
        log.info("analysis step %s took %.2f s", name, seconds)

    as_of = as_of or data_time(runner)
    started = time.perf_counter()
    pipeline = run_pipeline(gds, driver, config, options, database=settings.neo4j.database)
    timed("graph analytics (GDS)", started, steps=len(pipeline.steps))

    started = time.perf_counter()
    rings = reconcile_rings(runner, min_ring_size=config.min_ring_size)
    timed("ring reconciliation", started, rings=rings.rings, created=rings.created)

    started = time.perf_counter()
    usage = score_all_usage(runner, config, as_of=as_of, lookback_days=lookback_days)
    timed("usage scores", started)

    started = time.perf_counter()
    gnn = score_if_promoted(runner, settings.models, config)
    if gnn is not None:
        timed("GNN scores", started, version=gnn.version, subscribers=gnn.subscribers)

    started = time.perf_counter()
    scoring = score_all(runner, config, as_of=as_of)
    timed("risk scores and alerts", started, model=scoring.model, alerts=scoring.alerts_raised)

    published: dict[str, int] = {}
    if publish:
        started = time.perf_counter()
        published = publish_outbox(runner, settings)
        timed("publish ring events and alerts", started, **published)
    return AnalysisReport(as_of, pipeline, rings, usage, scoring, published, steps)


def publish_outbox(runner: QueryRunner, settings: Settings) -> dict[str, int]:
    """Send pending ring lineage and alerts to their Kafka topics."""
    from ringwatch.graph.outbox import OutboxKind, create_outbox_producer, publish_pending

    producer = create_outbox_producer(settings.kafka)
    return {
        "ring_events": publish_pending(
            runner, producer, OutboxKind.RING_EVENT, settings.kafka.topic_rings
        ),
        "alerts": publish_pending(runner, producer, OutboxKind.ALERT, settings.kafka.topic_alerts),
    }


def top_rings(runner: QueryRunner, limit: int = 10) -> list[dict[str, Any]]:
    return [dict(row) for row in runner.read(TOP_RINGS, {"limit": limit})]
