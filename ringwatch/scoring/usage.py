"""Usage/velocity score: how far a subscriber's own usage departs from what is normal.

Everything here is pure (no Neo4j): `ringwatch.graph.usage_scores` reads the evidence from the
graph and calls in. The evidence of one subscriber is a `UsageFeatures`: for every rule, the
*worst* observation in the judged period (for the batch, every day of the lookback, each judged
against the 30 days before it). Rules, with thresholds from `ScoringConfig`:

=============================  ==================================================================
code                           fires when
=============================  ==================================================================
``usage.daily_charge_limit``   charges in one day are over ``daily_charge_limit`` (strictly)
``usage.zscore_spend``         the day's spend is ``zscore_threshold`` SD or more above the
``usage.zscore_data``          subscriber's own daily mean over the 30 days before it (same for
                               data volume); needs ``zscore_min_history_days`` days of history
``usage.burst``                ``burst_transactions_per_hour`` or more transactions in 1 h
``usage.new_device``           a device (IP) first used a day or more after the subscriber's
``usage.new_ip``               first one; stronger with the spend made from it within 24 h
``usage.impossible_travel``    two consecutive located transactions at least 100 km apart, faster
                               than ``impossible_travel_kmh``
``usage.short_calls``          on a day with 20 calls or more, the share under 10 s is at least
                               ``short_call_ratio``
``usage.night_calls``          same volume, share at night (00:00-05:59 UTC) at least
                               ``night_call_ratio``
``usage.many_destinations``    ``distinct_destinations_per_day`` or more distinct numbers called
                               or texted (outgoing) in one day
=============================  ==================================================================

A z-score is ``(value - mean) / sd`` with the baseline's population standard deviation (sd) over
the days since the subscriber's first usage (days without usage count as zero), at most 30. A
flat baseline would make any change infinitely many sd, so sd is never taken below 10 % of the
mean nor below a floor (10 % of the daily charge limit for spend, 100 MB for data); and a z-score
on a small amount weighs less than one on a large amount (see the ``*_MATERIAL_*`` constants).

**Combination.** Each rule gives a *strength* in [0, 1]: zero when it does not fire, otherwise a
base that grows with how far past its threshold the evidence is (the ``*_strength`` functions):

- strong alone: charges over the limit 0.6-0.95 (full at 3x the limit), impossible travel
  0.5-0.8 (full at 4x the speed), many destinations 0.35-0.7, a burst 0.3-0.7;
- strong with spend: a new device 0.1, up to 0.6 with spend from it of the daily limit within
  24 h; a new IP 0.03, up to 0.4;
- weak alone (legitimate usage crosses them now and then): short calls up to 0.55 and night
  calls up to 0.45 (scaled down below 40 calls a day), a spend z-score up to 0.5, a data
  z-score up to 0.4 (both scaled by materiality).

Strengths are combined by noisy-OR, ``risk = 1 - Π(1 - strength)``: any one rule can make the
risk high, independent rules reinforce each other, and the risk stays in [0, 1] and never falls
when evidence grows. Each fired rule becomes a `Reason` whose weight is its strength and whose
text names the evidence.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from itertools import accumulate, chain, pairwise
from typing import Any, TypeVar

import numpy as np

from ringwatch.config import ScoringConfig
from ringwatch.ingest.prepare import NIGHT_HOURS, SHORT_CALL_S
from ringwatch.scoring.reasons import Reason, ranked

BASELINE_DAYS = 30
"""Days before a judged day that make its baseline."""

NEW_IDENTIFIER_AFTER = timedelta(days=1)
"""An identifier first used this long after the subscriber's first one of its kind is new."""

SPEND_AFTER_NEW_IDENTIFIER = timedelta(hours=24)
"""How long after a new identifier's first use its spend counts as evidence."""

MIN_PATTERN_CALLS = 20
"""Calls in a day before the short-call and night-call ratios mean anything."""

MIN_TRAVEL_KM = 100.0
"""Shorter hops are location noise (cell towers, GPS), whatever their speed."""

MIN_TRAVEL_HOURS = 1 / 60
"""Hops closer in time than a minute are timed as a minute (no division by zero)."""

# A standard deviation is never taken below these (a flat baseline is not infinitely sure).
RELATIVE_STD_FLOOR = 0.1  # of the baseline mean
SPEND_STD_FLOOR_SHARE = 0.1  # of the daily charge limit: $50 by default
DATA_STD_FLOOR_MB = 100.0

