"""Probability calibration of a model's raw scores, fitted on validation outputs (scikit-learn).

A GNN trained with a class-weighted loss ranks well but its sigmoid is not a probability: the
weighting pushes every score up. Calibration maps raw logits to the observed fraud rate on the
validation nodes:

- **Platt** scaling (a one-feature logistic regression on the logit) when validation is small
  (fewer than `ISOTONIC_MIN_PER_CLASS` nodes of either class): two parameters, smooth, monotone.
- **Isotonic** regression otherwise: monotone, no shape assumed, needs more data. Its steps
  would give every node on one step the same probability, throwing away the model's ranking
  within the step (which costs PR-AUC and leaves analysts ties to sort); a `TIE_BREAK`-sized
  share of the logit's sigmoid keeps the order, moving no probability by more than that.

Both are stored as plain numbers (no pickles) and applied with NumPy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy.special import expit
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from ringwatch.models.exceptions import ModelError

ISOTONIC_MIN_PER_CLASS = 100
TIE_BREAK = 1e-4
Method = Literal["auto", "platt", "isotonic"]


@dataclass(frozen=True)
class Calibrator:
    """Maps raw logits to calibrated probabilities in [0, 1]."""

    method: Literal["platt", "isotonic", "identity"]
    coef: float = 1.0
    intercept: float = 0.0
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        logits = np.asarray(logits, dtype=np.float64)
        # expit: the logistic function, without overflow warnings for very negative logits.
        if self.method == "isotonic":
            step = np.interp(logits, self.x, self.y)
            out = (1.0 - TIE_BREAK) * step + TIE_BREAK * expit(logits)
        else:
            out = expit(self.coef * logits + self.intercept)
        return np.asarray(np.clip(out, 0.0, 1.0))

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "coef": self.coef, "intercept": self.intercept,
                "x": self.x, "y": self.y}  # fmt: skip

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Calibrator:
        return cls(
            method=raw["method"],
            coef=float(raw.get("coef", 1.0)),
            intercept=float(raw.get("intercept", 0.0)),
            x=[float(v) for v in raw.get("x", [])],
            y=[float(v) for v in raw.get("y", [])],
        )


def fit_calibrator(logits: np.ndarray, labels: np.ndarray, method: Method = "auto") -> Calibrator:
    """Fit on validation logits and their 0/1 labels; both classes must be present."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    positives, negatives = int(labels.sum()), int((labels == 0).sum())
    if positives == 0 or negatives == 0:
        raise ModelError("calibration needs validation nodes of both classes")
    if method == "auto":
        enough = min(positives, negatives) >= ISOTONIC_MIN_PER_CLASS
        method = "isotonic" if enough else "platt"
    if method == "platt":
        model = LogisticRegression(C=1e4)
        model.fit(logits.reshape(-1, 1), labels)
        return Calibrator("platt", float(model.coef_[0][0]), float(model.intercept_[0]))
    isotonic = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    isotonic.fit(logits, labels)
    return Calibrator(
        "isotonic",
        x=[float(v) for v in isotonic.X_thresholds_],
        y=[float(v) for v in isotonic.y_thresholds_],
    )
