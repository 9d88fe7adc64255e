from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, timedelta
from decimal import Decimal
from itertools import combinations
from pathlib import Path

import pytest

from ringwatch.exceptions import ConfigurationError
from ringwatch.ingest.events import (
    Call,
    DataUsage,
    DeviceSeen,
    EventFamily,
    Location,
    Payment,
    SimActivated,
    SubscriberClosed,
    SubscriberRegistered,
    Transfer,
    parse_event,
)
from ringwatch.ingest.formats import FileFormat, iter_records
from ringwatch.ingest.normalize import (
    IdentifierKind,
    PaymentKind,
    fingerprint_payment,
    normalize_identifier,
)
from ringwatch.ingest.simulate import (
    FRAUD_PATTERNS,
    LEGITIMATE,
    RING_PATTERNS,
    FraudRates,
    Simulation,
    SimulationConfig,
    read_ground_truth,
    simulate,
    simulate_to_directory,
    write_simulation,
)

# Every pattern on, the camouflaged rings (off by default) included.
CONFIG = SimulationConfig(
    subscribers=300, months=1, seed=7, fraud=FraudRates(camouflaged_ring=0.03)
)
KEY = b"test-payment-key"
KINDS = {
    "devices": IdentifierKind.DEVICE,
    "phones": IdentifierKind.PHONE,
    "emails": IdentifierKind.EMAIL,
    "addresses": IdentifierKind.ADDRESS,
    "payment_methods": IdentifierKind.PAYMENT,
    "ips": IdentifierKind.IP,
}

Identifier = tuple[IdentifierKind, str]


@pytest.fixture(scope="module")
def sim() -> Simulation:
    return simulate(CONFIG)


def _subscribers(sim: Simulation, pattern: str) -> list[str]:
    return [row.subscriber_id for row in sim.ground_truth if row.pattern == pattern]


def _ring_members(sim: Simulation, pattern: str) -> dict[str, list[str]]:
    """Subscriber ids of each ring of `pattern`, by ring id."""
    rings: dict[str, list[str]] = defaultdict(list)
    for row in sim.ground_truth:
        if row.pattern == pattern and row.ring_id is not None:
            rings[row.ring_id].append(row.subscriber_id)
    return rings


def _raw_identifiers(sim: Simulation) -> dict[str, list[tuple[IdentifierKind, str]]]:
    """Every identifier value each subscriber's identity events carry, as sent."""
    found: dict[str, list[tuple[IdentifierKind, str]]] = defaultdict(list)
    for event in sim.identity:
        for field, kind in KINDS.items():
            for raw in getattr(event.identifiers, field):
                found[event.subscriber_id].append((kind, raw))
    return found


def _normalised(kind: IdentifierKind, raw: str) -> str:
    return normalize_identifier(kind, raw, payment_key=KEY)


@pytest.fixture(scope="module")
def identifiers(sim: Simulation) -> dict[str, set[Identifier]]:
    return {
        subscriber: {(kind, _normalised(kind, raw)) for kind, raw in values}
        for subscriber, values in _raw_identifiers(sim).items()
    }


def _sharers(identifiers: dict[str, set[Identifier]]) -> dict[Identifier, set[str]]:
    users: dict[Identifier, set[str]] = defaultdict(set)
    for subscriber, values in identifiers.items():
        for value in values:
            users[value].add(subscriber)
    return users


# ---------------------------------------------------------------------------------- basics


def test_the_same_seed_gives_identical_output(sim: Simulation) -> None:
    again = simulate(CONFIG)
    assert again.ground_truth == sim.ground_truth
    assert again.identity == sim.identity
    assert again.transactions == sim.transactions
    assert again.labels == sim.labels
    other = simulate(CONFIG.model_copy(update={"seed": 8}))
    assert other.identity != sim.identity


def test_every_event_validates_from_its_json(sim: Simulation) -> None:
    families = (
        (EventFamily.IDENTITY, sim.identity),
        (EventFamily.TRANSACTIONS, sim.transactions),
        (EventFamily.LABELS, sim.labels),
    )
    for family, events in families:
        assert events
        for event in events:
            assert parse_event(family, event.model_dump_json(exclude_none=True)) == event


