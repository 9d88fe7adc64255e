"""The batch usage scorer's statements, with a recording runner: parameters only, batched."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ringwatch.config import ScoringConfig
from ringwatch.graph import usage_scores
from ringwatch.graph.db import Record
from ringwatch.scoring import reasons
from ringwatch.scoring.usage import day_number
from tests.unit.fakes import RecordingRunner

AS_OF = datetime(2024, 3, 30, 18, 0, tzinfo=UTC)
HOSTILE = "x' }) MATCH (n) DETACH DELETE n //"


def _responder(query: str, params: Mapping[str, Any]) -> list[Record]:
    if query is usage_scores._SERIES:
        today = day_number(AS_OF)
        return [
            {
                "sid": sid,
                "account_start": None,
                "older": False,
                "days": [today - 1, today],
                "spend": [10.0, 640.0],
                "data_mb": [100.0, 100.0],
                "busy": [],
                "call_days": [],
                "transactions": 2,
                "calls": 0,
            }
            for sid in params["ids"]
        ]
    return []


def test_ids_travel_as_parameters_in_batches_and_scores_are_written() -> None:
    runner = RecordingRunner(responder=_responder)
    ids = [f"s{i}" for i in range(5)] + [HOSTILE]
    summary = usage_scores.score_all_usage(
        runner, ScoringConfig(), as_of=AS_OF, subscriber_ids=ids, batch_size=4, workers=1
    )
    assert summary.subscribers == 6 and summary.flagged == 6
    assert summary.codes["usage.daily_charge_limit"] == 6
    assert all(HOSTILE not in query for query, _ in runner.reads + runner.writes)
    series_reads = [params for query, params in runner.reads if query is usage_scores._SERIES]
    assert [params["ids"] for params in series_reads] == [ids[:4], ids[4:]]
    written = [row for _, params in runner.writes for row in params["rows"]]
    assert [row["id"] for row in written] == ids
    hostile = written[-1]
    assert hostile["codes"] == ["usage.daily_charge_limit"]
    (reason,) = reasons.loads(hostile["reasons"])
    assert reason.text == "charges $640 in 24 h on 2024-03-30 (limit $500)"
    assert 0 < hostile["risk"] <= 1
