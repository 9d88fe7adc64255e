"""A graph model with a boosted head: trees over each node's own features and its neighbours'.

The GNNs of `nets` learn how to aggregate neighbours. With a few hundred labelled fraudsters
and tabular features, a network learns the node's own evidence less well than gradient-boosted
trees do (ringwatch's held-out benchmark: trees on the subscriber features alone beat both GNNs
on synthetic identities). This model keeps message passing but fixes it, as decoupled GNNs such
as SGC and SIGN do (propagate features once, then learn only the classifier on them), and puts
scikit-learn's `HistGradientBoostingClassifier` on top.

`NeighbourAggregates` describes each target node by

- its own features;
- per edge type out of the target type, log1p of the links from the nodes it reaches through that
  type to other target nodes (for a subscriber: how many others use its devices, addresses...,
  counted once per identifier). With ``users_feature``, the column of the other types' features
  holding log1p of their target-node users (as ringwatch's export gives), the count comes from
  there, so a neighbourhood read with a bounded number of users per identifier (live scoring)
  counts as the whole graph does;
- the mean and the maximum of those neighbours' own features, over all edge types together
  (what the subscribers sharing my identifiers look like; 0 without any).

A neighbour is another target node two hops away (target -> identifier -> target). Identifiers
flagged in their feature column ``hub_feature`` are not passed through, just as the analysis
keeps hubs out of rings: carrier NAT addresses would make strangers neighbours.

The trees are fitted with balanced class weights; the number of leaves and of trees is chosen on
validation PR-AUC, and the scores are calibrated on validation like the GNNs'. They are stored
as plain arrays (`TreeEnsemble`, no pickle) and evaluated in NumPy, so scoring needs neither
PyTorch nor scikit-learn.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.sparse import coo_matrix, csr_matrix
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import average_precision_score
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from ringwatch.models.calibration import Calibrator, fit_calibrator
from ringwatch.models.config import TrainConfig
from ringwatch.models.exceptions import ModelError

if TYPE_CHECKING:
    from torch import Tensor
    from torch_geometric.data import HeteroData

    from ringwatch.models.data import NodeTask
    from ringwatch.models.training import Metrics

log = logging.getLogger(__name__)

EdgeType = tuple[str, str, str]
LEAVES = (15, 31)
LEARNING_RATE = 0.05
# Target nodes aggregated at once: bounds the memory of the neighbour lists (a million
# subscribers with about ten neighbours each would otherwise hold 10^7 feature rows).
_AGGREGATE_CHUNK = 20_000
# Rows evaluated at once by every tree side by side.
_TREE_CHUNK = 2_048


# ------------------------------------------------------------------------------- aggregates


@dataclass(frozen=True)
class NeighbourAggregates:
    """The boosted model's input features; see the module docstring."""

    target: str
    hub_feature: int | None = None
    users_feature: int | None = None

    def via(self, edge_types: Any) -> list[EdgeType]:
        """The edge types out of the target type to other node types, in a fixed order."""
        return sorted(et for et in edge_types if et[0] == self.target and et[2] != self.target)

    def width(self, own: int, edge_types: Any) -> int:
        return 3 * own + len(self.via(edge_types))

    def features(
        self,
        x_dict: dict[str, np.ndarray],
        edge_index_dict: dict[EdgeType, np.ndarray],
        nodes: np.ndarray | None = None,
    ) -> np.ndarray:
        """One row per node of `nodes` (default: every target node), float64."""
        x = np.asarray(x_dict[self.target], dtype=np.float64)
        n = x.shape[0]
        rows = np.arange(n) if nodes is None else np.asarray(nodes, dtype=np.int64)
        incidences = [self._incidence(x_dict, edge_index_dict, et, n)
                      for et in self.via(edge_index_dict)]  # fmt: skip
        transposed = [incidence.T.tocsr() for incidence in incidences]
        users = [self._other_users(x_dict, et) for et in self.via(edge_index_dict)]
        own = x.shape[1]
        out = np.zeros((rows.size, self.width(own, edge_index_dict)), dtype=np.float64)
        out[:, :own] = x[rows]
        for start in range(0, rows.size, _AGGREGATE_CHUNK):
            chunk = rows[start : start + _AGGREGATE_CHUNK]
            block = out[start : start + chunk.size]
            union: csr_matrix | None = None
            for column, (incidence, back, others) in enumerate(
                zip(incidences, transposed, users, strict=True)
            ):
                reached = _others(incidence[chunk] @ back, chunk)
                links = np.diff(reached.indptr) if others is None else incidence[chunk] @ others
                block[:, own + column] = np.log1p(links)
                union = reached if union is None else union + reached
            if union is None:
                continue
            union.data[:] = 1.0  # a neighbour reached through two types counts once
            count = np.diff(union.indptr)
            first = own + len(incidences)
            block[:, first : first + own] = (union @ x) / np.maximum(count, 1)[:, None]
            reached_any = np.flatnonzero(count)
            if reached_any.size:
                # Rows without neighbours are empty ranges of indptr, so the segment of each
                # non-empty row runs from its start to the next non-empty row's start.
                block[reached_any, first + own :] = np.maximum.reduceat(
                    x[union.indices], union.indptr[reached_any], axis=0
                )
        return out

    def row(
        self,
        x_dict: dict[str, np.ndarray],
        edge_index_dict: dict[EdgeType, np.ndarray],
        node: int,
    ) -> np.ndarray:
        """`features` of one node, computed from its edges alone (live scoring: no matrices
        of the whole neighbourhood to build)."""
        x = np.asarray(x_dict[self.target], dtype=np.float64)
        own = x.shape[1]
        via = self.via(edge_index_dict)
        out = np.zeros(self.width(own, edge_index_dict), dtype=np.float64)
        out[:own] = x[node]
        reached: list[np.ndarray] = []
        for column, edge_type in enumerate(via):
            edge_index = np.asarray(edge_index_dict[edge_type]).reshape(2, -1)
            other = x_dict[edge_type[2]]
            mine = np.unique(edge_index[1, edge_index[0] == node])
            if self.hub_feature is not None and other.shape[1] > self.hub_feature:
                mine = mine[other[mine, self.hub_feature] <= 0.5]
            users = edge_index[0, np.isin(edge_index[1], mine)]
            users = np.unique(users[users != node])
            counted = self._other_users(x_dict, edge_type)
            links = users.size if counted is None else float(counted[mine].sum())
            out[own + column] = np.log1p(links)
            reached.append(users)
        neighbours = np.unique(np.concatenate(reached)) if reached else np.empty(0, np.int64)
        if neighbours.size:
            first = own + len(via)
            out[first : first + own] = x[neighbours].mean(axis=0)
            out[first + own :] = x[neighbours].max(axis=0)
        return out

    def _incidence(
        self,
        x_dict: dict[str, np.ndarray],
        edge_index_dict: dict[EdgeType, np.ndarray],
        edge_type: EdgeType,
        n: int,
    ) -> csr_matrix:
        edge_index = np.asarray(edge_index_dict[edge_type], dtype=np.int64).reshape(2, -1)
        other = x_dict[edge_type[2]]
        keep = np.ones(edge_index.shape[1], dtype=bool)
        if self.hub_feature is not None and other.shape[1] > self.hub_feature:
            keep = other[edge_index[1], self.hub_feature] <= 0.5
        incidence = csr_matrix(
            coo_matrix(
                (np.ones(int(keep.sum())), (edge_index[0, keep], edge_index[1, keep])),
                shape=(n, other.shape[0]),
            )
        )
        incidence.data[:] = 1.0  # a link stored twice is one link
        return incidence

    def _other_users(self, x_dict: dict[str, np.ndarray], edge_type: EdgeType) -> np.ndarray | None:
        """Per node of the other type, its target-node users but one (the node asking), from
        ``users_feature``; None without it."""
        if self.users_feature is None:
            return None
        other = x_dict[edge_type[2]]
        if other.shape[1] <= self.users_feature:
            return None
        users = np.rint(np.expm1(other[:, self.users_feature].astype(np.float64)))
        return np.maximum(users - 1.0, 0.0)


