"""Usage/velocity scores on the real server: stored scores match hand-computed windows."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from ringwatch.config import ScoringConfig
from ringwatch.graph.db import Neo4jRunner
from ringwatch.graph.schema import migrate
from ringwatch.graph.usage_scores import score_all_usage, usage_score_for
from ringwatch.graph.writer import GraphWriter
from ringwatch.scoring import reasons
from ringwatch.scoring.reasons import Reason
from ringwatch.scoring.usage import haversine_km
from tests.factories import T0, identity, prepared, transaction

CONFIG = ScoringConfig()
OLD_DEVICE = "490154203237518"
NEW_DEVICE = "356938035643809"
NEW_YORK: dict[str, Any] = {"lat": 40.7128, "lon": -74.0060, "country": "US"}
LAGOS: dict[str, Any] = {"lat": 6.5244, "lon": 3.3792, "country": "NG"}


def _write(graph: Neo4jRunner, *payloads: dict[str, Any]) -> None:
    migrate(graph)
    GraphWriter(graph, hub_cap=CONFIG.hub_cap).write(prepared(*payloads))


def _stored(graph: Neo4jRunner, subscriber_id: str) -> dict[str, Any]:
    rows = graph.read(
        "MATCH (s:Subscriber {id: $id}) RETURN s.usage_risk AS risk, s.usage_reasons AS reasons, "
        "s.usage_reason_codes AS codes, s.usage_scored_at AS scored_at, s.usage_as_of AS as_of",
        {"id": subscriber_id},
    )
    assert len(rows) == 1
    return rows[0]


def _reason(graph: Neo4jRunner, subscriber_id: str, code: str) -> Reason:
    found = [r for r in reasons.loads(_stored(graph, subscriber_id)["reasons"]) if r.code == code]
    assert len(found) == 1, f"no single {code} reason"
    return found[0]


def _daily(subscriber_id: str, prefix: str, days: int, **fields: Any) -> list[dict[str, Any]]:
    """One transaction a day at noon for `days` days before T0's day."""
    return [
        transaction(f"{prefix}{day}", subscriber_id, hours=-24.0 * day, **fields)
        for day in range(days, 0, -1)
    ]


def test_charges_over_the_daily_limit_are_stored_with_their_amount(graph: Neo4jRunner) -> None:
    _write(
        graph,
        *_daily("s1", "base", 10, amount=20.0),
        transaction("big1", "s1", amount=400.0, hours=1),
        transaction("big2", "s1", amount=240.0, hours=3),
        *_daily("s2", "calm", 10, amount=20.0),
        transaction("at-limit", "s2", amount=480.0, hours=2),  # $500 on the day: not over
    )
    summary = score_all_usage(graph, CONFIG)
    # as_of defaults to the newest transaction.
    assert summary.as_of == T0 + timedelta(hours=3)
    assert summary.subscribers == 2
    stored = _stored(graph, "s1")
    assert "usage.daily_charge_limit" in stored["codes"]
    charge = _reason(graph, "s1", "usage.daily_charge_limit")
    assert charge.text == "charges $640 in 24 h on 2026-11-01 (limit $500)"
    assert (charge.evidence["spend"], charge.evidence["limit"]) == (640.0, 500.0)
    assert 0 < stored["risk"] <= 1
    assert stored["as_of"].to_native() == T0 + timedelta(hours=3)
    assert isinstance(stored["scored_at"].to_native(), datetime)
    assert "usage.daily_charge_limit" not in _stored(graph, "s2")["codes"]


def test_a_spike_over_a_known_baseline_stores_the_exact_z(graph: Neo4jRunner) -> None:
    # Ten days alternating 1,500 and 2,500 MB (mean 2,000, population sd 500), then 4,000 MB:
    # 4.0 sd.
    baseline = [
        transaction(
            f"d{day}",
            "s1",
            type="data_usage",
            hours=-24.0 * day,
            amount=None,
            data_mb=1500.0 if day % 2 else 2500.0,
        )
        for day in range(10, 0, -1)
    ]
    spike = transaction("spike", "s1", type="data_usage", hours=2, amount=None, data_mb=4000.0)
    _write(graph, *baseline, spike)
    score_all_usage(graph, CONFIG)
    reason = _reason(graph, "s1", "usage.zscore_data")
    assert reason.evidence["z"] == pytest.approx(4.0)
    assert (reason.evidence["mean"], reason.evidence["std"], reason.evidence["days"]) == (
        2000.0,
        500.0,
        10,
    )
    assert reason.text == (
        "data usage 4.0σ above its 30-day baseline on 2026-11-01 "  # noqa: RUF001
        "(4,000 MB vs a mean of 2,000 MB over 10 days)"
    )