def test_events_are_sorted_utc_and_uniquely_identified(sim: Simulation) -> None:
    for events in (sim.identity, sim.transactions, sim.labels):
        times = [event.occurred_at for event in events]
        assert times == sorted(times)
        assert all(at.utcoffset() == timedelta(0) for at in times)
    event_ids = [e.event_id for e in [*sim.identity, *sim.transactions, *sim.labels]]
    assert len(event_ids) == len(set(event_ids))
    transaction_ids = [event.transaction_id for event in sim.transactions]
    assert len(transaction_ids) == len(set(transaction_ids))
    assert sim.transactions[0].occurred_at.astimezone(UTC).date() >= CONFIG.start
    assert (sim.transactions[-1].occurred_at.date() - CONFIG.start).days < CONFIG.days


def test_every_subscriber_registers_once_with_a_sim(sim: Simulation) -> None:
    registered = Counter(
        e.subscriber_id for e in sim.identity if isinstance(e, SubscriberRegistered)
    )
    activated = {e.subscriber_id for e in sim.identity if isinstance(e, SimActivated)}
    ids = {row.subscriber_id for row in sim.ground_truth}
    assert set(registered) == ids == activated
    assert set(registered.values()) == {1}
    assert len(ids) == CONFIG.subscribers


def test_identifiers_are_valid_and_normalise(sim: Simulation) -> None:
    for values in _raw_identifiers(sim).values():
        for kind, raw in values:
            _normalised(kind, raw)  # raises NormalisationError when invalid
            if kind is IdentifierKind.PAYMENT:
                assert fingerprint_payment(raw, key=KEY).kind is PaymentKind.CARD
    devices = {event.device for event in sim.transactions if event.device is not None}
    numbers = {
        event.counterparty.id
        for event in sim.transactions
        if event.counterparty is not None and event.counterparty.id.startswith("+")
    }
    for device in devices:
        _normalised(IdentifierKind.DEVICE, device)
    for number in numbers:
        _normalised(IdentifierKind.PHONE, number)


def test_every_fraud_pattern_is_present_with_ground_truth(sim: Simulation) -> None:
    patterns = Counter(row.pattern for row in sim.ground_truth)
    assert set(FRAUD_PATTERNS) <= set(patterns)
    assert patterns[LEGITIMATE] > CONFIG.subscribers // 2
    for row in sim.ground_truth:
        assert row.is_fraud == (row.pattern != LEGITIMATE)
        assert (row.ring_id is not None) == (row.pattern in RING_PATTERNS)
    rings: dict[str, set[str]] = defaultdict(set)
    for row in sim.ground_truth:
        if row.ring_id is not None:
            rings[row.ring_id].add(row.pattern)
    assert all(len(patterns_in_ring) == 1 for patterns_in_ring in rings.values())


def test_fraud_rates_drive_the_amount_of_fraud() -> None:
    quiet = simulate(
        CONFIG.model_copy(
            update={"fraud": FraudRates(**dict.fromkeys(FRAUD_PATTERNS, 0.0)), "months": 1}
        )
    )
    assert {row.pattern for row in quiet.ground_truth} == {LEGITIMATE}
    with pytest.raises(ValueError, match="fraud rates add up"):
        SimulationConfig(fraud=FraudRates(**dict.fromkeys(FRAUD_PATTERNS, 0.1)))
    with pytest.raises(ConfigurationError, match="would be fraudulent"):
        simulate(SimulationConfig(subscribers=100, fraud=FraudRates(device_farm=0.4)))


# --------------------------------------------------------------------------------- patterns


def test_sim_boxes_make_many_short_night_calls_to_distinct_numbers(sim: Simulation) -> None:
    calls: dict[str, list[Call]] = defaultdict(list)
    for event in sim.transactions:
        if isinstance(event, Call) and event.direction == "outgoing":
            calls[event.subscriber_id].append(event)
    legitimate = [len(calls[s]) for s in _subscribers(sim, LEGITIMATE)]
    for subscriber in _subscribers(sim, "sim_box"):
        made = calls[subscriber]
        assert len(made) >= 500
        assert len(made) > 10 * statistics.median(legitimate)
        assert statistics.median(call.duration_s for call in made) < 30
        assert len({call.counterparty.id for call in made}) >= 0.8 * len(made)
        night = [call for call in made if call.occurred_at.hour >= 22 or call.occurred_at.hour < 6]
        assert len(night) >= 0.3 * len(made)