def _others(reached: Any, chunk: np.ndarray) -> csr_matrix:
    """`reached` (rows: the chunk's nodes; columns: all target nodes) without each row's own
    node, as 0/1."""
    coo = reached.tocoo()
    keep = coo.col != chunk[coo.row]
    return csr_matrix(
        (np.ones(int(keep.sum())), (coo.row[keep], coo.col[keep])), shape=reached.shape
    )


# ------------------------------------------------------------------------------------ trees


@dataclass(frozen=True)
class TreeEnsemble:
    """A fitted binary `HistGradientBoostingClassifier` as arrays: every tree's nodes one
    after another (children as indices into the whole array), evaluated in NumPy."""

    baseline: float
    roots: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    missing_left: np.ndarray
    left: np.ndarray
    right: np.ndarray
    leaf: np.ndarray
    value: np.ndarray

    @classmethod
    def of(cls, model: HistGradientBoostingClassifier, trees: int | None = None) -> TreeEnsemble:
        """The first `trees` trees of `model` (default: all): what its staged decision
        function reads at that iteration. Reads scikit-learn's fitted predictors, which are
        private: the unit tests compare the result with `decision_function`."""
        nodes_of = [predictors[0].nodes for predictors in model._predictors[:trees]]
        if any(bool(nodes["is_categorical"].any()) for nodes in nodes_of):
            raise ModelError("categorical splits are not supported")
        offsets = np.cumsum([0, *(len(nodes) for nodes in nodes_of)])[:-1]
        nodes = np.concatenate(nodes_of)
        shift = np.repeat(offsets, [len(t) for t in nodes_of])
        leaf = nodes["is_leaf"].astype(bool)
        return cls(
            baseline=float(np.ravel(model._baseline_prediction)[0]),
            roots=offsets.astype(np.int64),
            feature=nodes["feature_idx"].astype(np.int64),
            threshold=nodes["num_threshold"].astype(np.float64),
            missing_left=nodes["missing_go_to_left"].astype(bool),
            left=np.where(leaf, 0, nodes["left"].astype(np.int64) + shift),
            right=np.where(leaf, 0, nodes["right"].astype(np.int64) + shift),
            leaf=leaf,
            value=nodes["value"].astype(np.float64),
        )

    def decision(self, x: np.ndarray) -> np.ndarray:
        """The log-odds of each row: what `decision_function` of the fitted model returns."""
        out = np.full(x.shape[0], self.baseline)
        for start in range(0, x.shape[0], _TREE_CHUNK):
            rows = x[start : start + _TREE_CHUNK]
            node = np.tile(self.roots, (rows.shape[0], 1))
            inner = ~self.leaf[node]
            while inner.any():
                at = node[inner]
                value = rows[np.nonzero(inner)[0], self.feature[at]]
                go_left = (value <= self.threshold[at]) | (np.isnan(value) & self.missing_left[at])
                node[inner] = np.where(go_left, self.left[at], self.right[at])
                inner = ~self.leaf[node]
            out[start : start + rows.shape[0]] += self.value[node].sum(axis=1)
        return out

    def save(self, path: Path) -> None:
        np.savez(path, baseline=np.array([self.baseline]), **{
            name: getattr(self, name) for name in _ARRAYS
        })  # fmt: skip

    @classmethod
    def load(cls, path: Path) -> TreeEnsemble:
        with np.load(path, allow_pickle=False) as stored:
            return cls(float(stored["baseline"][0]), *(stored[name] for name in _ARRAYS))