def test_spend_z_needs_seven_days_of_history(graph: Neo4jRunner) -> None:
    # $100/$200 alternating: mean 150, sd 50; $350 is 4.0 sd above it (and under the limit).
    def history(subscriber_id: str, days: int) -> list[dict[str, Any]]:
        return [
            transaction(
                f"{subscriber_id}-{day}", subscriber_id, hours=-24.0 * day,
                amount=100.0 if day % 2 else 200.0,
            )
            for day in range(days, 0, -1)
        ]  # fmt: skip

    _write(
        graph,
        *history("long", 8),
        transaction("long-spike", "long", amount=350.0, hours=1),
        *history("short", 6),
        transaction("short-spike", "short", amount=350.0, hours=1),
    )
    score_all_usage(graph, CONFIG)
    reason = _reason(graph, "long", "usage.zscore_spend")
    assert reason.evidence["z"] == pytest.approx(4.0)
    assert reason.evidence["days"] == 8
    assert _stored(graph, "short")["codes"] == []


def test_the_lookback_finds_a_bill_shock_weeks_before_as_of(graph: Neo4jRunner) -> None:
    _write(
        graph,
        *_daily("s1", "base", 40, amount=5.0),
        transaction("shock", "s1", type="data_usage", hours=-24.0 * 20 + 1, amount=900.0),
    )
    score_all_usage(graph, CONFIG, lookback_days=7)
    assert _stored(graph, "s1")["codes"] == []
    score_all_usage(graph, CONFIG, lookback_days=30)
    charge = _reason(graph, "s1", "usage.daily_charge_limit")
    # The day's usual $5 and the $900 of roaming data.
    assert charge.text == "charges $905 in 24 h on 2026-10-12 (limit $500)"
    # Judged against the 30 days before that day, not against the days after it.
    assert _reason(graph, "s1", "usage.zscore_spend").evidence["days"] == 20


def test_as_of_in_the_past_and_a_subset_of_subscribers(graph: Neo4jRunner) -> None:
    _write(
        graph,
        *_daily("s1", "a", 10, amount=20.0),
        transaction("big", "s1", amount=900.0, hours=5),
        *_daily("s2", "b", 10, amount=20.0),
    )
    summary = score_all_usage(graph, CONFIG, as_of=T0 - timedelta(hours=13), subscriber_ids=["s1"])
    assert summary.subscribers == 1
    assert _stored(graph, "s1")["codes"] == []  # the big payment is on a later day
    assert _stored(graph, "s2")["risk"] is None  # not asked for
    score_all_usage(graph, CONFIG, as_of=T0 + timedelta(hours=6), subscriber_ids=["s1"])
    assert "usage.daily_charge_limit" in _stored(graph, "s1")["codes"]


def test_every_subscriber_gets_a_score_even_without_usage(graph: Neo4jRunner) -> None:
    _write(
        graph,
        identity("e1", "quiet", devices=[OLD_DEVICE]),
        # s1 transfers to s2: s2 exists as a counterparty only.
        transaction("t1", "s1", type="transfer", counterparty={"kind": "subscriber", "id": "s2"}),
    )
    summary = score_all_usage(graph, CONFIG)
    assert summary.subscribers == 3 and summary.flagged == 0
    for subscriber_id in ("quiet", "s1", "s2"):
        stored = _stored(graph, subscriber_id)
        assert (stored["risk"], stored["codes"], reasons.loads(stored["reasons"])) == (0.0, [], [])


def test_a_burst_and_many_destinations_are_read_from_raw_transactions(
    graph: Neo4jRunner,
) -> None:
    calls = [
        transaction(
            f"c{i}",
            "s1",
            type="call",
            hours=1 + i / 60,  # one a minute: 25 within 25 minutes
            duration_s=5.0,
            counterparty={"kind": "number", "id": f"+1201555{100 + i:04d}"},
        )
        for i in range(25)
    ] + [
        transaction(
            f"n{i}",
            "s1",
            type="sms",
            hours=4 + i / 4,  # then 20 texts to other numbers, four an hour
            counterparty={"kind": "number", "id": f"+1212555{1000 + i:04d}"},
        )
        for i in range(20)
    ]
    _write(graph, *calls)
    summary = score_all_usage(graph, CONFIG)
    assert summary.raw_days == 1
    burst = _reason(graph, "s1", "usage.burst")
    assert burst.evidence["count"] == 25
    assert burst.text == "25 transactions in 1 h from 2026-11-01 13:00 UTC (threshold 20)"
    destinations = _reason(graph, "s1", "usage.many_destinations")
    assert destinations.evidence["count"] == 45
    short = _reason(graph, "s1", "usage.short_calls")
    assert (short.evidence["calls"], short.evidence["short_calls"]) == (25, 25)


