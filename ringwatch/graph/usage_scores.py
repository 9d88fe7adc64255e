"""Usage/velocity scores: read each subscriber's evidence from the graph, score, write back.

The batch (`score_all_usage`) judges every day of the lookback against the 30 days before it and
keeps the worst evidence of each rule (`ringwatch.scoring.usage`). It reads, per batch of
subscribers:

1. the day buckets of the lookback and the 30 days before it (one index range per subscriber:
   spend, data, counts and call counts per day), and whether older buckets exist (the history);
2. devices and IPs first used in the lookback, a day or more after the subscriber's first one,
   with the transactions made from each within 24 h (relationship ``first_seen`` on
   ``USES_DEVICE`` / ``USES_IP``, then an index range on the subscriber's transactions);
3. raw transactions only for the days that need them: days with enough transactions for a burst
   or many destinations (a day bucket's count bounds both, so no other day can have them), and,
   for impossible travel, the days that already show takeover evidence (charges over the limit,
   the worst material spend spike, a new device, a new IP with spend from it), each with the
   last located transaction before it. Checking travel on every day would mean reading every
   transaction of every subscriber; the real-time path checks all of the last 24 h.

and writes ``usage_risk``, ``usage_reasons`` (JSON), ``usage_reason_codes``, ``usage_as_of`` and
``usage_scored_at`` onto each ``(:Subscriber)``. Days are UTC calendar days (the buckets'), so
"charges in 24 h" in the batch means in one calendar day; the day of ``as_of`` counts whole.

`usage_score_for` scores one subscriber in real time from its raw transactions of the last
31 days: the judged day is the 24 h up to ``as_of``, its baseline the thirty 24 h periods before.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, LiteralString

from ringwatch.config import ScoringConfig
from ringwatch.graph.db import QueryRunner
from ringwatch.ingest.prepare import NIGHT_HOURS, SHORT_CALL_S, SPEND_KINDS
from ringwatch.scoring import reasons as reason_codec
from ringwatch.scoring.usage import (
    BASELINE_DAYS,
    EPOCH,
    MIN_PATTERN_CALLS,
    NEW_IDENTIFIER_AFTER,
    SPEND_AFTER_NEW_IDENTIFIER,
    Burst,
    DailySeries,
    Located,
    Metric,
    NewIdentifier,
    RawDay,
    UsageFeatures,
    UsageScore,
    build_features,
    busiest_hour,
    busiest_window,
    charge_strength,
    day_number,
    day_start,
    fastest_hop,
    fastest_hop_ms,
    score_usage,
    with_raw_days,
    worst_baselines,
    zscore_strength,
)

DEFAULT_BATCH_SIZE = 1000
TRAVEL_LOOKBEHIND = timedelta(days=7)
"""How far before a judged day the last located transaction is looked for."""
TRAVEL_SPEND_STRENGTH = 0.1
"""A spend z-score at least this strong makes its day one where travel is checked."""
TRAVEL_NEW_IP_SPEND_SHARE = 0.2
"""Spend from a new IP (share of the daily limit) that makes its day one for travel."""

_DAY_MS = 86_400_000
_HOUR_MS = 3_600_000
_MS = timedelta(milliseconds=1)
_SPEND_KINDS = sorted(SPEND_KINDS)
_OUTGOING_KINDS = ["call", "sms"]

# The newest transaction time is the default "now" of a batch: simulated and backfilled
# histories lie in the past. The index on Transaction.ts answers this without a scan.
_NEWEST_TRANSACTION = """
MATCH (t:Transaction) WHERE t.ts IS NOT NULL
RETURN t.ts.epochMillis AS ts ORDER BY t.ts DESC LIMIT 1
"""

_ALL_SUBSCRIBERS = "MATCH (s:Subscriber) RETURN s.id AS id ORDER BY id"

# Day buckets of the lookback and the baseline before it. Spend and data come back for every
# day (the z-scores need the whole series); counts only for days that may hold a burst or many
# destinations, call counts only for days with enough calls for a pattern. The index on
# (subscriber_id, grain, start) is one range per subscriber and returns the days in order.
_SERIES = """
UNWIND $ids AS sid
MATCH (s:Subscriber {id: sid})
CALL (sid) {
  MATCH (b:UsageBucket)
  WHERE b.subscriber_id = sid AND b.grain = 'day'
    AND b.start >= datetime({epochMillis: $read_from})
    AND b.start <= datetime({epochMillis: $as_of})
  WITH b, b.start.epochSeconds / 86400 AS day, b.count AS count, coalesce(b.calls, 0) AS calls
  RETURN collect(day) AS days, collect(b.spend) AS spend, collect(b.data_mb) AS data_mb,
         collect(CASE WHEN day >= $first_day AND count >= $raw_count THEN [day, count] END)
           AS busy,
         collect(CASE WHEN day >= $first_day AND calls >= $pattern_calls
                      THEN [day, calls, b.short_calls, b.night_calls] END) AS call_days,
         sum(CASE WHEN day >= $first_day THEN count ELSE 0 END) AS transactions,
         sum(CASE WHEN day >= $first_day THEN calls ELSE 0 END) AS calls
}
RETURN sid, coalesce(s.created_at, s.first_seen).epochMillis AS account_start,
       EXISTS {
         MATCH (e:UsageBucket)
         WHERE e.subscriber_id = sid AND e.grain = 'day'
           AND e.start < datetime({epochMillis: $read_from})
       } AS older,
       days, spend, data_mb, busy, call_days, transactions, calls