_ARRAYS = ("roots", "feature", "threshold", "missing_left", "left", "right", "leaf", "value")


# ------------------------------------------------------------------------------------ model


@dataclass
class BoostedModel:
    """Trees over `NeighbourAggregates` with a calibrator; scores like a trained GNN."""

    config: TrainConfig
    target: str
    aggregates: NeighbourAggregates
    trees: TreeEnsemble
    calibrator: Calibrator
    metrics: dict[str, Metrics] = field(default_factory=dict)
    # One entry per number of leaves tried (the GNNs': one per epoch).
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0

    def logits(self, data: HeteroData, nodes: Tensor) -> np.ndarray:
        """Uncalibrated log-odds of `nodes` (target type) of a raw graph."""
        x_dict, edge_index_dict = _arrays(data)
        return self.trees.decision(self.aggregates.features(x_dict, edge_index_dict,
                                                            nodes.numpy()))  # fmt: skip

    def probabilities(self, data: HeteroData, nodes: Tensor) -> np.ndarray:
        """Calibrated fraud probabilities of `nodes` (target type) of a raw graph."""
        return self.calibrator(self.logits(data, nodes))

    def score_arrays(
        self,
        x_dict: dict[str, np.ndarray],
        edge_index_dict: dict[EdgeType, np.ndarray],
        node: int,
    ) -> float:
        """Calibrated probability of one node of a sampled neighbourhood given as NumPy arrays
        (live scoring)."""
        features = self.aggregates.row(x_dict, edge_index_dict, node)[None, :]
        return float(self.calibrator(self.trees.decision(features))[0])

    def payload(self) -> dict[str, Any]:
        """What `from_payload` needs besides the trees and the config."""
        return {
            "calibrator": self.calibrator.to_dict(),
            "hub_feature": self.aggregates.hub_feature,
            "users_feature": self.aggregates.users_feature,
        }

    @classmethod
    def from_payload(
        cls, config: TrainConfig, target: str, payload: dict[str, Any], trees: TreeEnsemble
    ) -> BoostedModel:
        return cls(
            config=config,
            target=target,
            aggregates=NeighbourAggregates(
                target, payload["hub_feature"], payload.get("users_feature")
            ),
            trees=trees,
            calibrator=Calibrator.from_dict(payload["calibrator"]),
        )


