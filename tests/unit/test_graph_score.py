"""Ring risk and a subscriber's graph risk from hand-built graph facts, without a graph."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringwatch.config import ScoringConfig
from ringwatch.scoring import reasons
from ringwatch.scoring.graph import (
    RingFacts,
    Scored,
    SharedIdentifier,
    SubscriberFacts,
    masked,
    noisy_or,
    ring_facts,
    ring_risk,
    subscriber_graph_risk,
)

CONFIG = ScoringConfig()  # new_account_days = 30
AS_OF = datetime(2024, 3, 30, 12, 0, tzinfo=UTC)

ADDRESS = SharedIdentifier("HAS_ADDRESS", "ADDR-12-high-street", 3)
DEVICE = SharedIdentifier("USES_DEVICE", "DEV-7f3a9c21e0", 5)
CARD = SharedIdentifier("PAYS_WITH", "CARD-4242-9911", 5)


def reason(scored: Scored, code: str) -> reasons.Reason:
    [found] = [r for r in scored.reasons if r.code == code]
    return found


def household(*, label: str | None = None) -> list[SubscriberFacts]:
    """Three accounts opened years apart at one address: a family, not a ring."""
    opened = [datetime(2015, 1, 10), datetime(2018, 6, 1), datetime(2021, 9, 15)]
    return [
        SubscriberFacts(
            f"home-{index}",
            created_at=at.replace(tzinfo=UTC),
            label=label if index == 0 else None,
            ring_id="R-1",
            shared=[ADDRESS],
        )
        for index, at in enumerate(opened)
    ]


def multi_account_ring(*, label: str | None = None) -> list[SubscriberFacts]:
    """Five accounts opened 2 days apart (8 days in all), one device and one card between them."""
    return [
        SubscriberFacts(
            f"mule-{index}",
            created_at=datetime(2024, 3, 15, tzinfo=UTC) + timedelta(days=2 * index),
            label=label if index == 0 else None,
            ring_id="R-2",
            shared=[DEVICE, CARD],
        )
        for index in range(5)
    ]


def scored_ring(ring_id: str, members: list[SubscriberFacts]) -> tuple[RingFacts, Scored]:
    facts = ring_facts(ring_id, members, as_of=AS_OF, config=CONFIG)
    return facts, ring_risk(facts)


# ------------------------------------------------------------------------- helpers


def test_masked_keeps_six_characters_of_a_long_identifier() -> None:
    assert masked("DEV-7f3a9c21e0") == "DEV-7f…"
    assert masked("abcdef") == "abcdef"  # six characters or fewer are shown whole
    assert masked("") == ""


def test_noisy_or_adds_independent_evidence_and_clamps_each_strength() -> None:
    assert noisy_or([]) == 0.0
    # 1 - (1 - 0.5)(1 - 0.5) = 1 - 0.25 = 0.75
    assert noisy_or([0.5, 0.5]) == pytest.approx(0.75)
    # 1 - (1 - 0.2)(1 - 0.3)(1 - 0.5) = 1 - 0.8 * 0.7 * 0.5 = 1 - 0.28 = 0.72
    assert noisy_or([0.2, 0.3, 0.5]) == pytest.approx(0.72)
    # Out-of-range strengths are clamped: -1 -> 0, 2 -> 1.
    assert noisy_or([-1.0]) == 0.0
    assert noisy_or([2.0, 0.1]) == 1.0


# ------------------------------------------------------------------------- ring facts


def test_household_facts() -> None:
    facts = ring_facts("R-1", household(), as_of=AS_OF, config=CONFIG)

    assert facts.size == 3
    assert facts.members == ["home-0", "home-1", "home-2"]
    assert facts.identifier_types == {"HAS_ADDRESS": 1}
    assert facts.shared_identifiers == 1
    assert facts.strong_shared == 0  # an address is not a strong identifier
    assert facts.max_accounts_per_identifier == 3
    # One address links all three: pairs (0,1), (0,2), (1,2) of 3 * 2 / 2 = 3 -> 3 / 3 = 1.0
    assert facts.density == 1.0
    assert facts.new_account_share == 0.0
    # Signups years apart: the largest 21-day window holds one member -> 1 / 3.
    assert facts.signup_burst_share == pytest.approx(1 / 3)
    assert facts.top_identifier == ("HAS_ADDRESS", "ADDR-12-high-street", 3)


def test_density_and_signup_burst_share_exact() -> None:
    as_of = datetime(2024, 6, 30, tzinfo=UTC)
    phone = SharedIdentifier("HAS_PHONE", "PHONE-only-d-inside", 2)  # shared with an outsider
    members = [
        SubscriberFacts("a", created_at=datetime(2024, 1, 1, tzinfo=UTC),
                        shared=[SharedIdentifier("USES_DEVICE", "D1", 2)], usage_risk=0.4),
        SubscriberFacts("b", created_at=datetime(2024, 1, 11, tzinfo=UTC),
                        shared=[SharedIdentifier("USES_DEVICE", "D1", 2),
                                SharedIdentifier("HAS_ADDRESS", "A1", 2)], usage_risk=0.4),
        SubscriberFacts("c", created_at=datetime(2024, 1, 21, tzinfo=UTC),
                        shared=[SharedIdentifier("HAS_ADDRESS", "A1", 2)], usage_risk=0.4),
        SubscriberFacts("d", created_at=datetime(2024, 6, 20, tzinfo=UTC),
                        shared=[phone], usage_risk=0.4),
    ]  # fmt: skip

    facts = ring_facts("R-5", members, as_of=as_of, config=CONFIG)

    # Linked pairs: (a,b) by D1, (b,c) by A1; d's phone is shared with nobody inside.
    # 2 linked of 4 * 3 / 2 = 6 possible -> 2 / 6 = 1/3.
    assert facts.density == pytest.approx(1 / 3)
    assert facts.identifier_types == {"USES_DEVICE": 1, "HAS_ADDRESS": 1}
    assert facts.shared_identifiers == 2
    assert facts.max_accounts_per_identifier == 2
    assert facts.strong_shared == 0  # the device is shared by 2 members, fewer than 3
    # a, b, c opened on days 0, 10, 20 (within 21 days); d months later -> 3 / 4 = 0.75.
    assert facts.signup_burst_share == 0.75
    # Only d opened within 30 days of 30 June (cut-off 31 May) -> 1 / 4.
    assert facts.new_account_share == 0.25
    assert facts.mean_usage_risk == pytest.approx(0.4)

    scored = ring_risk(facts)
    # signup burst: 0.35 + 0.4 * 0.25 = 0.45; usage: 0.5 * 0.4 = 0.2; no strong sharing, not
    # dense in strong types. Risk = 1 - (1 - 0.45)(1 - 0.2) = 1 - 0.55 * 0.8 = 0.56.
    assert scored.risk == pytest.approx(0.56)
    assert reasons.codes(scored.reasons) == ["ring.signup_burst", "ring.usage", "ring.members"]
    assert reason(scored, "ring.signup_burst").weight == pytest.approx(0.45)
    assert reason(scored, "ring.usage").weight == pytest.approx(0.2)


def test_signup_window_is_twenty_one_days_inclusive() -> None:
    start = datetime(2023, 1, 1, tzinfo=UTC)

    def share(*days: int) -> float:
        members = [
            SubscriberFacts(f"s{i}", created_at=start + timedelta(days=d))
            for i, d in enumerate(days)
        ]
        return ring_facts("R-1", members, as_of=AS_OF, config=CONFIG).signup_burst_share

    assert share(0, 21, 21) == 1.0  # exactly 21 days apart still counts: 3 / 3
    assert share(0, 21, 22) == pytest.approx(2 / 3)  # 0..22 is 22 days: best window 2 / 3
    assert share(0, 10) == 0.0  # fewer than three members never make a burst
    # Members without a creation date count in the denominator only: 2 dated within a window,
    # 1 undated -> 2 / 3.
    members = [
        SubscriberFacts("x", created_at=start),
        SubscriberFacts("y", created_at=start + timedelta(days=1)),
        SubscriberFacts("z"),
    ]
    assert ring_facts("R-1", members, as_of=AS_OF, config=CONFIG).signup_burst_share == (
        pytest.approx(2 / 3)
    )


def test_multi_account_ring_facts() -> None:
    facts = ring_facts("R-2", multi_account_ring(), as_of=AS_OF, config=CONFIG)

    assert facts.identifier_types == {"USES_DEVICE": 1, "PAYS_WITH": 1}
    assert facts.strong_shared == 2  # device and card, each used by 5 >= 3 members
    assert facts.max_accounts_per_identifier == 5
    # Every pair shares the device: 5 * 4 / 2 = 10 of 10 -> 1.0
    assert facts.density == 1.0
    # Opened 15..23 March, all within 30 days of 30 March and within one 21-day window.
    assert facts.new_account_share == 1.0
    assert facts.signup_burst_share == 1.0
    assert facts.top_identifier == ("USES_DEVICE", DEVICE.id, 5)


# ------------------------------------------------------------------------- ring risk


def test_household_is_low_risk_without_a_signup_burst() -> None:
    _, scored = scored_ring("R-1", household())

    assert scored.risk < 0.3
    assert scored.risk == 0.0  # one shared address and nothing else is no evidence at all
    codes = reasons.codes(scored.reasons)
    assert "ring.signup_burst" not in codes
    assert "ring.shared_identifier" not in codes  # an address shared by 3 is not strong
    assert codes == ["ring.members"]
    assert scored.reasons[0].text == "3 subscribers linked by 1 shared identifiers (1 address)"


def test_multi_account_ring_is_high_risk_with_burst_and_shared_identifier() -> None:
    _, scored = scored_ring("R-2", multi_account_ring())

    # burst: 0.35 + 0.4 * 1.0 = 0.75
    # shared identifier: min(0.6, 0.2 + 0.05 * 5) = 0.45
    # dense: 2 strong types, density 1.0 -> 0.15 * 2 * 1.0 = 0.3
    # risk = 1 - (1 - 0.75)(1 - 0.45)(1 - 0.3) = 1 - 0.25 * 0.55 * 0.7 = 1 - 0.09625 = 0.90375
    assert scored.risk > 0.5
    assert scored.risk == pytest.approx(0.90375)
    assert reasons.codes(scored.reasons) == [
        "ring.signup_burst",
        "ring.shared_identifier",
        "ring.dense",
        "ring.members",
    ]
    burst = reason(scored, "ring.signup_burst")
    assert burst.weight == pytest.approx(0.75)
    assert burst.text == (
        "100% of members opened their accounts within 21 days of each other (100% new accounts)"
    )
    shared = reason(scored, "ring.shared_identifier")
    assert shared.weight == pytest.approx(0.45)
    assert shared.text == "device DEV-7f… used by 5 accounts in this ring"
    assert DEVICE.id not in shared.text  # the identifier itself is never shown whole
    assert shared.evidence == {
        "identifier_type": "USES_DEVICE",
        "identifier": "DEV-7f…",
        "accounts": 5,
    }
    assert reason(scored, "ring.dense").weight == pytest.approx(0.3)


def test_a_labelled_fraud_member_makes_the_ring_high_risk() -> None:
    _, scored = scored_ring("R-1", household(label="fraud"))

    # 0.6 + 0.4 * 1 / 3 = 0.7333..., the only evidence in the household
    assert scored.risk == pytest.approx(0.6 + 0.4 / 3)
    assert scored.risk >= 0.6
    labelled = reason(scored, "ring.labelled_fraud")
    assert labelled.text == "1 of 3 members confirmed fraud"
    assert scored.reasons[0] is labelled  # the strongest reason comes first


def test_a_labelled_legitimate_member_halves_the_ring_risk() -> None:
    _, plain = scored_ring("R-2", multi_account_ring())
    _, vouched = scored_ring("R-2", multi_account_ring(label="legitimate"))

    # 0.90375 * 0.5 ** 1 = 0.451875
    assert vouched.risk == pytest.approx(0.451875)
    assert vouched.risk == pytest.approx(plain.risk * 0.5)
    assert "ring.labelled_legitimate" in reasons.codes(vouched.reasons)


def test_fraud_and_legitimate_labels_together_are_not_damped() -> None:
    members = multi_account_ring(label="fraud")
    members[1].label = "legitimate"
    _, scored = scored_ring("R-2", members)
    # labelled fraud: 0.6 + 0.4 * 1 / 5 = 0.68; with the other evidence (0.75, 0.45, 0.3):
    # 1 - 0.32 * 0.25 * 0.55 * 0.7 = 1 - 0.0308 = 0.9692
    assert scored.risk == pytest.approx(0.9692)
    assert "ring.labelled_legitimate" not in reasons.codes(scored.reasons)


# ------------------------------------------------------------------------- subscriber risk


def test_subscriber_in_a_ring_carries_the_ring_risk_and_its_shared_device() -> None:
    members = multi_account_ring()
    ring, ring_scored = scored_ring("R-2", members)

    scored = subscriber_graph_risk(members[0], ring, ring_scored, as_of=AS_OF, config=CONFIG)

    # ring: a new account -> full share, 0.90375
    # shared identifier: the device (5 subscribers) -> min(0.5, 0.08 * 5) = 0.4
    # risk = 1 - (1 - 0.90375)(1 - 0.4) = 1 - 0.09625 * 0.6 = 0.94225
    assert scored.risk == pytest.approx(0.94225)
    ring_reason = reason(scored, "graph.ring")
    assert ring_reason.weight == pytest.approx(0.90375)
    assert ring_reason.text.startswith("member of ring R-2 (5 subscribers, ring risk 0.90): ")
    assert ring_reason.text.endswith("within 21 days of each other (100% new accounts)")
    shared = reason(scored, "graph.shared_identifier")
    assert shared.weight == pytest.approx(0.4)
    # The device and the card both have 5 subscribers; the first strongest one is named.
    assert shared.text == "shares device DEV-7f… with 4 subscribers in ring R-2"


def test_an_old_account_in_a_ring_of_new_ones_carries_less_of_the_ring_risk() -> None:
    new = multi_account_ring()
    old = SubscriberFacts(
        "lender",
        created_at=datetime(2016, 5, 1, tzinfo=UTC),
        ring_id="R-2",
        shared=[SharedIdentifier("HAS_ADDRESS", "ADDR-borrowed", 2)],
    )
    new[0].shared.append(SharedIdentifier("HAS_ADDRESS", "ADDR-borrowed", 2))
    ring, ring_scored = scored_ring("R-2", [*new, old])
    assert ring.new_account_share == pytest.approx(5 / 6)

    lender = subscriber_graph_risk(old, ring, ring_scored, as_of=AS_OF, config=CONFIG)
    mule = subscriber_graph_risk(new[1], ring, ring_scored, as_of=AS_OF, config=CONFIG)

    # The lender: 0.4 of the ring risk and nothing else (an address is not a strong link).
    assert lender.risk == pytest.approx(0.4 * ring_scored.risk)
    assert reasons.codes(lender.reasons) == ["graph.ring"]
    # A new member takes the full ring risk, plus its device shared by 5: 0.08 * 5 = 0.4.
    assert mule.risk == pytest.approx(noisy_or([ring_scored.risk, 0.4]))
    assert mule.risk > lender.risk


def test_household_member_has_no_graph_risk() -> None:
    members = household()
    ring, ring_scored = scored_ring("R-1", members)
    scored = subscriber_graph_risk(members[1], ring, ring_scored, as_of=AS_OF, config=CONFIG)
    assert scored.risk == 0.0
    assert reasons.codes(scored.reasons) == ["graph.ring"]


def test_same_person_from_similarity_of_at_least_one_half() -> None:
    facts = SubscriberFacts("s1", similarity_max=0.5, similar_to="s2")
    scored = subscriber_graph_risk(facts, None, None, as_of=AS_OF, config=CONFIG)

    # 0.4 * 0.5 = 0.2
    assert scored.risk == pytest.approx(0.2)
    same = reason(scored, "graph.same_person")
    assert same.text == (
        "50% of its weighted identifiers are shared with s2 (likely the same person)"
    )
    assert same.evidence == {"similar_to": "s2", "similarity": 0.5}

    below = SubscriberFacts("s1", similarity_max=0.49, similar_to="s2")
    assert subscriber_graph_risk(below, None, None, as_of=AS_OF, config=CONFIG).reasons == []
    nobody = SubscriberFacts("s1", similarity_max=0.9, similar_to=None)
    assert subscriber_graph_risk(nobody, None, None, as_of=AS_OF, config=CONFIG).risk == 0.0


def test_near_fraud_from_labelled_fraud_neighbours() -> None:
    facts = SubscriberFacts("s1", labelled_fraud_neighbours=2, similarity_max=0.5, similar_to="s2")
    scored = subscriber_graph_risk(facts, None, None, as_of=AS_OF, config=CONFIG)

    # near fraud: min(0.7, 0.4 + 0.1 * 2) = 0.6; same person: 0.4 * 0.5 = 0.2
    # risk = 1 - (1 - 0.6)(1 - 0.2) = 1 - 0.4 * 0.8 = 0.68
    assert scored.risk == pytest.approx(0.68)
    assert reasons.codes(scored.reasons) == ["graph.near_fraud", "graph.same_person"]
    near = reason(scored, "graph.near_fraud")
    assert near.weight == pytest.approx(0.6)
    assert near.text == "shares identifiers with 2 subscriber(s) confirmed fraud"

    # The strength is capped at 0.7: 0.4 + 0.1 * 10 = 1.4 -> 0.7
    many = SubscriberFacts("s1", labelled_fraud_neighbours=10)
    assert subscriber_graph_risk(many, None, None, as_of=AS_OF, config=CONFIG).risk == (
        pytest.approx(0.7)
    )


def test_a_strong_identifier_needs_three_subscribers_and_its_strength_is_capped() -> None:
    def risk(shared: SharedIdentifier) -> float:
        facts = SubscriberFacts("s1", shared=[shared])
        return subscriber_graph_risk(facts, None, None, as_of=AS_OF, config=CONFIG).risk

    assert risk(SharedIdentifier("USES_DEVICE", "d", 2)) == 0.0  # a pair is not enough
    assert risk(SharedIdentifier("USES_DEVICE", "d", 3)) == pytest.approx(0.24)  # 0.08 * 3
    assert risk(SharedIdentifier("USES_DEVICE", "d", 40)) == 0.5  # 0.08 * 40 = 3.2 -> 0.5
    assert risk(SharedIdentifier("HAS_ADDRESS", "a", 40)) == 0.0  # addresses are not strong


# ------------------------------------------------------------------------- properties

RELATIONSHIPS = ["USES_DEVICE", "HAS_ADDRESS", "PAYS_WITH", "HAS_PHONE", "HAS_EMAIL", "USES_IP"]
unit = st.floats(0.0, 1.0, allow_nan=False)
shared_identifiers = st.builds(
    SharedIdentifier,
    st.sampled_from(RELATIONSHIPS),
    st.sampled_from(["i1", "i2", "i3", "identifier-4"]),
    st.integers(1, 200),
)
subscriber_facts = st.builds(
    SubscriberFacts,
    st.text("abcdef", min_size=1, max_size=4),
    created_at=st.one_of(
        st.none(),
        st.datetimes(datetime(2010, 1, 1), datetime(2024, 3, 30), timezones=st.just(UTC)),
    ),
    label=st.sampled_from([None, "fraud", "legitimate"]),
    ring_id=st.just("R-1"),
    shared=st.lists(shared_identifiers, max_size=4),
    similarity_max=unit,
    similar_to=st.one_of(st.none(), st.just("other")),
    labelled_fraud_neighbours=st.integers(0, 20),
    usage_risk=unit,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(subscriber_facts, min_size=1, max_size=12, unique_by=lambda f: f.id))
def test_risks_and_shares_stay_in_the_unit_interval(members: list[SubscriberFacts]) -> None:
    ring, ring_scored = scored_ring("R-1", members)

    for share in (ring.density, ring.new_account_share, ring.signup_burst_share):
        assert 0.0 <= share <= 1.0
    assert 0.0 <= ring_scored.risk <= 1.0
    assert all(r.weight >= 0.0 for r in ring_scored.reasons)
    for member in members:
        scored = subscriber_graph_risk(member, ring, ring_scored, as_of=AS_OF, config=CONFIG)
        assert 0.0 <= scored.risk <= 1.0
        alone = subscriber_graph_risk(member, None, None, as_of=AS_OF, config=CONFIG)
        assert 0.0 <= alone.risk <= 1.0
        # Reasons come strongest first.
        weights = [r.weight for r in scored.reasons]
        assert weights == sorted(weights, reverse=True)


@given(st.lists(st.floats(-5.0, 5.0, allow_nan=False), max_size=10))
def test_noisy_or_is_in_the_unit_interval_and_at_least_its_strongest_part(
    strengths: list[float],
) -> None:
    combined = noisy_or(strengths)
    assert 0.0 <= combined <= 1.0
    clamped = [min(max(s, 0.0), 1.0) for s in strengths]
    assert combined >= max(clamped, default=0.0) - 1e-12
