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

# One pass over the subscriber's last 30 days (an index range on subscriber and time): each
# transaction is counted in every window it falls in, and the server returns one row per window
# rather than every transaction, so a profile costs a few rows on the wire whatever the traffic.
_WINDOW_TOTALS = """
MATCH (t:Transaction)
WHERE t.subscriber_id = $subscriber_id AND t.ts > $since AND t.ts <= $as_of
OPTIONAL MATCH (t)-[:ON_DEVICE]->(d:Device)
OPTIONAL MATCH (t)-[:FROM_IP]->(i:IP)
OPTIONAL MATCH (t)-[:TO]->(c)
WITH t, d.id AS device, i.id AS ip, c.id AS counterparty, t.kind = 'call' AS is_call
UNWIND [w IN $windows WHERE t.ts > w.since | w.name] AS window
RETURN window,
       count(*) AS count,
       sum(CASE WHEN t.kind IN $spend_kinds THEN coalesce(t.amount, 0.0) ELSE 0.0 END) AS spend,
       sum(CASE WHEN t.kind = 'topup' THEN coalesce(t.amount, 0.0) ELSE 0.0 END) AS topup,
       sum(coalesce(t.data_mb, 0.0)) AS data_mb,
       sum(CASE WHEN is_call THEN 1 ELSE 0 END) AS calls,
       sum(CASE WHEN is_call AND coalesce(t.duration_s, 0.0) < $short_call_s
                THEN 1 ELSE 0 END) AS short_calls,
       sum(CASE WHEN is_call AND t.ts.hour IN $night_hours THEN 1 ELSE 0 END) AS night_calls,
       sum(CASE WHEN t.kind = 'sms' THEN 1 ELSE 0 END) AS sms,
       count(DISTINCT device) AS distinct_devices,
       count(DISTINCT ip) AS distinct_ips,
       count(DISTINCT counterparty) AS distinct_counterparties
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


def window_totals(runner: QueryRunner, subscriber_id: str, as_of: datetime) -> dict[str, Window]:
    """The 1 h, 24 h, 7 d and 30 d windows ending at `as_of` (empty windows are all zero)."""
    parameters = {
        "subscriber_id": subscriber_id,
        "since": as_of - WINDOWS["30d"],
        "as_of": as_of,
        "windows": [{"name": name, "since": as_of - span} for name, span in WINDOWS.items()],
        "spend_kinds": sorted(SPEND_KINDS),
        "short_call_s": SHORT_CALL_S,
        "night_hours": list(NIGHT_HOURS),
    }
    windows = {name: Window() for name in WINDOWS}
    for row in runner.read(_WINDOW_TOTALS, parameters):
        windows[row["window"]] = Window(**{k: v for k, v in row.items() if k != "window"})
    return windows


def usage_windows(runner: QueryRunner, subscriber_id: str, as_of: datetime) -> UsageWindows:
    """The windows and the daily series of the 30 days ending at `as_of`."""
    since = as_of - WINDOWS["30d"]
    daily = [
        DailyUsage(
            row["day"].to_native(), int(row["count"]), float(row["spend"]), float(row["data_mb"])
        )
        for row in runner.read(
            _DAILY, {"subscriber_id": subscriber_id, "since": since, "as_of": as_of}
        )
    ]
    return UsageWindows(subscriber_id, as_of, window_totals(runner, subscriber_id, as_of), daily)
