"""Merged risk: usage, graph and (when a model is promoted) GNN components into one number.

Without enough labels the merge is a documented rule, a noisy-OR of the components::

    risk = 1 - (1 - usage) * (1 - graph) * (1 - gnn)

so a subscriber with strong evidence of either kind is high, and weak evidence of several kinds
adds up. A subscriber confirmed fraud by an analyst is held at 0.99 at least; one confirmed
legitimate is halved (new evidence can still raise it).

With at least ``min_labels_per_class`` subscribers labelled fraud, a stacking model replaces the
rule: a logistic regression over the component scores and the evidence behind them (reason
weights, ring facts, account age), trained positive-unlabelled and rescaled (see
`StackingModel`), so the output reads as a probability of fraud in the population rather than in
the labelled sample. A linear model on few, monotone features generalises from a handful of
labels per fraud pattern where trees would not. Features that would leak a subscriber's own
label (its own label, the personalised PageRank that starts at it) are left out; evidence from
*other* labelled subscribers stays in. The reasons are the same evidence as for the rule; the
model adds one reason saying what it was trained on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ringwatch.scoring.graph import noisy_or
from ringwatch.scoring.reasons import Reason, ranked

CONFIRMED_FRAUD_FLOOR = 0.99
# The share of the stacking model's raw score kept in its rescaled probability: enough to keep
# subscribers in the model's order where the rescaling saturates; it moves a risk by 0.001 at most.
STACKING_TIE_BREAK = 1e-3


def rule_merge(components: Mapping[str, float]) -> float:
    """The label-free merge: a noisy-OR of the component scores (each in [0, 1])."""
    return noisy_or(list(components.values()))


def apply_label(risk: float, label: str | None, reasons: list[Reason]) -> float:
    """Confirmed outcomes override the evidence: fraud stays high, legitimate is discounted."""
    if label == "fraud":
        reasons.insert(0, Reason("label.fraud", "confirmed fraud by a label", 1.0))
        return max(risk, CONFIRMED_FRAUD_FLOOR)
    if label == "legitimate":
        reasons.append(Reason("label.legitimate", "confirmed legitimate by a label", 0.0))
        return risk * 0.5
    return risk


@dataclass
class StackingModel:
    """Fraud probabilities for every subscriber from a positive-unlabelled stacking model.

    Labels are few and biased: analysts confirm some fraud, and a small sample of legitimate
    customers; most subscribers carry no label. Training on the labelled ones alone would learn
    the labelled mix (half fraud) instead of the population's (a few percent). So the model
    learns "labelled fraud" against everyone else (labelled legitimate and unlabelled), with
    out-of-fold predictions so no subscriber is scored by a model that saw it, and the result is
    rescaled by the share of labelled fraud it recovers (Elkan and Noto, 2008: for labels that
    are a random sample of the fraud, P(fraud | x) = P(labelled | x) / P(labelled | fraud)).
    A logistic regression's outputs are already Platt-scaled probabilities of its own target.
    """

    feature_names: list[str]
    probabilities: np.ndarray
    label_frequency: float
    trained_on: int
    positives: int
    method: str = "pu-stacking"

    def reason(self, probability: float) -> Reason:
        return Reason(
            "model.stacking",
            f"calibrated model trained on {self.positives} confirmed fraud among "
            f"{self.trained_on} subscribers gives {probability:.2f}",
            0.0,
            {
                "trained_on": self.trained_on,
                "positives": self.positives,
                "label_frequency": round(self.label_frequency, 4),
                "method": self.method,
            },
        )


def train_stacking(
    rows: Sequence[Mapping[str, float]],
    labelled_fraud: Sequence[bool],
    *,
    min_per_class: int,
    folds: int = 5,
    random_state: int = 0,
) -> StackingModel | None:
    """Out-of-fold fraud probabilities for all `rows`; None with fewer than `min_per_class`
    labelled fraud (or fewer than that many other subscribers)."""
    y = np.asarray(labelled_fraud, dtype=int)
    positives = int(y.sum())
    if positives < min_per_class or len(y) - positives < min_per_class:
        return None
    names = sorted({name for row in rows for name in row})
    matrix = _matrix(rows, names)
    folds = max(2, min(folds, positives // 4))
    scores = np.zeros(len(y), dtype=float)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state)
    for train, held_out in splitter.split(matrix, y):
        model = make_pipeline(
            StandardScaler(), LogisticRegression(C=0.5, max_iter=2000, random_state=random_state)
        )
        model.fit(matrix[train], y[train])
        scores[held_out] = model.predict_proba(matrix[held_out])[:, 1]
    label_frequency = float(scores[y == 1].mean()) if positives else 1.0
    rescaled = np.clip(scores / max(label_frequency, 1e-6), 0.0, 1.0)
    # Every score at or above the label frequency rescales to 1: without the model's own score
    # as a tie-break the top of a review queue would be one tie of hundreds of subscribers.
    probabilities = (1.0 - STACKING_TIE_BREAK) * rescaled + STACKING_TIE_BREAK * scores
    return StackingModel(names, probabilities, label_frequency, len(y), positives)


def _matrix(rows: Sequence[Mapping[str, float]], names: Sequence[str]) -> np.ndarray:
    return np.asarray(
        [[float(row.get(name, 0.0)) for name in names] for row in rows], dtype=float
    ).reshape(len(rows), len(names))


def merged_reasons(*groups: Sequence[Reason], limit: int = 8) -> list[Reason]:
    """All components' reasons, strongest first, the strongest `limit` kept."""
    return ranked([reason for group in groups for reason in group], limit)