def _daily_charges(sim: Simulation, subscriber: str) -> dict[int, Decimal]:
    daily: dict[int, Decimal] = defaultdict(Decimal)
    for event in sim.transactions:
        if event.subscriber_id == subscriber and event.amount is not None:
            day = (event.occurred_at.date() - CONFIG.start).days
            daily[day] += event.amount
    return daily


def test_bill_shock_is_one_day_over_500_after_a_normal_history(sim: Simulation) -> None:
    for subscriber in _subscribers(sim, "bill_shock"):
        daily = _daily_charges(sim, subscriber)
        shocks = [day for day, total in daily.items() if total >= 500]
        assert len(shocks) == 1
        data: dict[int, float] = defaultdict(float)
        for event in sim.transactions:
            if event.subscriber_id == subscriber and isinstance(event, DataUsage):
                data[(event.occurred_at.date() - CONFIG.start).days] += event.data_mb
        history = [total for day, total in data.items() if day < shocks[0]]
        assert len(history) >= 7
        # Far above its own baseline: the z-score a usage rule computes is well over 3.
        z_score = (data[shocks[0]] - statistics.mean(history)) / statistics.stdev(history)
        assert z_score > 5
    for subscriber in _subscribers(sim, LEGITIMATE):
        assert all(total < 500 for total in _daily_charges(sim, subscriber).values())


def test_device_farm_devices_are_each_shared_by_ten_or_more_accounts(
    sim: Simulation, identifiers: dict[str, set[Identifier]]
) -> None:
    farms = _ring_members(sim, "device_farm")
    assert farms
    for members in farms.values():
        users: dict[str, set[str]] = defaultdict(set)
        for subscriber in members:
            for kind, value in identifiers[subscriber]:
                if kind is IdentifierKind.DEVICE:
                    users[value].add(subscriber)
        farm_devices = [value for value, who in users.items() if len(who) > 1]
        assert 2 <= len(farm_devices) <= 3
        assert all(len(users[device]) >= 10 for device in farm_devices)
        registered = [
            e.occurred_at
            for e in sim.identity
            if isinstance(e, SubscriberRegistered) and e.subscriber_id in members
        ]
        assert max(registered) - min(registered) <= timedelta(hours=6)


def test_multi_sim_rings_come_together_only_after_normalisation(sim: Simulation) -> None:
    rings = _ring_members(sim, "multi_sim_ring")
    raw = _raw_identifiers(sim)
    for members in rings.values():
        # Normalised values link every member, and more pairs of them than exact strings do.
        by_raw: dict[str, set[str]] = defaultdict(set)
        by_value: dict[Identifier, set[str]] = defaultdict(set)
        spellings: dict[Identifier, set[str]] = defaultdict(set)
        for subscriber in members:
            for kind, text in raw[subscriber]:
                value = (kind, _normalised(kind, text))
                by_raw[text].add(subscriber)
                by_value[value].add(subscriber)
                spellings[value].add(text)
        shared = [value for value, who in by_value.items() if len(who) >= 2]
        assert any(len(spellings[value]) >= 2 for value in shared)
        assert _components(members, by_value) == 1
        assert _linked_pairs(by_value.values()) > _linked_pairs(by_raw.values())


def _linked_pairs(groups: Iterable[set[str]]) -> int:
    return len({pair for who in groups for pair in combinations(sorted(who), 2)})


def _components(members: list[str], links: dict[Identifier, set[str]]) -> int:
    parent = {member: member for member in members}

    def root(node: str) -> str:
        while parent[node] != node:
            node = parent[node]
        return node

    for who in links.values():
        first, *rest = sorted(who)
        for other in rest:
            parent[root(other)] = root(first)
    return len({root(member) for member in members})


def test_account_takeover_is_a_new_device_far_away_right_after_a_local_call(
    sim: Simulation,
) -> None:
    for subscriber in _subscribers(sim, "account_takeover"):
        seen = [
            e for e in sim.identity if isinstance(e, DeviceSeen) and e.subscriber_id == subscriber
        ]
        takeover = seen[-1]
        events = [e for e in sim.transactions if e.subscriber_id == subscriber]
        before = [e for e in events if e.occurred_at < takeover.occurred_at]
        burst = [e for e in events if e.occurred_at > takeover.occurred_at]
        assert before and burst
        assert all(isinstance(e, Payment | Transfer) for e in burst)
        assert all(e.device == takeover.identifiers.devices[0] for e in burst)
        assert burst[-1].occurred_at - takeover.occurred_at <= timedelta(hours=7)
        last_home, first_away = before[-1], burst[0]
        assert last_home.location is not None and first_away.location is not None
        assert first_away.location.country != "US"
        hours = (first_away.occurred_at - last_home.occurred_at).total_seconds() / 3600
        assert _km(last_home.location, first_away.location) / hours > 1000


