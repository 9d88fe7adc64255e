"""The usage/velocity rules and their combination, without a graph."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringwatch.config import ScoringConfig
from ringwatch.scoring import reasons
from ringwatch.scoring.usage import (
    FEATURE_NAMES,
    MIN_PATTERN_CALLS,
    Baseline,
    Burst,
    CallDay,
    Component,
    DailySeries,
    DayCharge,
    Destinations,
    Hop,
    Located,
    Metric,
    NewIdentifier,
    RawDay,
    UsageFeatures,
    build_features,
    busiest_hour,
    day_number,
    day_start,
    fastest_hop,
    fastest_hop_ms,
    feature_vector,
    haversine_km,
    score_usage,
    worst_baselines,
    zscore,
)

CONFIG = ScoringConfig()
AS_OF = datetime(2024, 3, 30, 18, 0, tzinfo=UTC)
DAY = datetime(2024, 3, 30, tzinfo=UTC)
TODAY = day_number(AS_OF)


def features(**evidence: object) -> UsageFeatures:
    return UsageFeatures("s1", AS_OF, **evidence)  # type: ignore[arg-type]


def codes(result_features: UsageFeatures) -> list[str]:
    return reasons.codes(score_usage(result_features, CONFIG).reasons)


# ------------------------------------------------------------------------------ no evidence


def test_no_evidence_scores_zero_with_every_component_named() -> None:
    score = score_usage(features(), CONFIG)
    assert score.risk == 0.0
    assert score.reasons == []
    assert set(score.components) == {component.value for component in Component}
    assert all(value == 0.0 for value in score.components.values())


def test_an_empty_series_builds_empty_features() -> None:
    built = build_features(
        "s1",
        AS_OF,
        DailySeries((), (), ()),
        CONFIG,
        first_day=TODAY - 29,
        last_day=TODAY,
        history_start=None,
    )
    assert built.charge is None and built.spend_baseline is None and built.data_baseline is None
    assert built.history_days == 0 and built.active_days == 0 and built.lookback_days == 30
    assert score_usage(built, CONFIG).risk == 0.0


# --------------------------------------------------------------------------- charge limit


def test_charges_exactly_at_the_limit_do_not_fire() -> None:
    assert codes(features(charge=DayCharge(DAY, 500.0))) == []


def test_charges_over_the_limit_name_the_amount_and_the_limit() -> None:
    score = score_usage(features(charge=DayCharge(DAY, 640.0)), CONFIG)
    (reason,) = score.reasons
    assert reason.code == "usage.daily_charge_limit"
    assert reason.text == "charges $640 in 24 h on 2024-03-30 (limit $500)"
    assert reason.evidence["spend"] == 640.0 and reason.evidence["limit"] == 500.0
    assert score.risk == pytest.approx(reason.weight, abs=1e-4)
    assert 0.6 <= score.risk < 0.7


def test_the_limit_is_configurable() -> None:
    strict = ScoringConfig(daily_charge_limit=100)
    (reason,) = score_usage(features(charge=DayCharge(DAY, 150.0)), strict).reasons
    assert "(limit $100)" in reason.text


def test_a_real_time_period_is_named_by_its_start() -> None:
    start = AS_OF - timedelta(days=1)
    (reason,) = score_usage(features(charge=DayCharge(start, 640.5)), CONFIG).reasons
    assert reason.text == "charges $640.50 in the 24 h from 2024-03-29 18:00 UTC (limit $500)"


# -------------------------------------------------------------------------------- z-scores


def baseline(
    value: float, mean: float, std: float, days: int = 10, metric: Metric = Metric.DATA
) -> Baseline:
    return Baseline(metric, DAY, value, mean, std, days)


def test_a_z_score_needs_the_minimum_history() -> None:
    spike = baseline(5000.0, 500.0, 100.0, days=6)
    assert codes(features(data_baseline=spike)) == []
    assert codes(features(data_baseline=replace_days(spike, 7))) == ["usage.zscore_data"]


def replace_days(value: Baseline, days: int) -> Baseline:
    return Baseline(value.metric, value.start, value.value, value.mean, value.std, days)


def test_a_z_score_below_the_threshold_does_not_fire() -> None:
    assert codes(features(data_baseline=baseline(799.0, 500.0, 100.0))) == []
    assert codes(features(data_baseline=baseline(800.0, 500.0, 100.0))) == ["usage.zscore_data"]


def test_the_z_reason_names_sigma_value_mean_and_days() -> None:
    spike = baseline(4700.0, 500.0, 1000.0, days=10)
    (reason,) = score_usage(features(data_baseline=spike), CONFIG).reasons
    assert reason.text == (
        "data usage 4.2σ above its 30-day baseline on 2024-03-30 "  # noqa: RUF001
        "(4,700 MB vs a mean of 500 MB over 10 days)"
    )
    assert reason.evidence["z"] == pytest.approx(4.2)


def test_zero_variance_uses_a_floor_instead_of_dividing_by_zero() -> None:
    flat = baseline(320.0, 20.0, 0.0, metric=Metric.SPEND)
    # sd floor: max(10 % of the $500 limit, 10 % of the mean) = $50.
    assert zscore(flat, CONFIG) == pytest.approx(6.0)
    (reason,) = score_usage(features(spend_baseline=flat), CONFIG).reasons
    assert reason.code == "usage.zscore_spend" and "6.0σ" in reason.text  # noqa: RUF001
    all_zero = baseline(0.0, 0.0, 0.0, metric=Metric.SPEND)
    assert zscore(all_zero, CONFIG) == 0.0
    assert codes(features(spend_baseline=all_zero)) == []


def test_a_small_spend_weighs_less_than_a_large_one_at_the_same_z() -> None:
    small = baseline(150.0, 0.0, 50.0, metric=Metric.SPEND)
    large = baseline(600.0, 0.0, 200.0, metric=Metric.SPEND)
    assert zscore(small, CONFIG) == zscore(large, CONFIG) == 3.0
    small_risk = score_usage(features(spend_baseline=small), CONFIG).risk
    assert 0 < small_risk < score_usage(features(spend_baseline=large), CONFIG).risk


def series(values: dict[int, float], spend: dict[int, float] | None = None) -> DailySeries:
    days = sorted(set(values) | set(spend or {}))
    return DailySeries(
        days=days,
        spend=[(spend or {}).get(day, 0.0) for day in days],
        data_mb=[values.get(day, 0.0) for day in days],
    )


def test_each_day_is_judged_against_the_days_before_it() -> None:
    # Ten days of 500/700 MB (mean 600, sd 100), then a 1,000 MB day: 4 sd.
    history = {TODAY - 10 + i: (500.0 if i % 2 else 700.0) for i in range(10)}
    built = build_features(
        "s1",
        AS_OF,
        series({**history, TODAY: 1000.0}),
        CONFIG,
        first_day=TODAY - 29,
        last_day=TODAY,
        history_start=TODAY - 10,
    )
    spike = built.data_baseline
    assert spike is not None
    assert (spike.value, spike.mean, spike.std, spike.days) == (1000.0, 600.0, 100.0, 10)
    assert spike.start == day_start(TODAY)
    assert zscore(spike, CONFIG) == pytest.approx(4.0)


def test_idle_days_count_as_zero_and_days_before_the_history_do_not_count() -> None:
    # Usage every other day since day -8: eight baseline days, four of them idle.
    history = {TODAY - 8 + i: 600.0 for i in range(0, 8, 2)}
    built = build_features(
        "s1",
        AS_OF,
        series({**history, TODAY: 3000.0}),
        CONFIG,
        first_day=TODAY,
        last_day=TODAY,
        history_start=TODAY - 8,
    )
    spike = built.data_baseline
    assert spike is not None and spike.days == 8
    assert spike.mean == pytest.approx(300.0) and spike.std == pytest.approx(300.0)


def test_fewer_days_than_the_minimum_give_no_baseline() -> None:
    history = {TODAY - 5 + i: 100.0 + i for i in range(5)}
    built = build_features(
        "s1",
        AS_OF,
        series({**history, TODAY: 9000.0}),
        CONFIG,
        first_day=TODAY - 29,
        last_day=TODAY,
        history_start=TODAY - 5,
    )
    assert built.data_baseline is None


def test_the_baseline_slides_and_the_worst_day_wins() -> None:
    # Two spikes: the earlier one over a quiet baseline is the stronger evidence.
    quiet = {TODAY - 60 + i: 200.0 + (i % 3) * 20 for i in range(60)}
    values = {**quiet, TODAY - 20: 5000.0, TODAY - 5: 1500.0}
    built = build_features(
        "s1",
        AS_OF,
        series(values),
        CONFIG,
        first_day=TODAY - 29,
        last_day=TODAY,
        history_start=TODAY - 60,
    )
    assert built.data_baseline is not None
    assert built.data_baseline.start == day_start(TODAY - 20)
    assert built.data_baseline.days == 30


def test_the_charge_is_the_largest_judged_day() -> None:
    built = build_features(
        "s1",
        AS_OF,
        series({}, spend={TODAY - 40: 9000.0, TODAY - 3: 640.0, TODAY: 20.0}),
        CONFIG,
        first_day=TODAY - 29,
        last_day=TODAY,
        history_start=TODAY - 40,
    )
    assert built.charge == DayCharge(day_start(TODAY - 3), 640.0)
    assert built.active_days == 2 and built.spend == 660.0


# ------------------------------------------------------------------------- raw evidence


def test_busiest_hour_counts_a_half_open_hour() -> None:
    start = AS_OF
    stamps = [start + timedelta(minutes=3 * i) for i in range(20)]  # 20 within 57 minutes
    stamps.append(start + timedelta(hours=1))  # exactly an hour after the first: next window
    burst = busiest_hour(stamps)
    assert burst == Burst(start, 20)
    assert busiest_hour([]) is None


def test_a_burst_fires_at_the_configured_count() -> None:
    assert codes(features(burst=Burst(AS_OF, 19))) == []
    score = score_usage(features(burst=Burst(AS_OF, 20)), CONFIG)
    (reason,) = score.reasons
    assert reason.code == "usage.burst"
    assert reason.text == "20 transactions in 1 h from 2024-03-30 18:00 UTC (threshold 20)"


def test_haversine_knows_new_york_to_london() -> None:
    assert haversine_km(40.7128, -74.0060, 51.5072, -0.1276) == pytest.approx(5570, rel=0.01)
    assert haversine_km(10, 10, 10, 10) == 0.0


def test_impossible_travel_between_consecutive_located_transactions() -> None:
    home = Located(AS_OF, 40.7128, -74.0060, "US")
    lagos = Located(AS_OF + timedelta(hours=1), 6.5244, 3.3792, "NG")
    later_home = Located(AS_OF + timedelta(hours=30), 40.7128, -74.0060, "US")
    hop = fastest_hop([lagos, later_home, home])  # order does not matter
    assert hop is not None and hop.start == home.ts and hop.end == lagos.ts
    (reason,) = score_usage(features(travel=hop), CONFIG).reasons
    assert reason.code == "usage.impossible_travel"
    assert "from US to NG" in reason.text and "limit 900 km/h" in reason.text
    assert reason.evidence["speed_kmh"] > 8000


def test_short_hops_and_plausible_speeds_are_not_travel() -> None:
    jitter = [
        Located(AS_OF, 40.70, -74.00),
        Located(AS_OF, 40.75, -74.05),  # same second, a few km: location noise
    ]
    assert fastest_hop(jitter) is None
    flight = Hop(AS_OF, AS_OF + timedelta(hours=8), 5570.0)  # about 700 km/h
    assert codes(features(travel=flight)) == []


def test_simultaneous_far_apart_transactions_do_not_divide_by_zero() -> None:
    hop = fastest_hop([Located(AS_OF, 40.7, -74.0), Located(AS_OF, 51.5, -0.1)])
    assert hop is not None and math.isfinite(hop.speed_kmh)
    assert codes(features(travel=hop)) == ["usage.impossible_travel"]


def test_call_patterns_need_volume_and_fire_at_their_ratio() -> None:
    few = CallDay(DAY, MIN_PATTERN_CALLS - 1, short_calls=MIN_PATTERN_CALLS - 1)
    assert codes(features(short_calls=few)) == []
    at_ratio = CallDay(DAY, 100, short_calls=60, night_calls=40)
    assert codes(features(short_calls=at_ratio, night_calls=at_ratio)) == [
        "usage.short_calls",
        "usage.night_calls",
    ]
    (short, night) = score_usage(
        features(short_calls=at_ratio, night_calls=at_ratio), CONFIG
    ).reasons
    assert short.text == "60% of 100 calls under 10 s on 2024-03-30 (threshold 60%)"
    assert night.text == (
        "40% of 100 calls at night (00:00-05:59 UTC) on 2024-03-30 (threshold 40%)"
    )


def test_call_pattern_days_come_from_the_series() -> None:
    built = build_features(
        "s1",
        AS_OF,
        DailySeries(
            days=[TODAY - 40, TODAY - 2, TODAY - 1, TODAY],
            spend=[0.0] * 4,
            data_mb=[0.0] * 4,
            call_days=[
                (TODAY - 40, 150, 150, 150),  # before the judged period
                (TODAY - 2, 150, 80, 70),
                (TODAY - 1, 10, 10, 10),  # too few calls
                (TODAY, 150, 120, 30),
            ],
        ),
        CONFIG,
        first_day=TODAY - 29,
        last_day=TODAY,
        history_start=TODAY - 40,
        transactions=310,
        calls=310,
    )
    assert built.short_calls == CallDay(day_start(TODAY), 150, 120, 30)
    assert built.night_calls == CallDay(day_start(TODAY - 2), 150, 80, 70)
    assert (built.transactions, built.calls, built.history_days) == (310, 310, 41)


def test_many_destinations() -> None:
    assert codes(features(destinations=Destinations(DAY, 39))) == []
    (reason,) = score_usage(features(destinations=Destinations(DAY, 131)), CONFIG).reasons
    assert reason.text == "131 distinct numbers called or texted on 2024-03-30 (threshold 40)"


def test_raw_days_merge_keeps_the_worst_of_each() -> None:
    raw = [
        RawDay(day_start(TODAY - 1), burst=Burst(AS_OF, 25), destinations=80),
        RawDay(day_start(TODAY), burst=Burst(AS_OF, 12), destinations=120),
    ]
    built = build_features(
        "s1",
        AS_OF,
        DailySeries((), (), ()),
        CONFIG,
        first_day=TODAY - 1,
        last_day=TODAY,
        history_start=None,
        raw_days=raw,
    )
    assert built.burst == Burst(AS_OF, 25)
    assert built.destinations == Destinations(day_start(TODAY), 120)


# ------------------------------------------------------------------------ new identifiers


def new(kind: str, spend: float = 0.0, n: int = 0) -> NewIdentifier:
    first = AS_OF - timedelta(hours=2)
    return NewIdentifier(
        kind,
        "356938035643809" if kind == "device" else "203.0.113.9",
        first,
        days_before=63.0,
        transactions_after=n,
        spend_after=spend,
        last_after=first + timedelta(hours=1) if n else None,
    )


def test_a_new_device_alone_is_weak_and_spend_from_it_makes_it_strong() -> None:
    alone = score_usage(features(new_devices=(new("device"),)), CONFIG)
    spent = score_usage(features(new_devices=(new("device", 900.0, 3),)), CONFIG)
    assert 0 < alone.risk < CONFIG.decision_review < spent.risk
    (reason,) = spent.reasons
    assert reason.code == "usage.new_device"
    assert reason.text == (
        "3 transactions ($900) in 1.0 h from new device 356938… first seen "
        "2024-03-30 16:00 UTC, after 63 days on other devices"
    )


def test_a_new_ip_weighs_less_than_a_new_device() -> None:
    device = score_usage(features(new_devices=(new("device", 300.0, 3),)), CONFIG).risk
    ip = score_usage(features(new_ips=(new("ip", 300.0, 3),)), CONFIG).risk
    assert 0 < ip < device


def test_the_strongest_new_identifier_is_the_reason() -> None:
    score = score_usage(
        features(new_devices=(new("device"), new("device", 700.0, 5), new("device", 10.0, 1))),
        CONFIG,
    )
    (reason,) = score.reasons
    assert reason.evidence["spend_after"] == 700.0 and reason.evidence["new_count"] == 3


# ---------------------------------------------------------------------------- combination


def test_rules_combine_by_noisy_or_and_reasons_are_ranked() -> None:
    score = score_usage(
        features(
            charge=DayCharge(DAY, 640.0),
            destinations=Destinations(DAY, 131),
            burst=Burst(AS_OF, 20),
        ),
        CONFIG,
    )
    strengths = [reason.weight for reason in score.reasons]
    assert strengths == sorted(strengths, reverse=True)
    expected = 1 - math.prod(1 - value for value in score.components.values())
    assert score.risk == pytest.approx(expected)
    assert score.risk > max(strengths)
    assert reasons.loads(reasons.dumps(score.reasons)) == score.reasons


def test_feature_vector_has_stable_names_and_numbers() -> None:
    empty = feature_vector(features())
    assert tuple(empty) == FEATURE_NAMES
    assert empty["account_age_days"] == -1.0
    full = feature_vector(
        features(
            charge=DayCharge(DAY, 640.0),
            data_baseline=baseline(4700.0, 500.0, 1000.0),
            travel=Hop(AS_OF, AS_OF + timedelta(hours=1), 8476.0),
            new_devices=(new("device", 900.0, 3),),
            short_calls=CallDay(DAY, 100, 70, 45),
            account_age_days=400.0,
        )
    )
    assert tuple(full) == FEATURE_NAMES
    assert full["max_day_spend"] == 640.0 and full["max_day_spend_over_limit"] == 1.28
    assert full["data_z"] == pytest.approx(4.2)
    assert full["max_speed_kmh"] == pytest.approx(8476.0)
    assert full["new_device_spend_24h"] == 900.0 and full["short_call_ratio"] == 0.7
    assert all(isinstance(value, float) and math.isfinite(value) for value in full.values())


# ------------------------------------------------------------------------------ properties

money = st.floats(min_value=0, max_value=1e6, allow_nan=False)
maybe = st.booleans()


@st.composite
def any_features(draw: st.DrawFn) -> UsageFeatures:
    def optional(value: object) -> object:
        return value if draw(maybe) else None

    calls = draw(st.integers(0, 500))
    return features(
        charge=optional(DayCharge(DAY, draw(money))),
        spend_baseline=optional(
            Baseline(
                Metric.SPEND,
                DAY,
                draw(money),
                draw(money),
                draw(money),
                draw(st.integers(0, 30)),
            )
        ),
        data_baseline=optional(
            Baseline(
                Metric.DATA,
                DAY,
                draw(money),
                draw(money),
                draw(money),
                draw(st.integers(0, 30)),
            )
        ),
        burst=optional(Burst(AS_OF, draw(st.integers(0, 10_000)))),
        new_devices=tuple(
            new("device", draw(money), draw(st.integers(0, 50)))
            for _ in range(draw(st.integers(0, 3)))
        ),
        new_ips=tuple(
            new("ip", draw(money), draw(st.integers(0, 50))) for _ in range(draw(st.integers(0, 3)))
        ),
        travel=optional(
            Hop(
                AS_OF,
                AS_OF + timedelta(seconds=draw(st.integers(0, 10**6))),
                draw(st.floats(0, 20_000)),
            )
        ),
        short_calls=optional(CallDay(DAY, calls, draw(st.integers(0, calls)), 0)),
        night_calls=optional(CallDay(DAY, calls, 0, draw(st.integers(0, calls)))),
        destinations=optional(Destinations(DAY, draw(st.integers(0, 1000)))),
    )


@settings(max_examples=300, deadline=None)
@given(any_features())
def test_risk_and_components_stay_in_the_unit_interval(value: UsageFeatures) -> None:
    score = score_usage(value, CONFIG)
    assert 0.0 <= score.risk <= 1.0
    assert all(0.0 <= strength <= 1.0 for strength in score.components.values())
    assert all(0.0 <= reason.weight <= 1.0 for reason in score.reasons)
    assert len(score.reasons) == sum(1 for strength in score.components.values() if strength)
    vector = feature_vector(value)
    assert tuple(vector) == FEATURE_NAMES and all(math.isfinite(x) for x in vector.values())


@settings(max_examples=300, deadline=None)
@given(
    any_features(),
    st.floats(0, 1e5),
    st.floats(0, 1e5),
    st.floats(0, 1e4),
    st.integers(0, 30),
)
def test_more_spend_never_lowers_the_risk(
    value: UsageFeatures, spend: float, extra: float, mean: float, days: int
) -> None:
    def with_spend(amount: float) -> UsageFeatures:
        return UsageFeatures(
            **{
                **value.__dict__,
                "charge": DayCharge(DAY, amount),
                "spend_baseline": Baseline(Metric.SPEND, DAY, amount, mean, mean / 2, days),
            }
        )

    lower = score_usage(with_spend(spend), CONFIG).risk
    higher = score_usage(with_spend(spend + extra), CONFIG).risk
    assert higher >= lower - 1e-12


@settings(max_examples=200, deadline=None)
@given(st.floats(0, 1e5), st.floats(0, 1e5), st.integers(0, 50))
def test_more_spend_from_a_new_device_never_lowers_the_risk(
    spend: float, extra: float, n: int
) -> None:
    lower = score_usage(features(new_devices=(new("device", spend, n),)), CONFIG).risk
    higher = score_usage(features(new_devices=(new("device", spend + extra, n),)), CONFIG).risk
    assert higher >= lower


@st.composite
def subscriber_series(draw: st.DrawFn) -> tuple[list[int], list[float], int | None]:
    days = sorted(draw(st.sets(st.integers(TODAY - 119, TODAY), max_size=60)))
    values = [draw(st.sampled_from([0.0, 50.0, 300.0, 2000.0, 9000.0])) * draw(st.floats(0.5, 2))
              for _ in days]  # fmt: skip
    history = draw(st.one_of(st.none(), st.integers(TODAY - 150, TODAY)))
    if history is not None and days:
        history = min(history, days[0])
    return days, values, history


@settings(max_examples=100, deadline=None)
@given(st.lists(subscriber_series(), max_size=8), st.sampled_from(list(Metric)))
def test_the_batch_baselines_equal_the_scalar_ones(
    population: list[tuple[list[int], list[float], int | None]], metric: Metric
) -> None:
    first = TODAY - 89
    batch = worst_baselines(
        metric,
        [(days, values) for days, values, _ in population],
        [history for _, _, history in population],
        first_day=first,
        last_day=TODAY,
        config=CONFIG,
    )
    for (days, values, history), found in zip(population, batch, strict=True):
        series = DailySeries(days, values if metric is Metric.SPEND else [0.0] * len(days),
                             values if metric is Metric.DATA else [0.0] * len(days))  # fmt: skip
        built = build_features(
            "s1", AS_OF, series, CONFIG, first_day=first, last_day=TODAY, history_start=history
        )
        expected = built.spend_baseline if metric is Metric.SPEND else built.data_baseline
        if expected is None:
            assert found is None
            continue
        assert found is not None
        assert (found.start, found.days, found.value) == (
            expected.start,
            expected.days,
            expected.value,
        )
        assert found.mean == pytest.approx(expected.mean, abs=1e-6)
        assert found.std == pytest.approx(expected.std, abs=1e-3)


def test_fastest_hop_from_graph_rows_matches_located_points() -> None:
    rows = [
        (_ms(AS_OF), 40.7128, -74.0060, "US"),
        (_ms(AS_OF + timedelta(hours=1)), 6.5244, 3.3792, "NG"),
        (_ms(AS_OF + timedelta(hours=2)), 6.5244, 3.3792, "NG"),
    ]
    hop = fastest_hop_ms(rows)
    assert hop == fastest_hop(
        [
            Located(AS_OF + timedelta(hours=h), lat, lon, c)
            for h, (_, lat, lon, c) in enumerate(rows)
        ]
    )
    assert hop is not None and (hop.start, hop.end) == (AS_OF, AS_OF + timedelta(hours=1))
    assert fastest_hop_ms([]) is None


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)
