"""The held-out protocol of `bench.quality`: whole groups in one fold, rotations, intervals."""

from __future__ import annotations

import numpy as np
import pytest

from bench.heldout import (
    Rotation,
    assign_folds,
    bootstrap_differences,
    component_groups,
    mean_interval,
)
from bench.quality import evaluation_cases
from ringwatch.ingest.simulate import GroundTruth


def test_components_are_joined_through_shared_ring_ids() -> None:
    ids = ["a", "b", "c", "d", "e", "f"]
    components: dict[str, int | None] = {"a": 1, "b": 1, "c": 2, "d": None, "e": 3, "f": None}
    rings: dict[str, str | None] = {"a": None, "b": "r1", "c": "r1", "d": "r2", "e": None}
    groups = component_groups(ids, components, rings)
    assert groups[0] == groups[1] == groups[2]  # component 1 and 2 share ring r1
    assert len({groups[0], groups[3], groups[4], groups[5]}) == 4  # d, e, f each alone


def test_folds_keep_every_group_whole_and_share_out_fraud_and_subscribers() -> None:
    rng = np.random.default_rng(1)
    sizes = rng.integers(1, 12, size=400)
    groups = np.repeat(np.arange(sizes.size), sizes)
    fraud = np.repeat(rng.random(sizes.size) < 0.1, sizes).astype(np.int64)
    fold_of = assign_folds(groups, fraud, 5, seed=0)
    for group in np.unique(groups):
        assert np.unique(fold_of[groups == group]).size == 1
    per_fold = np.bincount(fold_of, minlength=5)
    fraud_per_fold = np.bincount(fold_of, weights=fraud, minlength=5)
    assert per_fold.max() - per_fold.min() <= 12
    assert fraud_per_fold.max() - fraud_per_fold.min() <= 12
    assert (assign_folds(groups, fraud, 5, seed=0) == fold_of).all()


def test_rotations_test_each_fold_once_and_never_overlap() -> None:
    fold_of = np.arange(50) % 5
    tested = np.zeros(50, dtype=int)
    for number in range(5):
        rotation = Rotation.of(fold_of, number, 5)
        assert not (rotation.train & rotation.val).any()
        assert not (rotation.train & rotation.test).any()
        assert not (rotation.val & rotation.test).any()
        assert (rotation.train | rotation.val | rotation.test).all()
        assert rotation.train.sum() == 30
        tested += rotation.test
    assert (tested == 1).all()


def test_bootstrap_interval_excludes_zero_only_for_a_real_difference() -> None:
    rng = np.random.default_rng(0)
    labels = np.zeros(600, dtype=bool)
    labels[:60] = True
    groups = np.arange(600) // 3
    perfect = labels + rng.random(600) * 0.5
    noisy = labels * 0.3 + rng.random(600)
    same = perfect.copy()
    draws = bootstrap_differences(
        labels,
        groups,
        {"perfect": perfect, "noisy": noisy, "same": same},
        [("perfect", "noisy"), ("perfect", "same")],
        draws=100,
    )
    assert draws[("perfect", "noisy")].size == 100
    low, high = mean_interval([draws[("perfect", "noisy")]])
    assert low > 0 and high <= 1
    assert mean_interval([draws[("perfect", "same")]]) == pytest.approx((0.0, 0.0))


def test_the_mean_interval_leaves_out_rotations_without_draws() -> None:
    interval = mean_interval([np.array([0.1, 0.3]), np.empty(0), np.array([0.1, 0.1, 0.5])])
    assert interval == pytest.approx((0.1, 0.2), abs=0.01)  # means 0.1 and 0.2
    single_class = bootstrap_differences(
        np.ones(5, dtype=bool), np.arange(5), {"a": np.zeros(5), "b": np.zeros(5)}, [("a", "b")]
    )
    assert single_class[("a", "b")].size == 0


def test_evaluation_groups_are_overall_and_the_patterns_the_population_has() -> None:
    truth = [
        GroundTruth("s1", "legitimate", None, False),
        GroundTruth("s2", "legitimate", None, False),
        GroundTruth("s3", "device_farm", "ring-1", True),
        GroundTruth("s4", "device_farm", "ring-1", True),
        GroundTruth("s5", "bust_out", None, True),
    ]
    cases = evaluation_cases(truth, labelled={"s4"}, include={"s1", "s3", "s4", "s5"})
    # No camouflaged ring (or any other absent pattern) gets an empty row; labelled and
    # excluded subscribers are left out; a pattern is judged against legitimate subscribers.
    assert set(cases) == {"overall", "device_farm", "bust_out"}
    assert cases["overall"] == [("s1", False), ("s3", True), ("s5", True)]
    assert cases["device_farm"] == [("s1", False), ("s3", True)]
    assert cases["bust_out"] == [("s1", False), ("s5", True)]
