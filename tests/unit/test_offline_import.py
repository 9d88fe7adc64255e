"""The offline import's usage-day sums are the online writer's, for any mix of transactions."""

from __future__ import annotations

import random
from contextlib import ExitStack
from pathlib import Path

import pytest

from ringwatch.graph.writer import _bucket_rows
from ringwatch.ingest.offline_import import _CsvFiles, _iso, _Transactions
from ringwatch.ingest.prepare import PreparedTransaction
from tests.factories import prepared, transaction

KINDS = ("payment", "transfer", "topup", "call", "sms", "data_usage")


def _random_transactions(seed: int, n: int) -> list[PreparedTransaction]:
    rng = random.Random(seed)
    payloads = []
    for i in range(n):
        kind = rng.choice(KINDS)
        extra = {"duration_s": rng.choice([1.0, 9.99, 10.0, 61.5])} if kind == "call" else {}
        payloads.append(
            transaction(
                f"t{i}",
                f"s{rng.randrange(5)}",
                type=kind,
                hours=rng.uniform(-60, 60),
                amount=round(rng.uniform(0, 300), 2),
                **extra,
            )
        )
    events = prepared(*payloads)
    assert all(isinstance(e, PreparedTransaction) for e in events)
    return events  # type: ignore[return-value]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_offline_usage_days_equal_the_online_buckets(seed: int, tmp_path: Path) -> None:
    events = _random_transactions(seed, 400)
    with ExitStack() as files:
        offline = _Transactions(_CsvFiles(tmp_path, files))
        for event in events:
            assert offline.add(event)
        assert not offline.add(events[0])  # a repeated transaction id is counted once
        rows = list(offline.bucket_rows())

    online = _bucket_rows(events)
    assert offline.buckets == len(online) == len(rows) > 10
    by_id = {row[0]: row for row in rows}
    for bucket in online:
        row = by_id[bucket["id"]]
        assert row[1:4] == [bucket["subscriber_id"], "day", _iso(bucket["start"])]
        names = (
            *("count", "spend", "topup", "data_mb", "calls"),
            *("short_calls", "night_calls", "call_s", "sms"),
        )
        assert row[4:] == pytest.approx([bucket[name] for name in names])
    made = (tmp_path / "MADE.csv").read_text().splitlines()
    assert len(made) == 1 + len(events)  # header, then one edge per distinct transaction
