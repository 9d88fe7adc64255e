"""Held-out rings for `bench.quality`: folds of whole components, a tabular model and the GNNs.

Subscribers are grouped by their shared-identifier connected component (``component_id``, which
`ringwatch analyze` writes) joined with the simulator's ring ids, so a ring is one group even in
the unlikely case that its members fell into several components. Whole groups are dealt into
``count`` folds (groups holding fraud to even out the fraudsters, the others to even out the
subscribers; largest first, ties in seeded random order). Rotation ``k`` tests on fold ``k``,
validates on fold ``k + 1`` and trains on the rest: 60 / 20 / 20 with five folds, and over the
five rotations every subscriber is scored exactly once by models that never saw its group's
labels.

Learners trained per rotation on the ground truth of the training folds:

- a **tabular model** on the same subscriber feature matrix the graph models get (`gnn_export`'s
  ``SUBSCRIBER_FEATURES``): the boosted graph model's trees (scikit-learn's
  `HistGradientBoostingClassifier`, balanced class weights) without its neighbour aggregates;
  the number of trees and leaves is chosen on validation PR-AUC;
- **the graph models** through ringwatch's own training (`training.train_model`), each kind of
  `gnn_run.MODEL_KINDS`: the GNNs (neighbour sampling, class-weighted loss, early stopping on
  validation PR-AUC) and the boosted graph model (`ringwatch.models.boosted`); the one with the
  best validation PR-AUC is what `ringwatch train` would keep.

All are calibrated on the validation fold with ringwatch's `fit_calibrator` (isotonic with 100
or more of each class, Platt otherwise), so their scores read as probabilities. The test fold's
labels are set to -1 before training: nothing of it but its features and links is seen.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.metrics import average_precision_score
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from ringwatch.models.boosted import LEAVES, tree_classifier
from ringwatch.models.calibration import Calibrator, fit_calibrator

if TYPE_CHECKING:
    from torch_geometric.data import HeteroData

log = logging.getLogger(__name__)

# The boosted graph model's trees, on the subscriber features alone: (d) and that model differ
# only in the neighbour aggregates.
TABULAR_MAX_TREES = 300


# ------------------------------------------------------------------------------------ folds


def component_groups(
    ids: Sequence[str],
    component_of: Mapping[str, int | None],
    ring_of: Mapping[str, str | None],
) -> np.ndarray:
    """A group number per subscriber: connected components joined through shared ring ids.
    A subscriber outside every component (no shared-identifier link) and every ring is alone."""
    parent = list(range(len(ids)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_of: dict[tuple[str, object], int] = {}
    for index, sid in enumerate(ids):
        keys: list[tuple[str, object]] = []
        if component_of.get(sid) is not None:
            keys.append(("component", component_of[sid]))
        if ring_of.get(sid) is not None:
            keys.append(("ring", ring_of[sid]))
        for key in keys:
            other = first_of.setdefault(key, index)
            a, b = find(index), find(other)
            if a != b:
                parent[a] = b
    roots = np.array([find(i) for i in range(len(ids))], dtype=np.int64)
    return np.unique(roots, return_inverse=True)[1].astype(np.int64)


def assign_folds(groups: np.ndarray, fraud: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Fold number per subscriber with every group in one fold (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n_groups = int(groups.max()) + 1 if groups.size else 0
    size = np.bincount(groups, minlength=n_groups)
    fraudsters = np.bincount(groups, weights=fraud.astype(np.float64), minlength=n_groups)
    fold_of_group = np.full(n_groups, -1, dtype=np.int64)
    for holds_fraud in (True, False):
        chosen = np.flatnonzero((fraudsters > 0) == holds_fraud)
        chosen = chosen[rng.permutation(chosen.size)]
        weight = fraudsters if holds_fraud else size.astype(np.float64)
        chosen = chosen[np.argsort(-weight[chosen], kind="stable")]  # largest first
        filled = np.zeros(count)
        for group in chosen:
            fold = int(np.argmin(filled))
            fold_of_group[group] = fold
            filled[fold] += weight[group]
    folds: np.ndarray = fold_of_group[groups]
    return folds


@dataclass(frozen=True)
class Rotation:
    """One train / validation / test assignment of the folds."""

    number: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    @classmethod
    def of(cls, fold_of: np.ndarray, number: int, count: int) -> Rotation:
        test = fold_of == number
        val = fold_of == (number + 1) % count
        return cls(number, ~(test | val), val, test)

    def sizes(self, truth: np.ndarray) -> dict[str, dict[str, int]]:
        return {
            name: {"subscribers": int(mask.sum()), "fraud": int(truth[mask].sum())}
            for name, mask in (("train", self.train), ("val", self.val), ("test", self.test))
        }


# ----------------------------------------------------------------------------------- models


@dataclass
class HeldOutScores:
    """Scores of the test fold's subscribers.

    ``probability`` is what ringwatch would serve: the raw score through the calibrator its
    training fits (isotonic once validation holds 100 of each class). Isotonic regression is a
    step function, so it ties subscribers the model ranked apart; ``ranking`` is instead the
    calibrated log-odds of a Platt scaling fitted on the same validation fold (``a * raw + b``,
    left on the log-odds scale because a near-separable validation fold gives a steep slope
    whose probabilities round to exactly 0 or 1): strictly increasing, so within a rotation it
    is the model's own ranking, and on one calibrated scale across rotations, so rankings pooled
    over the rotations are comparable.
    """

    probability: np.ndarray
    ranking: np.ndarray
    raw: np.ndarray
    val_pr_auc: float
    detail: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        raw: np.ndarray,
        val_raw: np.ndarray,
        val_labels: np.ndarray,
        calibrator: Calibrator,
        detail: dict[str, Any],
    ) -> HeldOutScores:
        platt = fit_calibrator(val_raw, val_labels, "platt")
        return cls(
            calibrator(raw),
            platt.coef * raw + platt.intercept,
            raw,
            _pr_auc(val_labels, val_raw),
            {"calibration": calibrator.method, **detail},
        )


def _pr_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    return float(average_precision_score(labels, scores))


def train_tabular(
    x: np.ndarray, truth: np.ndarray, rotation: Rotation, *, seed: int
) -> HeldOutScores:
    """HistGradientBoosting on the training folds, trees and leaves chosen on validation."""
    # One OpenMP thread, like the GNN's one PyTorch thread: on a busy 2-core machine more
    # threads mostly wait on each other.
    with threadpool_limits(limits=1):
        return _train_tabular(x, truth, rotation, seed=seed)


def _train_tabular(
    x: np.ndarray, truth: np.ndarray, rotation: Rotation, *, seed: int
) -> HeldOutScores:
    started = time.perf_counter()
    x_train, y_train = x[rotation.train], truth[rotation.train]
    x_val, y_val = x[rotation.val], truth[rotation.val]
    best: tuple[float, int, int] = (-1.0, 0, 0)
    for leaves in LEAVES:
        model = tree_classifier(leaves, TABULAR_MAX_TREES, seed).fit(x_train, y_train)
        for trees, logits in enumerate(model.staged_decision_function(x_val), start=1):
            score = _pr_auc(y_val, logits)
            if score > best[0]:
                best = (score, leaves, trees)
    _, leaves, trees = best
    # Without subsampling or early stopping the fit is deterministic: refitting with the chosen
    # number of trees gives exactly the staged model.
    model = tree_classifier(leaves, trees, seed).fit(x_train, y_train)
    val_raw = np.asarray(model.decision_function(x_val), dtype=np.float64)
    raw = np.asarray(model.decision_function(x[rotation.test]), dtype=np.float64)
    detail = {"max_leaf_nodes": leaves, "trees": trees}
    held = HeldOutScores.of(raw, val_raw, y_val, fit_calibrator(val_raw, y_val), detail)
    held.detail["seconds"] = time.perf_counter() - started
    return held


def train_gnn(
    data: HeteroData,
    target: str,
    truth: np.ndarray,
    rotation: Rotation,
    *,
    kind: str,
    seed: int,
    epochs: int | None = None,
) -> HeldOutScores:
    """One of ringwatch's GNNs through its own training code, on the training folds' truth."""
    import torch

    from ringwatch.graph.gnn_export import IDENTIFIER_COLUMNS
    from ringwatch.models.config import TrainConfig
    from ringwatch.models.data import NodeTask
    from ringwatch.models.training import train_model

    started = time.perf_counter()
    known = rotation.train | rotation.val
    y = torch.from_numpy(np.where(known, truth, -1).astype(np.int64))
    task = NodeTask.of(
        data,
        target=target,
        y=y,
        train=torch.from_numpy(rotation.train),
        val=torch.from_numpy(rotation.val),
        test=torch.from_numpy(rotation.test),
    )
    update: dict[str, Any] = {"model": kind, **IDENTIFIER_COLUMNS}
    if epochs is not None:
        update["epochs"] = epochs
    config = TrainConfig(seed=seed).model_copy(update=update)
    model = train_model(task, config)

    def logits(mask: np.ndarray) -> np.ndarray:
        return model.logits(task.data, torch.from_numpy(np.flatnonzero(mask)))

    detail = {
        "best_epoch": model.best_epoch,
        "epochs": len(model.history),
        "epoch_seconds": [round(h["seconds"], 3) for h in model.history],
        "calibrated_val_pr_auc": model.metrics["val"].pr_auc,
    }
    held = HeldOutScores.of(
        logits(rotation.test), logits(rotation.val), truth[rotation.val], model.calibrator, detail
    )
    held.detail["seconds"] = time.perf_counter() - started
    return held


# ------------------------------------------------------------------------------ uncertainty


def bootstrap_differences(
    labels: np.ndarray,
    groups: np.ndarray,
    scores: Mapping[str, np.ndarray],
    pairs: Sequence[tuple[str, str]],
    *,
    draws: int = 500,
    seed: int = 0,
) -> dict[tuple[str, str], np.ndarray]:
    """Bootstrap draws of PR-AUC(a) - PR-AUC(b) for each pair, by a cluster bootstrap: whole
    groups (components and rings) are drawn with replacement, since ring members are not
    independent cases. Draws without a positive or a negative are skipped, so fewer than
    `draws` may come back (none when `labels` has a single class)."""
    rng = np.random.default_rng(seed)
    _, group_index = np.unique(groups, return_inverse=True)
    n_groups = int(group_index.max()) + 1 if group_index.size else 0
    differences: dict[tuple[str, str], list[float]] = {pair: [] for pair in pairs}
    if not (labels.any() and not labels.all()):
        return {pair: np.empty(0) for pair in pairs}
    for _ in range(draws):
        weight = rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups))[group_index]
        chosen = weight > 0
        if not (labels[chosen].any() and not labels[chosen].all()):
            continue
        pr_auc = {
            name: float(
                average_precision_score(
                    labels[chosen], scores[name][chosen], sample_weight=weight[chosen]
                )
            )
            for name in {n for pair in pairs for n in pair}
        }
        for a, b in pairs:
            differences[(a, b)].append(pr_auc[a] - pr_auc[b])
    return {pair: np.asarray(values) for pair, values in differences.items()}


def mean_interval(per_rotation: Sequence[np.ndarray]) -> tuple[float, float]:
    """95 % interval of the mean over rotations of a bootstrapped difference: the draws of
    the rotations (independent of each other) are paired in order and averaged; rotations
    without draws (no positive in their test fold) are left out."""
    kept = [values for values in per_rotation if values.size]
    if not kept:
        return (float("nan"), float("nan"))
    length = min(values.size for values in kept)
    means = np.mean([values[:length] for values in kept], axis=0)
    return (float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5)))
