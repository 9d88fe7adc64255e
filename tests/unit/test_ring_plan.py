"""Matching a run's components to the existing rings (`plan_reconciliation`) and the live
tracker's changes (`plan_live_changes`), without a graph."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from ringwatch.graph.rings import (
    LiveChange,
    RingPlan,
    plan_live_changes,
    plan_reconciliation,
    ring_number,
)


def members(prefix: str, count: int) -> set[str]:
    return {f"{prefix}{index}" for index in range(count)}


def created_sets(plan: RingPlan) -> list[set[str]]:
    return [set(m) for _, m, _ in plan.created]


def survivors(plan: RingPlan, rings: dict[str, set[str]]) -> set[str]:
    return set(rings) - set(plan.merged_into) - set(plan.dissolved)


def final_members(plan: RingPlan, rings: dict[str, set[str]], ring: str) -> set[str]:
    return (rings[ring] - plan.removed.get(ring, set())) | plan.added.get(ring, set())


# ---------------------------------------------------------------------------- examples


def test_ring_number_reads_the_number_after_the_prefix() -> None:
    assert ring_number("R-12") == 12
    assert ring_number("R-9") < ring_number("R-10")  # numeric, not lexicographic


def test_nothing_changes_when_every_ring_is_exactly_its_component() -> None:
    rings = {"R-1": {"a", "b", "c"}, "R-2": {"d", "e", "f", "g"}}
    components = {10: {"a", "b", "c"}, 20: {"d", "e", "f", "g"}}

    plan = plan_reconciliation(components, rings)

    assert plan.unchanged == 2
    assert plan.created == []
    assert plan.added == {}
    assert plan.removed == {}
    assert plan.merged_into == {}
    assert plan.dissolved == []
    assert plan.split_into == {}


def test_component_ids_need_not_match_between_runs() -> None:
    # WCC component ids change from run to run; only shared members matter.
    rings = {"R-1": {"a", "b", "c"}}
    plan = plan_reconciliation({999: {"a", "b", "c"}}, rings)
    assert plan.unchanged == 1
    assert plan.created == []


def test_a_brand_new_component_becomes_a_new_ring_with_no_lineage() -> None:
    rings = {"R-1": {"a", "b", "c"}}
    components = {1: {"a", "b", "c"}, 2: {"x", "y", "z"}}

    plan = plan_reconciliation(components, rings)

    assert plan.created == [(0, {"x", "y", "z"}, [])]
    assert plan.split_into == {}
    assert plan.unchanged == 1


def test_no_rings_yet_every_component_is_created_with_distinct_placeholders() -> None:
    components = {5: {"a", "b", "c"}, 3: {"d", "e", "f"}}

    plan = plan_reconciliation(components, {})

    # Placeholders follow the sorted component ids: component 3 -> 0, component 5 -> 1.
    assert plan.created == [(0, {"d", "e", "f"}, []), (1, {"a", "b", "c"}, [])]


def test_a_ring_grows_by_the_new_members_of_its_component() -> None:
    rings = {"R-4": {"a", "b", "c"}}
    components = {1: {"a", "b", "c", "d", "e"}}

    plan = plan_reconciliation(components, rings)

    assert plan.added == {"R-4": {"d", "e"}}
    assert plan.removed == {}
    assert plan.created == []
    assert plan.unchanged == 0


def test_a_ring_shrinks_when_members_leave_its_component() -> None:
    rings = {"R-4": {"a", "b", "c", "d", "e"}}
    components = {1: {"a", "b", "c"}}  # d and e are now in no component of ring size

    plan = plan_reconciliation(components, rings)

    assert plan.removed == {"R-4": {"d", "e"}}
    assert plan.added == {}
    assert plan.dissolved == []
    assert plan.unchanged == 0


def test_a_ring_can_gain_and_lose_members_in_one_run() -> None:
    rings = {"R-1": {"a", "b", "c", "d"}}
    components = {1: {"a", "b", "c", "x"}}

    plan = plan_reconciliation(components, rings)

    assert plan.added == {"R-1": {"x"}}
    assert plan.removed == {"R-1": {"d"}}
    assert plan.unchanged == 0


def test_two_rings_merging_keep_the_id_of_the_one_with_more_members_in_the_component() -> None:
    # R-1 brings 3 members, R-2 brings 4: R-2 has the larger overlap and survives although it
    # is the younger ring.
    rings = {"R-1": {"a", "b", "c"}, "R-2": {"d", "e", "f", "g"}}
    components = {7: {"a", "b", "c", "d", "e", "f", "g", "link"}}

    plan = plan_reconciliation(components, rings)

    assert plan.merged_into == {"R-1": "R-2"}
    # The survivor receives the absorbed ring's members and the new link.
    assert plan.added == {"R-2": {"a", "b", "c", "link"}}
    assert plan.removed == {}
    assert plan.created == []
    assert plan.dissolved == []


def test_on_equal_overlap_the_older_ring_survives_by_number_not_by_text() -> None:
    # 3 members each; "R-10" < "R-9" as text, but R-9 is the older ring.
    rings = {"R-10": {"a", "b", "c"}, "R-9": {"d", "e", "f"}}
    components = {1: {"a", "b", "c", "d", "e", "f"}}

    plan = plan_reconciliation(components, rings)

    assert plan.merged_into == {"R-10": "R-9"}
    assert plan.added == {"R-9": {"a", "b", "c"}}


def test_a_merged_ring_that_also_lost_members_still_merges_into_the_survivor() -> None:
    # R-2 keeps 2 members in the merged component; its third member fell out of every component.
    rings = {"R-1": {"a", "b", "c"}, "R-2": {"d", "e", "gone"}}
    components = {1: {"a", "b", "c", "d", "e"}}

    plan = plan_reconciliation(components, rings)

    assert plan.merged_into == {"R-2": "R-1"}
    assert plan.added == {"R-1": {"d", "e"}}
    assert plan.dissolved == []


def test_a_split_keeps_the_id_on_the_bigger_part_and_creates_the_other() -> None:
    rings = {"R-3": {"a", "b", "c", "d", "e", "f", "g"}}
    # 4 members stay together, 3 form their own component of ring size.
    components = {1: {"e", "f", "g"}, 2: {"a", "b", "c", "d"}}

    plan = plan_reconciliation(components, rings)

    assert plan.created == [(0, {"e", "f", "g"}, ["R-3"])]
    assert plan.split_into == {"R-3": [0]}
    assert plan.removed == {"R-3": {"e", "f", "g"}}
    assert plan.added == {}
    assert plan.merged_into == {}
    assert plan.dissolved == []


def test_a_three_way_split_lists_every_new_part() -> None:
    rings = {"R-1": members("m", 11)}
    # m0..m4 (5) stay, m5..m7 and m8..m10 (3 each) become new rings.
    components = {
        1: {"m0", "m1", "m2", "m3", "m4"},
        2: {"m5", "m6", "m7"},
        3: {"m8", "m9", "m10"},
    }

    plan = plan_reconciliation(components, rings)

    assert plan.split_into == {"R-1": [0, 1]}
    assert [(p, s) for p, _, s in plan.created] == [(0, ["R-1"]), (1, ["R-1"])]
    assert created_sets(plan) == [{"m5", "m6", "m7"}, {"m8", "m9", "m10"}]
    assert plan.removed == {"R-1": members("m", 11) - components[1]}


def test_a_ring_whose_members_are_in_no_component_is_dissolved() -> None:
    rings = {"R-1": {"a", "b", "c"}, "R-2": {"d", "e", "f"}}
    components = {1: {"a", "b", "c"}}

    plan = plan_reconciliation(components, rings)

    assert plan.dissolved == ["R-2"]
    assert plan.merged_into == {}
    assert plan.unchanged == 1


def test_a_ring_without_members_is_dissolved() -> None:
    plan = plan_reconciliation({}, {"R-1": set()})
    assert plan.dissolved == ["R-1"]


# ---------------------------------------------------------------------------- properties

MIN_SIZE = 3
RING_IDS = [f"R-{n}" for n in (1, 2, 3, 9, 10, 11)]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[dict[int, set[str]], dict[str, set[str]]]:
    population = [f"s{index}" for index in range(draw(st.integers(0, 30)))]
    # Each subscriber is in at most one component and at most one ring.
    component_choice = st.one_of(st.none(), st.integers(0, 5))
    ring_choice = st.one_of(st.none(), st.sampled_from(RING_IDS))
    components: dict[int, set[str]] = {}
    rings: dict[str, set[str]] = {}
    for member in population:
        component = draw(component_choice)
        if component is not None:
            components.setdefault(component, set()).add(member)
        ring = draw(ring_choice)
        if ring is not None:
            rings.setdefault(ring, set()).add(member)
    # Components arrive filtered to ring size.
    components = {c: m for c, m in components.items() if len(m) >= MIN_SIZE}
    return components, rings


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_every_component_member_ends_in_exactly_one_ring(
    scenario: tuple[dict[int, set[str]], dict[str, set[str]]],
) -> None:
    components, rings = scenario
    plan = plan_reconciliation(components, rings)

    kept = survivors(plan, rings)
    final = [final_members(plan, rings, ring) for ring in sorted(kept)] + created_sets(plan)
    seen = Counter(member for ring_members in final for member in ring_members)
    in_components = {member for m in components.values() for member in m}

    assert set(seen) == in_components  # nobody outside a component stays in a ring
    assert all(count == 1 for count in seen.values()), seen
    # After the plan, the rings are exactly the components, one ring per component.
    assert sorted(map(sorted, final)) == sorted(map(sorted, components.values()))


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_every_old_ring_has_exactly_one_fate(
    scenario: tuple[dict[int, set[str]], dict[str, set[str]]],
) -> None:
    components, rings = scenario
    plan = plan_reconciliation(components, rings)

    kept = survivors(plan, rings)
    merged, dissolved = set(plan.merged_into), set(plan.dissolved)
    assert len(plan.dissolved) == len(dissolved)
    assert not merged & dissolved
    assert not kept & (merged | dissolved)
    assert kept | merged | dissolved == set(rings)
    # Absorbed rings go into a survivor, never into another absorbed or dissolved ring.
    assert set(plan.merged_into.values()) <= kept
    # Changes are only planned for survivors, and are real changes.
    assert set(plan.added) <= kept
    assert set(plan.removed) <= kept
    for ring, added in plan.added.items():
        assert added and not added & rings[ring]
    for ring, removed in plan.removed.items():
        assert removed and removed <= rings[ring]
    changed = set(plan.added) | set(plan.removed)
    assert plan.unchanged == len(kept - changed)
    # Lineage: placeholders are distinct, splits come from survivors and name created rings.
    placeholders = [p for p, _, _ in plan.created]
    assert len(set(placeholders)) == len(placeholders)
    assert set(plan.split_into) <= kept
    for ring, parts in plan.split_into.items():
        assert set(parts) <= set(placeholders)
        for placeholder, _, split_from in plan.created:
            assert (placeholder in parts) == (ring in split_from)
    # One ring per component: survivors plus created rings.
    assert len(kept) + len(plan.created) == len(components)


# ------------------------------------------------------------------------------- live changes


def live(*components: tuple[list[str], list[str]], **sizes: int) -> list[LiveChange]:
    ring_sizes = {name.replace("_", "-"): size for name, size in sizes.items()}
    return plan_live_changes(components, ring_sizes, min_ring_size=3)


def test_loose_subscribers_form_a_ring_only_at_the_minimum_size() -> None:
    assert live(([], ["b", "a"])) == []
    assert live(([], ["c", "b", "a"])) == [LiveChange(["a", "b", "c"])]


def test_a_ring_with_nothing_new_is_left_alone() -> None:
    assert live((["R-1"], []), R_1=5) == []


def test_loose_subscribers_grow_the_ring_they_touch() -> None:
    assert live((["R-1"], ["z", "y"]), R_1=3) == [LiveChange(["y", "z"], "R-1", [])]


def test_the_largest_ring_survives_a_merge_and_the_oldest_of_equals() -> None:
    assert live((["R-1", "R-2"], []), R_1=3, R_2=4) == [LiveChange([], "R-2", ["R-1"])]
    # R-9 is older than R-10 although it sorts after it as text.
    assert live((["R-10", "R-9", "R-11"], ["x"]), R_9=3, R_10=3, R_11=3) == [
        LiveChange(["x"], "R-9", ["R-10", "R-11"])
    ]


def test_each_component_gets_its_own_change_in_order() -> None:
    changes = live(([], ["a", "b", "c"]), (["R-2"], []), (["R-3"], ["d"]), R_2=3, R_3=3)
    assert changes == [LiveChange(["a", "b", "c"]), LiveChange(["d"], "R-3", [])]