# How much a z-score counts grows with the size of the day's value: a fifth below the first
# bound, fully from the second (a 3 sd day of $30 or 200 MB is noise, not risk).
SPEND_MATERIAL_SHARES = (0.2, 1.0)  # of the daily charge limit
DATA_MATERIAL_MB = (1024.0, 4096.0)

EARTH_RADIUS_KM = 6371.0088

T = TypeVar("T")


class Component(StrEnum):
    """The named parts of the usage score; the reason code is ``usage.<name>``."""

    DAILY_CHARGE_LIMIT = "daily_charge_limit"
    ZSCORE_SPEND = "zscore_spend"
    ZSCORE_DATA = "zscore_data"
    BURST = "burst"
    NEW_DEVICE = "new_device"
    NEW_IP = "new_ip"
    IMPOSSIBLE_TRAVEL = "impossible_travel"
    SHORT_CALLS = "short_calls"
    NIGHT_CALLS = "night_calls"
    MANY_DESTINATIONS = "many_destinations"

    @property
    def code(self) -> str:
        return f"usage.{self.value}"


class Metric(StrEnum):
    SPEND = "spend"
    DATA = "data"


# ------------------------------------------------------------------------------------ evidence


@dataclass(frozen=True, slots=True)
class DayCharge:
    """Charges of one day (a calendar day in the batch, the last 24 h in real time)."""

    start: datetime
    spend: float


@dataclass(frozen=True, slots=True)
class Baseline:
    """One day's value against the subscriber's own daily values in the days before it."""

    metric: Metric
    start: datetime
    value: float
    mean: float
    std: float
    days: int


@dataclass(frozen=True, slots=True)
class Burst:
    start: datetime
    count: int


@dataclass(frozen=True, slots=True)
class NewIdentifier:
    """A device or IP first used after the subscriber had used others of its kind."""

    kind: str  # "device" or "ip"
    id: str
    first_seen: datetime
    days_before: float  # how long the subscriber had been seen with others of the kind
    transactions_after: int = 0  # from this identifier within SPEND_AFTER_NEW_IDENTIFIER
    spend_after: float = 0.0
    last_after: datetime | None = None


@dataclass(frozen=True, slots=True)
class Hop:
    """Two consecutive located transactions."""

    start: datetime
    end: datetime
    distance_km: float
    from_country: str | None = None
    to_country: str | None = None

    @property
    def hours(self) -> float:
        return max((self.end - self.start).total_seconds() / 3600, MIN_TRAVEL_HOURS)

    @property
    def speed_kmh(self) -> float:
        return self.distance_km / self.hours


@dataclass(frozen=True, slots=True)
class CallDay:
    start: datetime
    calls: int
    short_calls: int = 0
    night_calls: int = 0


@dataclass(frozen=True, slots=True)
class Destinations:
    start: datetime
    count: int


@dataclass(frozen=True)
class UsageFeatures:
    """The worst evidence of each rule for one subscriber, and volume totals of the period."""

    subscriber_id: str
    as_of: datetime
    lookback_days: int = 1
    account_age_days: float | None = None
    history_days: int = 0  # days since the first usage, up to as_of
    active_days: int = 0  # days with usage in the judged period
    transactions: int = 0
    spend: float = 0.0
    data_mb: float = 0.0
    calls: int = 0
    charge: DayCharge | None = None
    spend_baseline: Baseline | None = None
    data_baseline: Baseline | None = None
    burst: Burst | None = None
    new_devices: tuple[NewIdentifier, ...] = ()
    new_ips: tuple[NewIdentifier, ...] = ()
    travel: Hop | None = None
    short_calls: CallDay | None = None
    night_calls: CallDay | None = None
    destinations: Destinations | None = None


@dataclass(frozen=True)
class UsageScore:
    subscriber_id: str
    risk: float
    components: dict[str, float]
    reasons: list[Reason] = field(default_factory=list)


# ----------------------------------------------------------------------------- rule strengths


def _ramp(value: float, low: float, high: float) -> float:
    """0 at `low`, 1 at `high`, linear between, clamped."""
    if high <= low:
        return 1.0 if value >= high else 0.0
    return min(1.0, max(0.0, (value - low) / (high - low)))


def charge_strength(spend: float, config: ScoringConfig) -> float:
    limit = config.daily_charge_limit
    if not spend > limit:
        return 0.0
    return 0.6 + 0.35 * _ramp(spend / limit, 1.0, 3.0)


def std_floor(metric: Metric, mean: float, config: ScoringConfig) -> float:
    absolute = (
        SPEND_STD_FLOOR_SHARE * config.daily_charge_limit
        if metric is Metric.SPEND
        else DATA_STD_FLOOR_MB
    )
    return max(absolute, RELATIVE_STD_FLOOR * abs(mean))