def _km(a: Location, b: Location) -> float:
    """Great-circle distance."""
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    dp, dl = p2 - p1, math.radians(b.lon - a.lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371 * math.asin(math.sqrt(h))


def test_bust_out_spikes_payments_then_closes(sim: Simulation) -> None:
    for subscriber in _subscribers(sim, "bust_out"):
        (closed,) = [
            e
            for e in sim.identity
            if isinstance(e, SubscriberClosed) and e.subscriber_id == subscriber
        ]
        money = [
            e
            for e in sim.transactions
            if e.subscriber_id == subscriber and isinstance(e, Payment | Transfer)
        ]
        assert all(e.occurred_at < closed.occurred_at for e in money)
        last_week = [e for e in money if closed.occurred_at - e.occurred_at <= timedelta(days=7)]
        assert len(last_week) >= 10
        assert sum(e.amount for e in last_week) > 10 * sum(
            (e.amount for e in money if e not in last_week), Decimal(0)
        )


def test_camouflaged_rings_look_ordinary_until_they_move_to_shared_handsets(
    sim: Simulation, identifiers: dict[str, set[Identifier]]
) -> None:
    rings = _ring_members(sim, "camouflaged_ring")
    assert rings
    legitimate = set(_subscribers(sim, LEGITIMATE))
    at_signup: dict[str, set[Identifier]] = {}
    for event in sim.identity:
        if isinstance(event, SubscriberRegistered):
            at_signup[event.subscriber_id] = {
                (kind, _normalised(kind, raw))
                for field, kind in KINDS.items()
                for raw in getattr(event.identifiers, field)
            }
    signup_users = _sharers(at_signup)
    borrowed_addresses = 0
    for members in rings.values():
        assert 4 <= len(members) <= 10
        ring = set(members)
        for subscriber in members:
            # At signup the account shares nothing with its ring: fresh handset, card, phone
            # and email; its address, when shared, is a legitimate household's.
            for kind, value in at_signup[subscriber]:
                others = signup_users[(kind, value)] - {subscriber}
                assert not others & ring
                if kind is IdentifierKind.ADDRESS and others:
                    assert others <= legitimate
                    borrowed_addresses += 1
                elif kind in (IdentifierKind.DEVICE, IdentifierKind.PAYMENT):
                    assert not others
        # Later every account moves to one of the ring's 2-3 handsets, 1-5 accounts on each,
        # used by nobody outside the ring.
        moves = [
            event
            for event in sim.identity
            if isinstance(event, DeviceSeen) and event.subscriber_id in ring
        ]
        assert {event.subscriber_id for event in moves} == ring
        users: dict[str, set[str]] = defaultdict(set)
        for event in moves:
            users[_normalised(IdentifierKind.DEVICE, event.identifiers.devices[0])].add(
                event.subscriber_id
            )
        assert 2 <= len(users) <= 3
        assert all(1 <= len(who) <= 5 for who in users.values())
        assert any(len(who) >= 2 for who in users.values())
        for handset, who in users.items():
            assert signup_users[(IdentifierKind.DEVICE, handset)] == set()
            assert _sharers(identifiers)[(IdentifierKind.DEVICE, handset)] == who
        # Then modest transfers to one collecting account of the ring, after the move.
        moved = {event.subscriber_id: event.occurred_at for event in moves}
        transfers = [
            transfer
            for transfer in sim.transactions
            if isinstance(transfer, Transfer)
            and transfer.subscriber_id in ring
            and transfer.counterparty is not None
            and transfer.counterparty.kind == "subscriber"
            and transfer.counterparty.id in ring
        ]
        assert len({t.counterparty.id for t in transfers if t.counterparty}) == 1
        for transfer in transfers:
            assert transfer.occurred_at >= moved[transfer.subscriber_id]
            assert transfer.amount < Decimal(500)
    assert borrowed_addresses >= 1


def test_legitimate_households_share_an_address_spelt_differently(sim: Simulation) -> None:
    legitimate = set(_subscribers(sim, LEGITIMATE))
    addresses: dict[str, set[str]] = defaultdict(set)
    spellings: dict[str, set[str]] = defaultdict(set)
    for event in sim.identity:
        if isinstance(event, SubscriberRegistered) and event.subscriber_id in legitimate:
            for raw in event.identifiers.addresses:
                value = _normalised(IdentifierKind.ADDRESS, raw)
                addresses[value].add(event.subscriber_id)
                spellings[value].add(raw)
    shared = [value for value, who in addresses.items() if len(who) >= 2]
    assert len(shared) >= 10
    assert any(len(spellings[value]) >= 2 for value in shared)


def test_a_naive_shared_identifier_rule_flags_legitimate_subscribers(
    sim: Simulation, identifiers: dict[str, set[Identifier]]
) -> None:
    flagged = set()
    for who in _sharers(identifiers).values():
        if len(who) >= 3:
            flagged |= who
    legitimate = set(_subscribers(sim, LEGITIMATE))
    assert len(flagged & legitimate) >= 0.2 * len(legitimate)
    # Carrier-NAT IPs are hubs: one identifier seen by many unrelated subscribers.
    biggest = max(len(who) for who in _sharers(identifiers).values())
    assert biggest >= 30


def test_labels_cover_some_fraud_and_some_legitimate_subscribers(sim: Simulation) -> None:
    truth = {row.subscriber_id: row for row in sim.ground_truth}
    transactions = {event.transaction_id: event for event in sim.transactions}
    labelled = {label.subscriber_id for label in sim.labels}
    fraud = {row.subscriber_id for row in sim.ground_truth if row.is_fraud}
    assert 0 < len(labelled & fraud) < len(fraud)
    for label in sim.labels:
        assert (label.label == "fraud") == truth[label.subscriber_id].is_fraud
        if label.transaction_id is not None:
            assert transactions[label.transaction_id].subscriber_id == label.subscriber_id
    assert any(label.label == "legitimate" for label in sim.labels)


# ---------------------------------------------------------------------------------- files


def test_written_files_read_back_and_streaming_writes_the_same(
    sim: Simulation, tmp_path: Path
) -> None:
    written = write_simulation(sim, tmp_path / "memory", "jsonl")
    counts = simulate_to_directory(CONFIG, tmp_path / "streamed", "jsonl")
    assert counts == {
        "identity": len(sim.identity),
        "transactions": len(sim.transactions),
        "labels": len(sim.labels),
        "ground_truth": CONFIG.subscribers,
    }
    for name in ("identity.jsonl", "transactions.jsonl", "labels.jsonl", "ground_truth.csv"):
        assert (tmp_path / "memory" / name).read_bytes() == (
            tmp_path / "streamed" / name
        ).read_bytes()
    assert read_ground_truth(written["ground_truth"]) == sim.ground_truth


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_flat_formats_hold_the_simulation(sim: Simulation, tmp_path: Path, fmt: FileFormat) -> None:
    small = Simulation(
        sim.config, sim.identity, sim.transactions[:2000], sim.labels, sim.ground_truth
    )
    paths = write_simulation(small, tmp_path, fmt)
    assert paths["identity"].name == f"identity.{fmt}"
    for family, events in (
        (EventFamily.IDENTITY, small.identity),
        (EventFamily.TRANSACTIONS, small.transactions),
        (EventFamily.LABELS, small.labels),
    ):
        records = list(iter_records(paths[str(family)], family))
        parsed = [parse_event(family, record.raw or b"") for record in records]
        assert parsed == events


def test_carrier_nat_addresses_stay_valid_past_255_blocks() -> None:
    from ringwatch.ingest.simulate import _carrier_nat_block

    assert _carrier_nat_block(0) == "172.58.10"  # unchanged for populations that needed few
    assert _carrier_nat_block(245) == "172.58.255"
    assert _carrier_nat_block(246) == "172.59.0"
    blocks = {_carrier_nat_block(i) for i in range(5000)}
    assert len(blocks) == 5000
    assert all(all(0 <= int(octet) <= 255 for octet in b.split(".")) for b in blocks)
