"""Score snapshots kept by each scoring run, and the drift measured between them."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import LiteralString

from ringwatch.graph.db import QueryRunner
from ringwatch.scoring.drift import Drift, measure_drift

SAMPLE_SIZE = 5_000
KEEP_SNAPSHOTS = 30

_SAVE: LiteralString = """
CREATE (:ScoreSnapshot {id: $id, at: $at, size: $size, sample: $sample})
WITH 1 AS done
MATCH (old:ScoreSnapshot) WITH old ORDER BY old.at DESC SKIP $keep
DETACH DELETE old
"""
_SNAPSHOTS: LiteralString = """
MATCH (s:ScoreSnapshot) RETURN s.at AS at, s.sample AS sample ORDER BY s.at
"""
_ALERT_COUNTS: LiteralString = """
MATCH (a:Alert) WHERE a.created_at >= $since
RETURN sum(CASE WHEN a.created_at >= $day_ago THEN 1 ELSE 0 END) AS last_day,
       sum(CASE WHEN a.created_at < $day_ago THEN 1 ELSE 0 END) AS before
"""


def save_snapshot(runner: QueryRunner, scores: Sequence[float], at: datetime) -> None:
    """Keep a uniform sample of this run's scores (seeded by time, so runs are reproducible)."""
    values = list(scores)
    sampler = random.Random(int(at.timestamp()))  # noqa: S311 - statistics, not secrets
    sample = sampler.sample(values, min(SAMPLE_SIZE, len(values)))
    runner.write(
        _SAVE,
        {"id": at.isoformat(), "at": at, "size": len(values), "sample": sample,
         "keep": KEEP_SNAPSHOTS},
    )  # fmt: skip


def current_drift(
    runner: QueryRunner, now: datetime | None = None, baseline_days: int = 7
) -> Drift | None:
    """Drift of the latest snapshot against the earliest kept; None before two runs."""
    snapshots = runner.read(_SNAPSHOTS)
    now = now or datetime.now(UTC)
    day_ago = now - timedelta(days=1)
    counts = runner.read(
        _ALERT_COUNTS, {"since": now - timedelta(days=baseline_days + 1), "day_ago": day_ago}
    )[0]
    if len(snapshots) < 2:
        baseline: list[float] = []
        current: list[float] = list(snapshots[-1]["sample"]) if snapshots else []
    else:
        baseline, current = list(snapshots[0]["sample"]), list(snapshots[-1]["sample"])
    return measure_drift(
        baseline,
        current,
        alerts_last_day=int(counts["last_day"] or 0),
        baseline_alerts_per_day=float(counts["before"] or 0) / baseline_days,
    )