def zscore(baseline: Baseline, config: ScoringConfig) -> float:
    """The z-score with its standard deviation floored (see the module documentation)."""
    sigma = max(baseline.std, std_floor(baseline.metric, baseline.mean, config))
    return (baseline.value - baseline.mean) / sigma


def zscore_strength(baseline: Baseline | None, config: ScoringConfig) -> float:
    if baseline is None or baseline.days < config.zscore_min_history_days:
        return 0.0
    threshold = config.zscore_threshold
    z = zscore(baseline, config)
    if not z >= threshold:
        return 0.0
    grows = _ramp(z, threshold, 4 * threshold)
    if baseline.metric is Metric.SPEND:
        low, high = (share * config.daily_charge_limit for share in SPEND_MATERIAL_SHARES)
        return (0.15 + 0.35 * grows) * (0.2 + 0.8 * _ramp(baseline.value, low, high))
    low, high = DATA_MATERIAL_MB
    return (0.05 + 0.35 * grows) * (0.2 + 0.8 * _ramp(baseline.value, low, high))


def burst_strength(burst: Burst | None, config: ScoringConfig) -> float:
    threshold = config.burst_transactions_per_hour
    if burst is None or burst.count < threshold:
        return 0.0
    return 0.3 + 0.4 * _ramp(burst.count, threshold, 3 * threshold)


def new_identifier_strength(new: NewIdentifier | None, config: ScoringConfig) -> float:
    if new is None:
        return 0.0
    spent = min(1.0, new.spend_after / config.daily_charge_limit)
    active = min(1.0, new.transactions_after / 10)
    if new.kind == "device":
        return 0.1 + 0.05 * active + 0.45 * spent
    return 0.03 + 0.02 * active + 0.35 * spent


def travel_strength(hop: Hop | None, config: ScoringConfig) -> float:
    limit = config.impossible_travel_kmh
    if hop is None or hop.distance_km < MIN_TRAVEL_KM or not hop.speed_kmh > limit:
        return 0.0
    return 0.5 + 0.3 * _ramp(hop.speed_kmh, limit, 4 * limit)


def _volume(calls: int) -> float:
    return min(1.0, calls / (2 * MIN_PATTERN_CALLS))


def short_calls_strength(day: CallDay | None, config: ScoringConfig) -> float:
    if day is None or day.calls < MIN_PATTERN_CALLS:
        return 0.0
    ratio, threshold = day.short_calls / day.calls, config.short_call_ratio
    if not ratio >= threshold:
        return 0.0
    return (0.25 + 0.3 * _ramp(ratio, threshold, 1.0)) * _volume(day.calls)


def night_calls_strength(day: CallDay | None, config: ScoringConfig) -> float:
    if day is None or day.calls < MIN_PATTERN_CALLS:
        return 0.0
    ratio, threshold = day.night_calls / day.calls, config.night_call_ratio
    if not ratio >= threshold:
        return 0.0
    return (0.2 + 0.25 * _ramp(ratio, threshold, 1.0)) * _volume(day.calls)


def destinations_strength(day: Destinations | None, config: ScoringConfig) -> float:
    threshold = config.distinct_destinations_per_day
    if day is None or day.count < threshold:
        return 0.0
    return 0.35 + 0.35 * _ramp(day.count, threshold, 3 * threshold)


# ------------------------------------------------------------------------------------- score


def _money(amount: float) -> str:
    if abs(amount - round(amount)) < 0.005:
        return f"${round(amount):,}"
    return f"${amount:,.2f}"


def _day(value: datetime) -> str:
    """A judged day: a calendar day (batch) or the 24 h from a moment (real time)."""
    value = value.astimezone(UTC)
    if value.hour == value.minute == value.second == value.microsecond == 0:
        return f"on {value:%Y-%m-%d}"
    return f"in the 24 h from {_minute(value)}"


def _in_24h(value: datetime) -> str:
    when = _day(value)
    return f"in 24 h {when}" if when.startswith("on ") else when


