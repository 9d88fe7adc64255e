"""Merging usage, graph and GNN risk: the noisy-OR rule, labels and the stacking model."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from ringwatch.scoring import reasons
from ringwatch.scoring.merge import (
    CONFIRMED_FRAUD_FLOOR,
    StackingModel,
    apply_label,
    merged_reasons,
    rule_merge,
    train_stacking,
)
from ringwatch.scoring.reasons import Reason

# ------------------------------------------------------------------------- rule


def test_rule_merge_is_a_noisy_or() -> None:
    # 1 - (1 - 0.5)(1 - 0.2) = 1 - 0.5 * 0.8 = 0.6
    assert rule_merge({"usage": 0.5, "graph": 0.2}) == pytest.approx(0.6)
    # 1 - (1 - 0.5)(1 - 0.2)(1 - 0.5) = 1 - 0.2 = 0.8
    assert rule_merge({"usage": 0.5, "graph": 0.2, "gnn": 0.5}) == pytest.approx(0.8)
    assert rule_merge({"usage": 0.0, "graph": 0.0, "gnn": 0.0}) == 0.0
    assert rule_merge({}) == 0.0
    assert rule_merge({"usage": 1.0, "graph": 0.1}) == 1.0


def test_rule_merge_is_at_least_each_component() -> None:
    components = {"usage": 0.35, "graph": 0.55, "gnn": 0.1}
    merged = rule_merge(components)
    # 1 - 0.65 * 0.45 * 0.9 = 1 - 0.26325 = 0.73675
    assert merged == pytest.approx(0.73675)
    assert merged >= max(components.values())


# ------------------------------------------------------------------------- labels


def test_confirmed_fraud_is_held_at_the_floor_and_explained_first() -> None:
    evidence = [Reason("graph.ring", "member of ring R-1", 0.4)]

    risk = apply_label(0.2, "fraud", evidence)

    assert CONFIRMED_FRAUD_FLOOR == 0.99
    assert risk == 0.99
    assert reasons.codes(evidence) == ["label.fraud", "graph.ring"]
    assert evidence[0].weight == 1.0
    # Evidence above the floor is kept, not lowered.
    assert apply_label(0.995, "fraud", []) == 0.995


def test_confirmed_legitimate_is_halved_and_explained_last() -> None:
    evidence = [Reason("usage.daily_charge_limit", "charged 900 today", 0.5)]

    risk = apply_label(0.8, "legitimate", evidence)

    assert risk == pytest.approx(0.4)  # 0.8 * 0.5
    assert reasons.codes(evidence) == ["usage.daily_charge_limit", "label.legitimate"]
    assert evidence[-1].weight == 0.0


def test_no_label_leaves_risk_and_reasons_alone() -> None:
    evidence = [Reason("graph.ring", "member of ring R-1", 0.4)]
    assert apply_label(0.42, None, evidence) == 0.42
    assert reasons.codes(evidence) == ["graph.ring"]
    assert apply_label(0.42, "unknown", evidence) == 0.42
    assert len(evidence) == 1


# ------------------------------------------------------------------------- reasons


def test_merged_reasons_are_strongest_first_and_limited() -> None:
    usage = [Reason("u.a", "a", 0.2), Reason("u.b", "b", 0.7)]
    graph = [Reason("g.c", "c", 0.5), Reason("g.d", "d", 0.2), Reason("g.e", "e", 0.0)]

    merged = merged_reasons(usage, graph)
    # Ties (u.a and g.d at 0.2) keep their order: usage before graph.
    assert reasons.codes(merged) == ["u.b", "g.c", "u.a", "g.d", "g.e"]
    assert reasons.codes(merged_reasons(usage, graph, limit=2)) == ["u.b", "g.c"]
    assert merged_reasons() == []

    many = [Reason(f"r{i}", "", i / 10) for i in range(10)]
    kept = merged_reasons(many)
    assert len(kept) == 8  # the default limit
    assert reasons.codes(kept)[0] == "r9"
    assert "r0" not in reasons.codes(kept) and "r1" not in reasons.codes(kept)


# ------------------------------------------------------------------------- stacking


def test_too_few_labelled_fraud_means_no_model() -> None:
    rows = [{"usage_risk": 0.1 * (i % 10)} for i in range(100)]
    labelled = [i < 19 for i in range(100)]  # 19 labelled fraud, 20 needed
    assert train_stacking(rows, labelled, min_per_class=20) is None


def test_too_few_other_subscribers_means_no_model() -> None:
    rows = [{"usage_risk": 0.5} for _ in range(25)]
    labelled = [i < 20 for i in range(25)]  # 20 labelled fraud, only 5 others
    assert train_stacking(rows, labelled, min_per_class=20) is None


def synthetic(
    seed: int = 7, rows: int = 3000, fraud_rate: float = 0.05, labelled_share: float = 0.3
) -> tuple[list[dict[str, float]], np.ndarray, np.ndarray]:
    """Rows, true fraud and labelled fraud: fraud shifts `graph_risk` up by 3 standard
    deviations; `usage_risk` and `noise` are the same for everyone; a random 30 % of the fraud
    is labelled (the positive-unlabelled setting)."""
    rng = np.random.default_rng(seed)
    fraud = rng.random(rows) < fraud_rate
    graph = rng.normal(0.0, 1.0, rows) + 3.0 * fraud
    usage = rng.normal(0.0, 1.0, rows)
    noise = rng.normal(0.0, 1.0, rows)
    labelled = fraud & (rng.random(rows) < labelled_share)
    table = [
        {"graph_risk": float(g), "usage_risk": float(u), "noise": float(n)}
        for g, u, n in zip(graph, usage, noise, strict=True)
    ]
    return table, fraud, labelled


def test_stacking_finds_unlabelled_fraud_well_above_the_base_rate() -> None:
    rows, fraud, labelled = synthetic()
    positives = int(labelled.sum())
    assert positives >= 20  # about 3000 * 0.05 * 0.3 = 45

    model = train_stacking(rows, labelled.tolist(), min_per_class=20)

    assert isinstance(model, StackingModel)
    assert model.feature_names == ["graph_risk", "noise", "usage_risk"]
    assert model.trained_on == 3000
    assert model.positives == positives
    assert model.probabilities.shape == (3000,)
    assert np.all((model.probabilities >= 0.0) & (model.probabilities <= 1.0))
    assert 0.0 < model.label_frequency < 1.0

    unlabelled = ~labelled
    base_rate = fraud[unlabelled].mean()  # about 0.05 * 0.7 / (1 - 0.015) = 0.036
    precision = average_precision_score(fraud[unlabelled], model.probabilities[unlabelled])
    assert base_rate < 0.06
    assert precision > 0.6
    assert precision > 10 * base_rate
    # Unlabelled fraud scores higher on average than unlabelled legitimate subscribers.
    probabilities = model.probabilities
    assert probabilities[unlabelled & fraud].mean() > 3 * probabilities[unlabelled & ~fraud].mean()
    # Rescaled by the label frequency, the probabilities read as the population's fraud rate,
    # not the labelled share (45 / 3000 = 1.5 %): their mean is within a factor 2 of 5 %.
    assert 0.5 * fraud.mean() < probabilities.mean() < 2 * fraud.mean()
    assert probabilities.mean() > 2 * labelled.mean()


def test_stacking_keeps_the_model_order_where_the_rescaling_saturates() -> None:
    rows, _, labelled = synthetic()
    model = train_stacking(rows, labelled.tolist(), min_per_class=20)
    assert model is not None
    probabilities = model.probabilities
    top = probabilities >= 0.999  # rescaled to 1: at or above the label frequency
    assert top.sum() > 20
    # Distinct values, not one tie, all within the tie-break's share of 1.
    assert len(np.unique(probabilities[top])) == top.sum()
    assert probabilities.max() <= 1.0
    # Same order as the rows' evidence where it saturates (graph_risk drives the synthetic fraud).
    graph = np.array([row["graph_risk"] for row in rows])
    order = np.argsort(probabilities[top])
    assert np.corrcoef(np.arange(top.sum()), graph[top][order])[0, 1] > 0.5


def test_stacking_is_deterministic_for_a_random_state() -> None:
    rows, _, labelled = synthetic(seed=11, rows=800, fraud_rate=0.1)
    first = train_stacking(rows, labelled.tolist(), min_per_class=5, random_state=3)
    second = train_stacking(rows, labelled.tolist(), min_per_class=5, random_state=3)
    assert first is not None and second is not None
    np.testing.assert_array_equal(first.probabilities, second.probabilities)
    assert first.label_frequency == second.label_frequency


def test_missing_features_count_as_zero() -> None:
    rows, _, labelled = synthetic(seed=5, rows=600, fraud_rate=0.1)
    # Drop "noise" from every other row: the model still trains over the union of names.
    sparse = [
        row if i % 2 else {k: v for k, v in row.items() if k != "noise"}
        for i, row in enumerate(rows)
    ]
    model = train_stacking(sparse, labelled.tolist(), min_per_class=5)
    assert model is not None
    assert model.feature_names == ["graph_risk", "noise", "usage_risk"]
    assert np.all(np.isfinite(model.probabilities))


def test_stacking_reason_names_what_the_model_was_trained_on() -> None:
    model = StackingModel(["a"], np.zeros(3), 0.31234, trained_on=3000, positives=45)
    reason = model.reason(0.874)
    assert reason.code == "model.stacking"
    assert reason.text == (
        "calibrated model trained on 45 confirmed fraud among 3000 subscribers gives 0.87"
    )
    assert reason.evidence == {
        "trained_on": 3000,
        "positives": 45,
        "label_frequency": 0.3123,
        "method": "pu-stacking",
    }