def test_takeover_new_device_spend_and_impossible_travel(graph: Neo4jRunner) -> None:
    def takeover_payment(i: int) -> dict[str, Any]:
        return transaction(
            f"ato{i}", "s1", amount=300.0, hours=1.75 + i / 4, device=NEW_DEVICE, location=LAGOS
        )

    _write(
        graph,
        identity("reg", "s1", hours=-24 * 60, devices=[OLD_DEVICE], ips=["198.51.100.7"]),
        *_daily("s1", "base", 20, amount=15.0, location=NEW_YORK),
        transaction("home-call", "s1", type="call", hours=0.5, location=NEW_YORK),
        identity("swap", "s1", type="device.seen", hours=1.5, devices=[NEW_DEVICE]),
        *[takeover_payment(i) for i in range(3)],
    )
    score_all_usage(graph, CONFIG)
    stored = _stored(graph, "s1")
    assert {"usage.daily_charge_limit", "usage.new_device", "usage.impossible_travel"} <= set(
        stored["codes"]
    )
    assert stored["risk"] > CONFIG.decision_block
    new_device = _reason(graph, "s1", "usage.new_device")
    assert new_device.evidence["spend_after"] == 900.0
    assert new_device.evidence["transactions_after"] == 3
    assert new_device.evidence["days_before"] == pytest.approx(60 + 1.5 / 24, abs=0.01)
    assert new_device.evidence["new_count"] == 1  # the registration's device is history
    assert new_device.text == (
        "3 transactions ($900) in 0.8 h from new device 356938… first seen "
        "2026-11-01 13:30 UTC, after 60 days on other devices"
    )
    travel = _reason(graph, "s1", "usage.impossible_travel")
    km = haversine_km(NEW_YORK["lat"], NEW_YORK["lon"], LAGOS["lat"], LAGOS["lon"])
    assert travel.evidence["distance_km"] == pytest.approx(km, abs=0.1)
    assert travel.evidence["hours"] == pytest.approx(1.25)
    # The real-time path (one evidence query) finds the same new device, as of the last payment.
    live = usage_score_for(graph, "s1", CONFIG, T0 + timedelta(hours=2.5))
    live_device = next(r for r in live.reasons if r.code == "usage.new_device")
    assert live_device.evidence == new_device.evidence
    assert live_device.text == new_device.text


def test_real_time_score_judges_the_last_24_hours(graph: Neo4jRunner) -> None:
    _write(
        graph,
        *_daily("s1", "base", 12, amount=20.0),
        transaction("big1", "s1", amount=350.0, hours=-16),  # the calendar day before
        transaction("big2", "s1", amount=300.0, hours=2),  # today: together in the last 24 h
    )
    as_of = T0 + timedelta(hours=4)
    score = usage_score_for(graph, "s1", CONFIG, as_of)
    charge = next(r for r in score.reasons if r.code == "usage.daily_charge_limit")
    assert charge.evidence["spend"] == 650.0
    assert "in the 24 h from 2026-10-31 16:00 UTC" in charge.text
    assert score.risk > 0
    # Nothing is stored by the real-time path, and an unknown subscriber scores zero.
    assert _stored(graph, "s1")["risk"] is None
    unknown = usage_score_for(graph, "nobody", CONFIG, as_of)
    assert (unknown.risk, unknown.reasons) == (0.0, [])
    # The batch sees calendar days: $350 and $300 on different days stay under the limit.
    score_all_usage(graph, CONFIG, as_of=as_of)
    assert "usage.daily_charge_limit" not in _stored(graph, "s1")["codes"]


def test_rescoring_overwrites_the_previous_score(graph: Neo4jRunner) -> None:
    _write(graph, *_daily("s1", "a", 10, amount=20.0), transaction("big", "s1", amount=700.0))
    score_all_usage(graph, CONFIG)
    first = _stored(graph, "s1")
    assert first["codes"] == ["usage.daily_charge_limit", "usage.zscore_spend"]
    score_all_usage(graph, ScoringConfig(daily_charge_limit=1000, zscore_threshold=100))
    again = _stored(graph, "s1")
    assert again["codes"] == []
    assert again["scored_at"].to_native() >= first["scored_at"].to_native()