def _minute(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _short_id(identifier: str) -> str:
    return identifier if len(identifier) <= 8 else f"{identifier[:6]}…"


def _hours(value: float) -> str:
    return f"{value:.1f} h" if value < 10 else f"{value:.0f} h"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _percent(share: float) -> str:
    return f"{share:.0%}"


def _worst(
    identifiers: Iterable[NewIdentifier], config: ScoringConfig
) -> tuple[NewIdentifier | None, float]:
    best: NewIdentifier | None = None
    strength = 0.0
    for candidate in identifiers:
        value = new_identifier_strength(candidate, config)
        if best is None or value > strength:
            best, strength = candidate, value
    return best, strength


def _new_identifier_text(new: NewIdentifier, label: str) -> str:
    history = f"after {new.days_before:.0f} days on other {label}s"
    seen = f"{label} {_short_id(new.id)} first seen {_minute(new.first_seen)}"
    if new.transactions_after and new.last_after is not None:
        span = (new.last_after - new.first_seen).total_seconds() / 3600
        spent = f" ({_money(new.spend_after)})" if new.spend_after > 0 else ""
        return (
            f"{_count(new.transactions_after, 'transaction')}{spent} in {_hours(span)} "
            f"from new {seen}, "
            f"{history}"
        )
    return f"new {seen}, {history}"


def score_usage(features: UsageFeatures, config: ScoringConfig) -> UsageScore:
    """The usage risk of one subscriber, its components and the reasons behind it."""
    components = {component.value: 0.0 for component in Component}
    reasons: list[Reason] = []

    def fired(component: Component, strength: float, text: str, **evidence: Any) -> None:
        components[component.value] = strength
        reasons.append(Reason(component.code, text, round(strength, 4), evidence))

    limit = config.daily_charge_limit
    if (charge := features.charge) is not None and (s := charge_strength(charge.spend, config)):
        fired(
            Component.DAILY_CHARGE_LIMIT,
            s,
            f"charges {_money(charge.spend)} {_in_24h(charge.start)} (limit {_money(limit)})",
            spend=round(charge.spend, 2),
            limit=limit,
            day=charge.start.isoformat(),
        )
    for baseline, component, what in (
        (features.spend_baseline, Component.ZSCORE_SPEND, "spend"),
        (features.data_baseline, Component.ZSCORE_DATA, "data usage"),
    ):
        if baseline is None or not (s := zscore_strength(baseline, config)):
            continue
        z = zscore(baseline, config)
        if baseline.metric is Metric.SPEND:
            amounts = f"{_money(baseline.value)} vs a mean of {_money(baseline.mean)}"
        else:
            amounts = f"{baseline.value:,.0f} MB vs a mean of {baseline.mean:,.0f} MB"
        fired(
            component,
            s,
            f"{what} {z:.1f}σ above its {BASELINE_DAYS}-day baseline {_day(baseline.start)} "  # noqa: RUF001
            f"({amounts} over {baseline.days} days)",
            z=round(z, 4),
            value=round(baseline.value, 4),
            mean=round(baseline.mean, 4),
            std=round(baseline.std, 4),
            days=baseline.days,
            day=baseline.start.isoformat(),
        )
    if (burst := features.burst) is not None and (s := burst_strength(burst, config)):
        fired(
            Component.BURST,
            s,
            f"{burst.count} transactions in 1 h from {_minute(burst.start)} "
            f"(threshold {config.burst_transactions_per_hour})",
            count=burst.count,
            limit=config.burst_transactions_per_hour,
            start=burst.start.isoformat(),
        )
    for identifiers, component, label in (
        (features.new_devices, Component.NEW_DEVICE, "device"),
        (features.new_ips, Component.NEW_IP, "IP"),
    ):
        new, s = _worst(identifiers, config)
        if new is not None and s:
            fired(
                component,
                s,
                _new_identifier_text(new, label),
                id=new.id,
                first_seen=new.first_seen.isoformat(),
                days_before=round(new.days_before, 2),
                transactions_after=new.transactions_after,
                spend_after=round(new.spend_after, 2),
                new_count=len(identifiers),
            )
    if (hop := features.travel) is not None and (s := travel_strength(hop, config)):
        where = (
            f" from {hop.from_country} to {hop.to_country}"
            if hop.from_country and hop.to_country and hop.from_country != hop.to_country
            else ""
        )
        fired(
            Component.IMPOSSIBLE_TRAVEL,
            s,
            f"impossible travel: {hop.distance_km:,.0f} km in {_hours(hop.hours)}{where} "
            f"({hop.speed_kmh:,.0f} km/h, limit {config.impossible_travel_kmh:,.0f} km/h) "
            f"at {_minute(hop.end)}",
            distance_km=round(hop.distance_km, 1),
            hours=round(hop.hours, 4),
            speed_kmh=round(hop.speed_kmh, 1),
            limit_kmh=config.impossible_travel_kmh,
            start=hop.start.isoformat(),
            end=hop.end.isoformat(),
        )
    if (day := features.short_calls) is not None and (s := short_calls_strength(day, config)):
        fired(
            Component.SHORT_CALLS,
            s,
            f"{_percent(day.short_calls / day.calls)} of {day.calls} calls under "
            f"{SHORT_CALL_S:.0f} s {_day(day.start)} "
            f"(threshold {_percent(config.short_call_ratio)})",
            calls=day.calls,
            short_calls=day.short_calls,
            limit=config.short_call_ratio,
            day=day.start.isoformat(),
        )
    if (day := features.night_calls) is not None and (s := night_calls_strength(day, config)):
        fired(
            Component.NIGHT_CALLS,
            s,
            f"{_percent(day.night_calls / day.calls)} of {day.calls} calls at night "
            f"({NIGHT_HOURS.start:02d}:00-{NIGHT_HOURS.stop - 1:02d}:59 UTC) "
            f"{_day(day.start)} (threshold {_percent(config.night_call_ratio)})",
            calls=day.calls,
            night_calls=day.night_calls,
            limit=config.night_call_ratio,
            day=day.start.isoformat(),
        )
    if (dest := features.destinations) is not None and (s := destinations_strength(dest, config)):
        fired(
            Component.MANY_DESTINATIONS,
            s,
            f"{dest.count} distinct numbers called or texted {_day(dest.start)} "
            f"(threshold {config.distinct_destinations_per_day})",
            count=dest.count,
            limit=config.distinct_destinations_per_day,
            day=dest.start.isoformat(),
        )

    keep = 1.0
    for strength in components.values():
        keep *= 1.0 - strength
    risk = min(1.0, max(0.0, 1.0 - keep))
    return UsageScore(features.subscriber_id, risk, components, ranked(reasons))


# ---------------------------------------------------------------------------- feature vector

FEATURE_NAMES: tuple[str, ...] = (
    "account_age_days",
    "history_days",
    "active_days",
    "transactions",
    "spend",
    "data_mb",
    "calls",
    "spend_per_active_day",
    "max_day_spend",
    "max_day_spend_over_limit",
    "spend_z",
    "data_z",
    "spend_baseline_mean",
    "data_baseline_mean",
    "max_transactions_per_hour",
    "new_devices",
    "new_ips",
    "new_device_spend_24h",
    "new_ip_spend_24h",
    "max_speed_kmh",
    "max_hop_km",
    "short_call_ratio",
    "night_call_ratio",
    "pattern_day_calls",
    "max_distinct_destinations",
)
"""The names `feature_vector` returns, in order; stable across releases (append only)."""


def _z_or_zero(baseline: Baseline | None, config: ScoringConfig) -> float:
    if baseline is None or baseline.days < config.zscore_min_history_days:
        return 0.0
    return zscore(baseline, config)


def feature_vector(
    features: UsageFeatures, config: ScoringConfig | None = None
) -> dict[str, float]:
    """Numeric features for ML baselines and stacking, keyed by `FEATURE_NAMES` in that order.

    Missing evidence is 0 (no history, no new identifier, no located hop); ``account_age_days``
    is -1 when the account's start is unknown.
    """
    config = config or ScoringConfig()
    charge = features.charge.spend if features.charge is not None else 0.0
    calls_day = features.short_calls or features.night_calls
    values: dict[str, float] = {
        "account_age_days": (
            -1.0 if features.account_age_days is None else features.account_age_days
        ),
        "history_days": float(features.history_days),
        "active_days": float(features.active_days),
        "transactions": float(features.transactions),
        "spend": features.spend,
        "data_mb": features.data_mb,
        "calls": float(features.calls),
        "spend_per_active_day": features.spend / max(1, features.active_days),
        "max_day_spend": charge,
        "max_day_spend_over_limit": charge / config.daily_charge_limit,
        "spend_z": _z_or_zero(features.spend_baseline, config),
        "data_z": _z_or_zero(features.data_baseline, config),
        "spend_baseline_mean": (
            features.spend_baseline.mean if features.spend_baseline is not None else 0.0
        ),
        "data_baseline_mean": (
            features.data_baseline.mean if features.data_baseline is not None else 0.0
        ),
        "max_transactions_per_hour": float(features.burst.count) if features.burst else 0.0,
        "new_devices": float(len(features.new_devices)),
        "new_ips": float(len(features.new_ips)),
        "new_device_spend_24h": max((n.spend_after for n in features.new_devices), default=0.0),
        "new_ip_spend_24h": max((n.spend_after for n in features.new_ips), default=0.0),
        "max_speed_kmh": features.travel.speed_kmh if features.travel else 0.0,
        "max_hop_km": features.travel.distance_km if features.travel else 0.0,
        "short_call_ratio": (
            features.short_calls.short_calls / features.short_calls.calls
            if features.short_calls and features.short_calls.calls
            else 0.0
        ),
        "night_call_ratio": (
            features.night_calls.night_calls / features.night_calls.calls
            if features.night_calls and features.night_calls.calls
            else 0.0
        ),
        "pattern_day_calls": float(calls_day.calls) if calls_day else 0.0,
        "max_distinct_destinations": (
            float(features.destinations.count) if features.destinations else 0.0
        ),
    }
    return {name: float(values[name]) for name in FEATURE_NAMES}


# ------------------------------------------------------------ building features from a series

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def day_number(value: datetime | date) -> int:
    """Days since 1970-01-01 (UTC) of a date or of the UTC day a datetime falls on."""
    if isinstance(value, datetime):
        return (value.astimezone(UTC) - EPOCH).days
    return (value - EPOCH.date()).days


def day_start(number: int) -> datetime:
    return EPOCH + timedelta(days=number)


@dataclass(frozen=True, slots=True)
class DailySeries:
    """A subscriber's day totals as parallel lists, ascending by day; idle days are absent.

    ``days`` are day numbers: calendar days (`day_number`) for the batch, or any consecutive
    numbering of 24 h periods (real time) with a ``start_of`` to name them. ``call_days`` holds
    (day, calls, short calls, night calls) for the days with enough calls for a call pattern
    (others may be left out).
    """

    days: Sequence[int]
    spend: Sequence[float]
    data_mb: Sequence[float]
    call_days: Sequence[Sequence[int]] = ()


def _worst_baseline(
    metric: Metric,
    days: Sequence[int],
    values: Sequence[float],
    *,
    first: int,
    history_start: int,
    start_of: Callable[[int], datetime],
    config: ScoringConfig,
) -> Baseline | None:
    """The judged day (day >= `first`) whose value stands out most against its own baseline.

    Each day is judged against the days in [day - 30, day) from `history_start` on, idle days
    as zero; prefix sums make each day's mean and standard deviation O(1).
    """
    threshold = config.zscore_threshold
    min_days = config.zscore_min_history_days
    floor = std_floor(metric, 0.0, config)
    smallest = threshold * floor  # no day below this can be `threshold` sd above any mean
    if not values or max(values) < smallest:
        return None
    sums = list(accumulate(values, initial=0.0))
    squares = list(accumulate((value * value for value in values), initial=0.0))
    best: Baseline | None = None
    best_key = (0.0, 0.0)
    # Runs for every subscriber and judged day of a batch: plain arithmetic, objects only for
    # days that pass the threshold (the same floors as `zscore`).
    for index in range(bisect_left(days, first), len(days)):
        value = values[index]
        if value < smallest:
            continue
        day = days[index]
        window_start = day - BASELINE_DAYS
        if window_start < history_start:
            window_start = history_start
        span = day - window_start
        if span < min_days:
            continue
        low = bisect_left(days, window_start, 0, index)
        mean = (sums[index] - sums[low]) / span
        sigma_floor = max(floor, RELATIVE_STD_FLOOR * abs(mean))
        excess = value - mean
        if excess < threshold * sigma_floor:
            continue
        variance = (squares[index] - squares[low]) / span - mean * mean
        std = math.sqrt(variance) if variance > 0 else 0.0
        z = excess / max(std, sigma_floor)
        if z < threshold:
            continue
        candidate = Baseline(metric, start_of(day), value, mean, std, span)
        key = (zscore_strength(candidate, config), z)
        if key[0] > 0 and (best is None or key > best_key):
            best, best_key = candidate, key
    return best


def worst_baselines(
    metric: Metric,
    series: Sequence[tuple[Sequence[int], Sequence[float]]],
    history_starts: Sequence[int | None],
    *,
    first_day: int,
    last_day: int,
    config: ScoringConfig,
    start_of: Callable[[int], datetime] = day_start,
) -> list[Baseline | None]:
    """`_worst_baseline` for many subscribers at once, as array arithmetic (same rules).

    `series` holds each subscriber's (days, values) within [first_day - 30, last_day]. The
    batch scorer calls this: a Python loop over every subscriber and day costs more than the
    rest of the batch together.
    """
    found: list[Baseline | None] = [None] * len(series)
    if not series:
        return found
    origin = first_day - BASELINE_DAYS
    width = last_day - origin + 1
    lengths = np.fromiter((len(days) for days, _ in series), dtype=np.int64, count=len(series))
    dense = np.zeros((len(series), width))
    if lengths.sum():
        rows = np.repeat(np.arange(len(series)), lengths)
        columns = np.fromiter(chain.from_iterable(days for days, _ in series), dtype=np.int64)
        values = np.fromiter(chain.from_iterable(v for _, v in series), dtype=np.float64)
        inside = (columns >= origin) & (columns <= last_day)
        dense[rows[inside], columns[inside] - origin] = values[inside]
    sums = np.zeros((len(series), width + 1))
    np.cumsum(dense, axis=1, out=sums[:, 1:])
    squares = np.zeros((len(series), width + 1))
    np.cumsum(dense * dense, axis=1, out=squares[:, 1:])
    # History start per subscriber, as a column; none means no baseline at all.
    history = np.array(
        [width if start is None else max(start - origin, 0) for start in history_starts],
        dtype=np.int64,
    )[:, None]
    judged = np.arange(BASELINE_DAYS, width)[None, :]
    window_start = np.maximum(history, judged - BASELINE_DAYS)
    span = judged - window_start
    usable = span >= config.zscore_min_history_days
    safe_span = np.where(usable, span, 1)
    safe_start = np.where(usable, window_start, 0)
    ends = np.broadcast_to(judged, span.shape)
    total = np.take_along_axis(sums, ends, axis=1) - np.take_along_axis(sums, safe_start, axis=1)
    square_total = np.take_along_axis(squares, ends, axis=1) - np.take_along_axis(
        squares, safe_start, axis=1
    )
    mean = total / safe_span
    std = np.sqrt(np.maximum(square_total / safe_span - mean * mean, 0.0))
    floor = std_floor(metric, 0.0, config)
    sigma = np.maximum(std, np.maximum(floor, RELATIVE_STD_FLOOR * np.abs(mean)))
    value = dense[:, BASELINE_DAYS:]
    z = (value - mean) / sigma
    hits = usable & (z >= config.zscore_threshold)
    best_key: dict[int, tuple[float, float]] = {}
    for row, column in zip(*np.nonzero(hits), strict=True):
        candidate = Baseline(
            metric,
            start_of(origin + BASELINE_DAYS + int(column)),
            float(value[row, column]),
            float(mean[row, column]),
            float(std[row, column]),
            int(span[row, column]),
        )
        key = (zscore_strength(candidate, config), float(z[row, column]))
        if key[0] > 0 and (found[row] is None or key > best_key[row]):
            found[row], best_key[row] = candidate, key
    return found


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    d_phi = phi2 - phi1
    d_lambda = math.radians(lon2 - lon1)
    a = math.sin(d_phi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(d_lambda / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


@dataclass(frozen=True, slots=True)
class Located:
    ts: datetime
    lat: float
    lon: float
    country: str | None = None


def fastest_hop(points: Iterable[Located]) -> Hop | None:
    """The fastest hop of at least `MIN_TRAVEL_KM` between consecutive located points."""
    return fastest_hop_ms(
        (_epoch_ms(point.ts), point.lat, point.lon, point.country) for point in points
    )


def fastest_hop_ms(points: Iterable[Sequence[Any]]) -> Hop | None:
    """`fastest_hop` over (epoch ms, lat, lon, country) rows, as the graph returns them."""
    best: tuple[float, Sequence[Any], Sequence[Any], float] | None = None
    for before, after in pairwise(sorted(points, key=lambda point: point[0])):
        if before[1] == after[1] and before[2] == after[2]:
            continue  # the same place: most consecutive transactions
        distance = haversine_km(before[1], before[2], after[1], after[2])
        if distance < MIN_TRAVEL_KM:
            continue
        hours = max((after[0] - before[0]) / 3_600_000, MIN_TRAVEL_HOURS)
        if best is None or distance / hours > best[0]:
            best = (distance / hours, before, after, distance)
    if best is None:
        return None
    _, before, after, distance = best
    return Hop(_from_epoch_ms(before[0]), _from_epoch_ms(after[0]), distance, before[3], after[3])


def _epoch_ms(value: datetime) -> int:
    return (value.astimezone(UTC) - EPOCH) // timedelta(milliseconds=1)


def _from_epoch_ms(value: float) -> datetime:
    return EPOCH + timedelta(milliseconds=value)


def busiest_window(ordered: Sequence[T], width: Any) -> tuple[T, int] | None:
    """The start and count of the fullest window [t, t + width) starting at a value of `ordered`.

    `ordered` must be ascending; values and width may be datetimes and a timedelta, or numbers.
    """
    best: tuple[T, int] | None = None
    low = 0
    for high, value in enumerate(ordered):
        while value - ordered[low] >= width:  # type: ignore[operator]
            low += 1
        count = high - low + 1
        if best is None or count > best[1]:
            best = (ordered[low], count)
    return best


def busiest_hour(timestamps: Iterable[datetime]) -> Burst | None:
    """The 1 h window [t, t + 1 h) starting at a transaction with the most transactions."""
    found = busiest_window(sorted(timestamps), timedelta(hours=1))
    return None if found is None else Burst(*found)


def _pattern_days(
    series: DailySeries, first_day: int, start_of: Callable[[int], datetime], config: ScoringConfig
) -> tuple[CallDay | None, CallDay | None]:
    short: CallDay | None = None
    night: CallDay | None = None
    short_best = night_best = 0.0
    for day_number_, calls, short_calls, night_calls in series.call_days:
        if day_number_ < first_day or calls < MIN_PATTERN_CALLS:
            continue
        day = CallDay(start_of(day_number_), calls, short_calls, night_calls)
        if (strength := short_calls_strength(day, config)) > short_best:
            short, short_best = day, strength
        if (strength := night_calls_strength(day, config)) > night_best:
            night, night_best = day, strength
    return short, night


@dataclass(frozen=True)
class RawDay:
    """What only raw transactions tell about one judged day (read only for days that need it)."""

    start: datetime
    burst: Burst | None = None
    destinations: int = 0
    hop: Hop | None = None


def build_features(
    subscriber_id: str,
    as_of: datetime,
    series: DailySeries,
    config: ScoringConfig,
    *,
    first_day: int,
    last_day: int,
    history_start: int | None,
    start_of: Callable[[int], datetime] = day_start,
    account_start: datetime | None = None,
    transactions: int = 0,
    calls: int = 0,
    raw_days: Iterable[RawDay] = (),
    new_devices: Sequence[NewIdentifier] = (),
    new_ips: Sequence[NewIdentifier] = (),
    baselines: tuple[Baseline | None, Baseline | None] | None = None,
) -> UsageFeatures:
    """Turn a daily series and the raw evidence into the worst evidence of each rule.

    The judged days are day numbers `first_day` to `last_day` (the series holds no later day);
    `history_start` is the day number of the subscriber's first usage (None: no usage);
    `start_of` maps a day number to the datetime that names it; `transactions` and `calls` are
    the judged period's totals (kept as features). `baselines` (spend, data) are the worst
    z-score days when already found for a whole batch (`worst_baselines`).
    """
    days = series.days
    begin = bisect_left(days, first_day)
    spend = series.spend[begin:]
    charge: DayCharge | None = None
    if spend and (largest := max(spend)) > 0:
        charge = DayCharge(start_of(days[begin + spend.index(largest)]), largest)
    if baselines is None:

        def worst(metric: Metric, values: Sequence[float]) -> Baseline | None:
            if history_start is None:
                return None
            return _worst_baseline(
                metric,
                days,
                values,
                first=first_day,
                history_start=history_start,
                start_of=start_of,
                config=config,
            )

        baselines = (worst(Metric.SPEND, series.spend), worst(Metric.DATA, series.data_mb))
    short, night = _pattern_days(series, first_day, start_of, config)
    features = UsageFeatures(
        subscriber_id=subscriber_id,
        as_of=as_of,
        lookback_days=last_day - first_day + 1,
        account_age_days=(
            None
            if account_start is None
            else max(0.0, (as_of - account_start).total_seconds() / 86_400)
        ),
        history_days=0 if history_start is None else max(0, last_day - history_start + 1),
        active_days=len(spend),
        transactions=transactions,
        spend=sum(spend),
        data_mb=sum(series.data_mb[begin:]),
        calls=calls,
        charge=charge,
        spend_baseline=baselines[0],
        data_baseline=baselines[1],
        new_devices=tuple(new_devices),
        new_ips=tuple(new_ips),
        short_calls=short,
        night_calls=night,
    )
    return with_raw_days(features, raw_days)


def with_raw_days(features: UsageFeatures, raw_days: Iterable[RawDay]) -> UsageFeatures:
    """`features` with the worst burst, destinations and hop of `raw_days` merged in."""
    burst, destinations, travel = features.burst, features.destinations, features.travel
    for raw in raw_days:
        if raw.burst is not None and (burst is None or raw.burst.count > burst.count):
            burst = raw.burst
        if raw.destinations and (destinations is None or raw.destinations > destinations.count):
            destinations = Destinations(raw.start, raw.destinations)
        if raw.hop is not None and (travel is None or raw.hop.speed_kmh > travel.speed_kmh):
            travel = raw.hop
    return replace(features, burst=burst, destinations=destinations, travel=travel)