def _arrays(data: HeteroData) -> tuple[dict[str, np.ndarray], dict[EdgeType, np.ndarray]]:
    x_dict = {nt: data[nt].x.numpy() for nt in data.node_types}
    edge_index_dict = {et: data[et].edge_index.numpy() for et in data.edge_types}
    return x_dict, edge_index_dict


def train_boosted(task: NodeTask, config: TrainConfig) -> BoostedModel:
    """Fit the boosted model on `task`'s labelled training nodes; leaves and trees chosen on
    validation PR-AUC, calibrated on validation."""
    from ringwatch.models.training import check_splits, evaluate

    train_nodes, val_nodes = (nodes.numpy() for nodes in check_splits(task))
    aggregates = NeighbourAggregates(task.target, config.hub_feature, config.users_feature)
    started = time.perf_counter()
    features = aggregates.features(*_arrays(task.data))
    log.info("boosted: neighbour aggregates of %d nodes in %.1f s", features.shape[0],
             time.perf_counter() - started)  # fmt: skip
    y = task.y.numpy()
    x_train, y_train = features[train_nodes], y[train_nodes]
    x_val, y_val = features[val_nodes], y[val_nodes]
    history: list[dict[str, float]] = []
    fitted: dict[int, HistGradientBoostingClassifier] = {}
    best: tuple[float, int, int] = (-1.0, LEAVES[0], 1)
    with threadpool_limits(limits=config.threads):
        for number, leaves in enumerate(LEAVES, start=1):
            began = time.perf_counter()
            model = tree_classifier(leaves, config.trees, config.seed).fit(x_train, y_train)
            fitted[leaves] = model
            scores = [float(average_precision_score(y_val, logits))
                      for logits in model.staged_decision_function(x_val)]  # fmt: skip
            trees = int(np.argmax(scores)) + 1
            history.append({"epoch": number, "leaves": leaves, "trees": trees,
                            "val_pr_auc": scores[trees - 1],
                            "seconds": time.perf_counter() - began})  # fmt: skip
            log.info("boosted: %d leaves, %d trees: val PR-AUC %.4f", leaves, trees,
                     scores[trees - 1])  # fmt: skip
            if scores[trees - 1] > best[0]:
                best = (scores[trees - 1], leaves, trees)
    _, leaves, trees = best
    # Boosting adds one tree per iteration: the first `trees` trees are the staged model.
    ensemble = TreeEnsemble.of(fitted[leaves], trees)
    calibrator = fit_calibrator(ensemble.decision(x_val), y_val, config.calibration)
    best_epoch = 1 + LEAVES.index(leaves)
    boosted = BoostedModel(config, task.target, aggregates, ensemble, calibrator, {}, history,
                           best_epoch)  # fmt: skip
    # From the aggregates already at hand, not aggregated again per split.
    boosted.metrics = evaluate(
        task, lambda nodes: calibrator(ensemble.decision(features[nodes.numpy()]))
    )
    return boosted


def tree_classifier(leaves: int, trees: int, seed: int) -> HistGradientBoostingClassifier:
    """The trees' settings: balanced classes, no subsampling or early stopping of their own
    (deterministic for a seed)."""
    return HistGradientBoostingClassifier(
        learning_rate=LEARNING_RATE,
        max_iter=trees,
        max_leaf_nodes=leaves,
        class_weight="balanced",
        early_stopping=False,
        random_state=seed,
    )