"""

# Devices and IPs subscriber `sid` first used in the window, a grace period or more after its
# first one of the kind, with what was done from each within the following hours (up to as_of).
# One body for the batch statement below and the real-time evidence query; the statements are
# put together from these constants only (LiteralString), never from input.
_NEW_IDENTIFIERS_OF_SID: LiteralString = """
  MATCH (:Subscriber {id: sid})-[r:USES_DEVICE|USES_IP]->(i)
  WITH sid, type(r) AS rel, min(r.first_seen) AS earliest, collect([i, r.first_seen]) AS links
  UNWIND links AS link
  WITH sid, rel, earliest, link[0] AS i, link[1] AS first_seen
  WHERE first_seen >= datetime({epochMillis: $window_from})
    AND first_seen <= datetime({epochMillis: $as_of})
    AND first_seen >= earliest + duration({seconds: $grace_s})
  CALL (sid, i, first_seen) {
    MATCH (t:Transaction)
    WHERE t.subscriber_id = sid AND t.ts >= first_seen
      AND t.ts < first_seen + duration({seconds: $after_s})
      AND t.ts <= datetime({epochMillis: $as_of})
      AND EXISTS { (t)-[:ON_DEVICE|FROM_IP]->(i) }
    RETURN count(t) AS n,
           sum(CASE WHEN t.kind IN $spend_kinds THEN coalesce(t.amount, 0.0) ELSE 0.0 END)
             AS spend,
           max(t.ts).epochMillis AS last
  }
  RETURN rel, i.id AS id, first_seen.epochMillis AS first_seen,
         earliest.epochMillis AS earliest, n, spend, last
"""

_NEW_IDENTIFIERS: LiteralString = (
    """
UNWIND $ids AS sid
CALL (sid) {"""
    + _NEW_IDENTIFIERS_OF_SID
    + """}
RETURN sid, rel, id, first_seen, earliest, n, spend, last
ORDER BY sid, first_seen, id
"""
)

# Raw transactions of the days that need them, each part only where asked for (an UNWIND of an
# empty list skips the index seek; a WHERE on the flag would be applied after it): timestamps
# for a burst (from an hour before the day, read from the index alone), distinct outgoing call
# and text destinations, and located transactions with the last located one before the day (the
# index returns it first when asked in its own order).
_RAW_DAYS = """
UNWIND $spans AS span
WITH span, datetime({epochMillis: span.from}) AS day_from,
     datetime({epochMillis: span.from + $day_ms}) AS day_to
