"""A subscriber's usage windows (1 h, 24 h, 7 d, 30 d) and daily series, read from the graph.

The windows are computed from the subscriber's transactions in the last 30 days (an index range
on subscriber and time), the daily series from the day buckets the writer keeps. Both are exact
under redelivery because the writer adds each transaction once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ringwatch.graph.db import QueryRunner
from ringwatch.ingest.prepare import NIGHT_HOURS, SHORT_CALL_S, SPEND_KINDS

WINDOWS: dict[str, timedelta] = {
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}

_TRANSACTIONS = """
MATCH (t:Transaction)
WHERE t.subscriber_id = $subscriber_id AND t.ts > $since AND t.ts <= $as_of
OPTIONAL MATCH (t)-[:ON_DEVICE]->(d:Device)
OPTIONAL MATCH (t)-[:FROM_IP]->(i:IP)
OPTIONAL MATCH (t)-[:TO]->(c)
RETURN t.ts AS ts, t.kind AS kind, t.amount AS amount, t.data_mb AS data_mb,
       t.duration_s AS duration_s, d.id AS device, i.id AS ip, c.id AS counterparty
"""

_DAILY = """
MATCH (b:UsageBucket)
WHERE b.subscriber_id = $subscriber_id AND b.grain = 'day'
  AND b.start >= $since AND b.start <= $as_of
RETURN b.start AS day, b.count AS count, b.spend AS spend, b.data_mb AS data_mb
ORDER BY day
"""


@dataclass
class Window:
    count: int = 0
    spend: float = 0.0
    topup: float = 0.0
    data_mb: float = 0.0
    calls: int = 0
    short_calls: int = 0
    night_calls: int = 0
    sms: int = 0
    distinct_devices: int = 0
    distinct_ips: int = 0
    distinct_counterparties: int = 0


@dataclass(frozen=True)
class DailyUsage:
    day: datetime
    count: int
    spend: float
    data_mb: float


@dataclass(frozen=True)
class UsageWindows:
    subscriber_id: str
    as_of: datetime
    windows: dict[str, Window]
    daily: list[DailyUsage]


def usage_windows(runner: QueryRunner, subscriber_id: str, as_of: datetime) -> UsageWindows:
    since = as_of - WINDOWS["30d"]
    rows = runner.read(
        _TRANSACTIONS, {"subscriber_id": subscriber_id, "since": since, "as_of": as_of}
    )
    windows = {name: Window() for name in WINDOWS}
    seen: dict[str, tuple[set[str], set[str], set[str]]] = {
        name: (set(), set(), set()) for name in WINDOWS
    }
    for row in rows:
        ts = row["ts"].to_native()
        kind = row["kind"]
        amount = float(row["amount"] or 0.0)
        is_call = kind == "call"
        for name, span in WINDOWS.items():
            if ts <= as_of - span:
                continue
            window = windows[name]
            window.count += 1
            window.spend += amount if kind in SPEND_KINDS else 0.0
            window.topup += amount if kind == "topup" else 0.0
            window.data_mb += float(row["data_mb"] or 0.0)
            window.calls += int(is_call)
            window.short_calls += int(is_call and (row["duration_s"] or 0.0) < SHORT_CALL_S)
            window.night_calls += int(is_call and ts.hour in NIGHT_HOURS)
            window.sms += int(kind == "sms")
            devices, ips, counterparties = seen[name]
            for value, bucket in ((row["device"], devices), (row["ip"], ips),
                                  (row["counterparty"], counterparties)):  # fmt: skip
                if value is not None:
                    bucket.add(value)
    for name, (devices, ips, counterparties) in seen.items():
        windows[name].distinct_devices = len(devices)
        windows[name].distinct_ips = len(ips)
        windows[name].distinct_counterparties = len(counterparties)
    daily = [
        DailyUsage(
            row["day"].to_native(), int(row["count"]), float(row["spend"]), float(row["data_mb"])
        )
        for row in runner.read(
            _DAILY, {"subscriber_id": subscriber_id, "since": since, "as_of": as_of}
        )
    ]
    return UsageWindows(subscriber_id, as_of, windows, daily)