CALL (span, day_from, day_to) {
  UNWIND CASE WHEN span.burst THEN [1] ELSE [] END AS wanted
  MATCH (t:Transaction)
  WHERE t.subscriber_id = span.sid
    AND t.ts >= day_from - duration({seconds: $lead_s}) AND t.ts < day_to
  RETURN collect(t.ts.epochMillis) AS ts
}
CALL (span, day_from, day_to) {
  UNWIND CASE WHEN span.destinations THEN [1] ELSE [] END AS wanted
  MATCH (t:Transaction)-[:TO]->(c)
  WHERE t.subscriber_id = span.sid AND t.ts >= day_from AND t.ts < day_to
    AND t.kind IN $outgoing_kinds AND coalesce(t.direction, 'outgoing') = 'outgoing'
  RETURN count(DISTINCT c) AS destinations
}
CALL (span, day_from, day_to) {
  UNWIND CASE WHEN span.travel THEN [1] ELSE [] END AS wanted
  MATCH (t:Transaction)
  WHERE t.subscriber_id = span.sid AND t.ts >= day_from AND t.ts < day_to
    AND t.lat IS NOT NULL AND t.lon IS NOT NULL
  RETURN collect([t.ts.epochMillis, t.lat, t.lon, t.country]) AS located
}
CALL (span, day_from) {
  UNWIND CASE WHEN span.travel THEN [1] ELSE [] END AS wanted
  CALL (span, day_from) {
    MATCH (p:Transaction)
    WHERE p.subscriber_id = span.sid AND p.ts < day_from
      AND p.ts >= day_from - duration({seconds: $lookbehind_s})
      AND p.lat IS NOT NULL AND p.lon IS NOT NULL
    WITH p ORDER BY p.subscriber_id DESC, p.ts DESC LIMIT 1
    RETURN [p.ts.epochMillis, p.lat, p.lon, p.country] AS point
  }
  RETURN collect(point) AS before
}
RETURN span.sid AS sid, span.from AS day_from, ts, destinations, located + before AS located
"""

_WRITE_SCORES = """
UNWIND $rows AS row
MATCH (s:Subscriber {id: row.id})
SET s.usage_risk = row.risk,
    s.usage_reasons = row.reasons,
    s.usage_reason_codes = row.codes,
    s.usage_as_of = datetime({epochMillis: $as_of}),
    s.usage_scored_at = datetime({epochMillis: $scored_at})
"""

# One subscriber's transactions of the last 31 days: everything real-time scoring needs.
# Everything one real-time score needs, in one round trip: when the account and its activity
# started; per-day totals over the baseline, summed by the server (a row a day, not a row a
# transaction); and the transactions themselves only where the rules look at each one (bursts,
# destinations, travel): the last day, plus the travel look-behind before it.
_SUBSCRIBER_EVIDENCE: LiteralString = (
    """
MATCH (s:Subscriber {id: $sid})
OPTIONAL CALL (s) {
  MATCH (t:Transaction) WHERE t.subscriber_id = s.id AND t.ts IS NOT NULL
  RETURN t.ts AS first ORDER BY t.ts LIMIT 1
}
CALL (s) {
  OPTIONAL MATCH (t:Transaction)
  WHERE t.subscriber_id = s.id
    AND t.ts > datetime({epochMillis: $since}) AND t.ts <= datetime({epochMillis: $as_of})
  WITH t, t.ts.epochMillis AS ts, t.kind = 'call' AS is_call
  WITH -(($as_of - ts) / $day_ms) AS period,
       count(t) AS count,
       sum(CASE WHEN t.kind IN $spend_kinds THEN coalesce(t.amount, 0.0) ELSE 0.0 END) AS spend,
       sum(coalesce(t.data_mb, 0.0)) AS data_mb,
       sum(CASE WHEN is_call THEN 1 ELSE 0 END) AS calls,
       sum(CASE WHEN is_call AND coalesce(t.duration_s, 0.0) < $short_call_s
                THEN 1 ELSE 0 END) AS short_calls,
       sum(CASE WHEN is_call AND (ts % $day_ms) / $hour_ms IN $night_hours
                THEN 1 ELSE 0 END) AS night_calls
  WHERE period IS NOT NULL
  RETURN collect([period, count, spend, data_mb, calls, short_calls, night_calls]) AS days
}
CALL (s) {
  OPTIONAL MATCH (t:Transaction)
  WHERE t.subscriber_id = s.id
    AND t.ts > datetime({epochMillis: $recent_since})
    AND t.ts <= datetime({epochMillis: $as_of})
  OPTIONAL MATCH (t)-[:TO]->(c)
  WITH t, c ORDER BY t.ts
  RETURN collect(CASE WHEN t IS NOT NULL THEN [t.ts.epochMillis, t.kind, t.direction, t.lat,
                                               t.lon, t.country, c.id] END) AS recent
}
CALL (s) {
  WITH s.id AS sid
  CALL (sid) {"""
    + _NEW_IDENTIFIERS_OF_SID
    + """}
  WITH * ORDER BY first_seen, id
  RETURN collect({sid: sid, rel: rel, id: id, first_seen: first_seen, earliest: earliest,
                  n: n, spend: spend, last: last}) AS new_identifiers
}
RETURN coalesce(s.created_at, s.first_seen).epochMillis AS account_start,
       first.epochMillis AS first_activity, days, recent, new_identifiers
"""
)


def _ms(value: datetime) -> int:
    return (value.astimezone(UTC) - EPOCH) // timedelta(milliseconds=1)


def _from_ms(value: int) -> datetime:
    return EPOCH + timedelta(milliseconds=value)


@dataclass
class UsageScoringSummary:
    """What a batch run did."""

    as_of: datetime
    lookback_days: int
    subscribers: int = 0
    flagged: int = 0  # risk above zero
    seconds: float = 0.0
    raw_days: int = 0  # subscriber-days whose raw transactions were read
    codes: Counter[str] = field(default_factory=Counter)

    @property
    def per_second(self) -> float:
        return self.subscribers / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class _Window:
    as_of: datetime
    first_day: int  # first judged day number
    last_day: int

    @property
    def read_from(self) -> datetime:
        return day_start(self.first_day - BASELINE_DAYS)

    @property
    def window_from(self) -> datetime:
        return day_start(self.first_day)


Row = Mapping[str, Any]


def newest_transaction_time(runner: QueryRunner) -> datetime | None:
    rows = runner.read(_NEWEST_TRANSACTION)
    return _from_ms(int(rows[0]["ts"])) if rows else None


def _new_identifier_params(window_from: datetime, as_of: datetime) -> dict[str, Any]:
    return {
        "window_from": _ms(window_from),
        "as_of": _ms(as_of),
        "grace_s": int(NEW_IDENTIFIER_AFTER.total_seconds()),
        "after_s": int(SPEND_AFTER_NEW_IDENTIFIER.total_seconds()),
        "spend_kinds": _SPEND_KINDS,
    }


def _new_identifiers(
    runner: QueryRunner, ids: Sequence[str], window_from: datetime, as_of: datetime
) -> dict[str, tuple[list[NewIdentifier], list[NewIdentifier]]]:
    params = {"ids": list(ids), **_new_identifier_params(window_from, as_of)}
    return _parse_new_identifiers(runner.read(_NEW_IDENTIFIERS, params))


def _parse_new_identifiers(
    rows: Iterable[Mapping[str, Any]],
) -> dict[str, tuple[list[NewIdentifier], list[NewIdentifier]]]:
    found: dict[str, tuple[list[NewIdentifier], list[NewIdentifier]]] = defaultdict(
        lambda: ([], [])
    )
    for row in rows:
        first_seen = int(row["first_seen"])
        device = row["rel"] == "USES_DEVICE"
        new = NewIdentifier(
            kind="device" if device else "ip",
            id=str(row["id"]),
            first_seen=_from_ms(first_seen),
            days_before=(first_seen - int(row["earliest"])) / _DAY_MS,
            transactions_after=int(row["n"]),
            spend_after=float(row["spend"] or 0.0),
            last_after=None if row["last"] is None else _from_ms(int(row["last"])),
        )
        found[str(row["sid"])][0 if device else 1].append(new)
    return found


def _raw_day(start: datetime, timestamps: Sequence[int], destinations: int, located: Any) -> RawDay:
    busiest = busiest_window(sorted(timestamps), _HOUR_MS)
    return RawDay(
        start=start,
        burst=None if busiest is None else Burst(_from_ms(busiest[0]), busiest[1]),
        destinations=int(destinations),
        hop=fastest_hop_ms(located),
    )


def _series(
    days: list[int], spend: list[float], data_mb: list[float], call_days: list[list[int]]
) -> DailySeries:
    if days != sorted(days):  # not in index order (it always is; cheap to make sure)
        ordered = sorted(zip(days, spend, data_mb, strict=True))
        days = [day for day, _, _ in ordered]
        spend = [value for _, value, _ in ordered]
        data_mb = [value for _, _, value in ordered]
    return DailySeries(days, spend, data_mb, call_days)


@dataclass
class _RawNeeds:
    """What the raw transactions of one judged day are read for."""

    burst: bool = False
    destinations: bool = False
    travel: bool = False


def _candidate_days(
    features: UsageFeatures, busy: Sequence[Sequence[int]], config: ScoringConfig
) -> dict[int, _RawNeeds]:
    """Judged days whose raw transactions are read, and what for.

    A burst or many destinations need at least as many transactions in the day as their
    threshold (`busy` holds the days with enough), so other days are never read for them.
    Travel is checked where takeover evidence stands out already: charges over the limit, a
    material spend spike, a new device, or a new IP with spend from it.
    """
    days: dict[int, _RawNeeds] = defaultdict(_RawNeeds)
    burst_at = config.burst_transactions_per_hour
    for day, count in busy:
        needs = days[day]
        needs.burst = count >= burst_at
        needs.destinations = count >= config.distinct_destinations_per_day
    travel: list[datetime] = []
    if features.charge is not None and charge_strength(features.charge.spend, config):
        travel.append(features.charge.start)
    spike = features.spend_baseline
    if spike is not None and zscore_strength(spike, config) >= TRAVEL_SPEND_STRENGTH:
        travel.append(spike.start)
    travel.extend(new.first_seen for new in features.new_devices)
    travel.extend(
        new.first_seen
        for new in features.new_ips
        if new.spend_after >= TRAVEL_NEW_IP_SPEND_SHARE * config.daily_charge_limit
    )
    for when in travel:
        days[day_number(when)].travel = True
    return days


def _read_raw_days(
    runner: QueryRunner, wanted: Mapping[str, Mapping[int, _RawNeeds]]
) -> dict[str, list[RawDay]]:
    spans = [
        {
            "sid": sid,
            "from": day * _DAY_MS,
            "burst": needs.burst,
            "destinations": needs.destinations,
            "travel": needs.travel,
        }
        for sid, days in wanted.items()
        for day, needs in sorted(days.items())
    ]
    found: dict[str, list[RawDay]] = defaultdict(list)
    if not spans:
        return found
    rows = runner.read(
        _RAW_DAYS,
        {
            "spans": spans,
            "day_ms": _DAY_MS,
            "lead_s": _HOUR_MS // 1000,
            "lookbehind_s": int(TRAVEL_LOOKBEHIND.total_seconds()),
            "outgoing_kinds": _OUTGOING_KINDS,
        },
    )
    for row in rows:
        found[str(row["sid"])].append(
            _raw_day(
                _from_ms(int(row["day_from"])),
                row["ts"] or [],
                row["destinations"] or 0,
                row["located"] or [],
            )
        )
    return found


def _score_batch(
    runner: QueryRunner, ids: Sequence[str], window: _Window, config: ScoringConfig
) -> tuple[list[UsageScore], int]:
    rows = runner.read(
        _SERIES,
        {
            "ids": list(ids),
            "read_from": _ms(window.read_from),
            "as_of": _ms(window.as_of),
            "first_day": window.first_day,
            "raw_count": min(
                config.burst_transactions_per_hour, config.distinct_destinations_per_day
            ),
            "pattern_calls": MIN_PATTERN_CALLS,
        },
    )
    new = _new_identifiers(runner, ids, window.window_from, window.as_of)
    parsed = []
    for row in rows:
        # Positional: the columns of _SERIES in order (a record's keyed access costs more).
        sid, account_start, older, days, spend, data_mb, busy, call_days, transactions, calls = (
            row.values()
        )
        series = _series(days, spend, data_mb, call_days)
        if older:
            history_start: int | None = window.first_day - BASELINE_DAYS
        else:
            history_start = series.days[0] if series.days else None
        parsed.append((str(sid), series, history_start, account_start, transactions, calls, busy))
    histories = [history_start for _, _, history_start, *_ in parsed]
    spikes = {
        metric: worst_baselines(
            metric,
            columns,
            histories,
            first_day=window.first_day,
            last_day=window.last_day,
            config=config,
        )
        for metric, columns in (
            (Metric.SPEND, [(series.days, series.spend) for _, series, *_ in parsed]),
            (Metric.DATA, [(series.days, series.data_mb) for _, series, *_ in parsed]),
        )
    }
    features: dict[str, UsageFeatures] = {}
    wanted: dict[str, dict[int, _RawNeeds]] = {}
    for index, (sid, series, history_start, account_start, transactions, calls, busy) in enumerate(
        parsed
    ):
        devices, ips = new.get(sid, ([], []))
        features[sid] = found = build_features(
            sid,
            window.as_of,
            series,
            config,
            first_day=window.first_day,
            last_day=window.last_day,
            history_start=history_start,
            account_start=None if account_start is None else _from_ms(int(account_start)),
            transactions=int(transactions),
            calls=int(calls),
            new_devices=devices,
            new_ips=ips,
            baselines=(spikes[Metric.SPEND][index], spikes[Metric.DATA][index]),
        )
        candidates = _candidate_days(found, busy, config)
        if candidates:
            wanted[sid] = candidates
    raw = _read_raw_days(runner, wanted)
    scores = []
    for sid, found in features.items():
        if sid in raw:
            found = with_raw_days(found, raw[sid])
        scores.append(score_usage(found, config))
    return scores, sum(len(days) for days in wanted.values())


def _write(
    runner: QueryRunner, scores: Sequence[UsageScore], as_of: datetime, scored_at: datetime
) -> None:
    runner.write(
        _WRITE_SCORES,
        {
            "rows": [
                {
                    "id": score.subscriber_id,
                    "risk": score.risk,
                    "reasons": reason_codec.dumps(score.reasons),
                    "codes": reason_codec.codes(score.reasons),
                }
                for score in scores
            ],
            "as_of": _ms(as_of),
            "scored_at": _ms(scored_at),
        },
    )


def _batches(ids: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def score_all_usage(
    runner: QueryRunner,
    config: ScoringConfig,
    *,
    as_of: datetime | None = None,
    lookback_days: int = 30,
    subscriber_ids: Sequence[str] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int = 2,
) -> UsageScoringSummary:
    """Score every subscriber (or `subscriber_ids`) as of `as_of` and store the scores.

    `as_of=None` means the newest transaction in the graph (now, when there is none). Every day
    of the last `lookback_days` (the day of `as_of` included) is judged against the 30 days
    before it, and the worst evidence of each rule wins. Batches of `batch_size` subscribers run
    on `workers` threads, so reading one batch overlaps scoring another.
    """
    if lookback_days < 1:
        raise ValueError("lookback_days must be at least 1")
    began = time.monotonic()
    if as_of is None:
        as_of = newest_transaction_time(runner) or datetime.now(UTC)
    as_of = as_of.astimezone(UTC)
    last_day = day_number(as_of)
    window = _Window(as_of, last_day - lookback_days + 1, last_day)
    ids = (
        list(subscriber_ids)
        if subscriber_ids is not None
        else [str(row["id"]) for row in runner.read(_ALL_SUBSCRIBERS)]
    )
    summary = UsageScoringSummary(as_of=as_of, lookback_days=lookback_days)
    scored_at = datetime.now(UTC)

    def run(batch: Sequence[str]) -> tuple[list[UsageScore], int]:
        scores, raw_days = _score_batch(runner, batch, window, config)
        _write(runner, scores, as_of, scored_at)
        return scores, raw_days

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for scores, raw_days in pool.map(run, _batches(ids, batch_size)):
            summary.subscribers += len(scores)
            summary.raw_days += raw_days
            for score in scores:
                if score.risk > 0:
                    summary.flagged += 1
                summary.codes.update(reason_codec.codes(score.reasons))
    summary.seconds = time.monotonic() - began
    return summary


# ------------------------------------------------------------------------------- real time


def _period(as_of_ms: int, ts_ms: int) -> int:
    """0 for the 24 h up to as_of, -1 for the 24 h before, and so on."""
    return -((as_of_ms - ts_ms) // _DAY_MS)


def usage_features_for(
    runner: QueryRunner, subscriber_id: str, config: ScoringConfig, as_of: datetime
) -> UsageFeatures | None:
    """The evidence of one subscriber for the 24 h up to `as_of`; None if it is unknown."""
    as_of = as_of.astimezone(UTC)
    as_of_ms = _ms(as_of)
    window_start_ms = as_of_ms - _DAY_MS
    window_start = as_of - timedelta(days=1)
    found = runner.read(
        _SUBSCRIBER_EVIDENCE,
        {
            **_new_identifier_params(window_start, as_of),
            "sid": subscriber_id,
            "since": as_of_ms - (BASELINE_DAYS + 1) * _DAY_MS,
            # The travel rule looks back to the last located transaction at most this far.
            "recent_since": window_start_ms - TRAVEL_LOOKBEHIND // _MS - 1,
            "day_ms": _DAY_MS,
            "hour_ms": _HOUR_MS,
            "short_call_s": SHORT_CALL_S,
            "night_hours": list(NIGHT_HOURS),
        },
    )
    if not found:
        return None
    evidence = found[0]
    # period -> [transactions, spend, data MB, calls, short calls, night calls]
    totals: dict[int, list[float]] = {int(day[0]): list(day[1:]) for day in evidence["days"]}
    burst_ts: list[int] = []
    destinations: set[str] = set()
    located: list[Located] = []
    last_before: Located | None = None
    for ts, kind, direction, lat, lon, country, counterparty in evidence["recent"]:
        if ts > window_start_ms - _HOUR_MS:
            burst_ts.append(ts)
        point = (
            None
            if lat is None or lon is None
            else Located(_from_ms(ts), float(lat), float(lon), country)
        )
        if ts > window_start_ms:
            if (
                kind in _OUTGOING_KINDS
                and (direction or "outgoing") == "outgoing"
                and counterparty is not None
            ):
                destinations.add(str(counterparty))
            if point is not None:
                located.append(point)
        elif point is not None:
            last_before = point
    periods = sorted(totals)
    series = DailySeries(
        days=periods,
        spend=[totals[p][1] for p in periods],
        data_mb=[totals[p][2] for p in periods],
        call_days=[[p, int(totals[p][3]), int(totals[p][4]), int(totals[p][5])] for p in periods],
    )
    first_activity = evidence["first_activity"]
    history_start = (
        None
        if first_activity is None or int(first_activity) > as_of_ms
        else max(_period(as_of_ms, int(first_activity)), -BASELINE_DAYS - 1)
    )

    def start_of(period: int) -> datetime:
        return window_start + timedelta(days=period)

    devices, ips = _parse_new_identifiers(evidence["new_identifiers"]).get(subscriber_id, ([], []))
    if last_before is not None and (last_before.ts >= window_start - TRAVEL_LOOKBEHIND and located):
        located.insert(0, last_before)
    raw = RawDay(
        start=window_start,
        burst=busiest_hour(_from_ms(ts) for ts in burst_ts),
        destinations=len(destinations),
        hop=fastest_hop(located),
    )
    account_start = evidence["account_start"]
    return build_features(
        subscriber_id,
        as_of,
        series,
        config,
        first_day=0,
        last_day=0,
        history_start=history_start,
        start_of=start_of,
        account_start=None if account_start is None else _from_ms(int(account_start)),
        transactions=int(totals[0][0]) if 0 in totals else 0,
        calls=int(totals[0][3]) if 0 in totals else 0,
        raw_days=[raw],
        new_devices=devices,
        new_ips=ips,
    )


def usage_score_for(
    runner: QueryRunner, subscriber_id: str, config: ScoringConfig, as_of: datetime
) -> UsageScore:
    """Real-time usage score of one subscriber for the 24 h up to `as_of` (not stored).

    An unknown subscriber scores 0 with no reasons.
    """
    features = usage_features_for(runner, subscriber_id, config, as_of)
    if features is None:
        return score_usage(UsageFeatures(subscriber_id, as_of), config)
    return score_usage(features, config)


__all__ = [
    "UsageScoringSummary",
    "newest_transaction_time",
    "score_all_usage",
    "usage_features_for",
    "usage_score_for",
]
