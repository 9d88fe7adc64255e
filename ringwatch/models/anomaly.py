"""The unsupervised fallback: an anomaly score for a deployment with no labels yet.

Without confirmed cases nothing can be learned about fraud itself, only about what is unusual.
Each target node is described by its own standardised features next to the mean of its
neighbourhood's (the mean over its neighbours of each neighbour's mean target-type features:
for a subscriber, "what the subscribers sharing my identifiers look like"), and a PCA fitted on
the whole population keeps the directions holding `variance` of the variance. The anomaly is the
reconstruction error: how far a node lies from the subspace where most of the population lives
(a subscriber whose usage, degrees and FastRP embedding, or whose neighbours', combine unlike
anyone else's).

An error is not a probability, so the score is its rank in the population squashed into
``[0, cap]``: the `start` quantile (95 %) and below score 0, the most anomalous node ``cap``
(0.6). Alone it can move a subscriber to REVIEW but never to BLOCK; the merged risk still
needs other evidence. Once there are labels, `ringwatch train` replaces it with a GNN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.sparse import coo_matrix, csr_matrix
from sklearn.decomposition import PCA
from torch import Tensor
from torch_geometric.data import HeteroData

from ringwatch.models.data import Standardizer, hetero_from_arrays
from ringwatch.models.exceptions import ModelError


def neighbourhood_features(data: HeteroData, target: str) -> np.ndarray:
    """Own features next to the two-hop neighbourhood mean, for every `target` node."""
    x = data[target].x.numpy().astype(np.float64)
    n = x.shape[0]
    total = np.zeros_like(x)
    count = np.zeros(n)
    for src, rel, dst in data.edge_types:
        if src != target or dst == target:
            continue
        edge_index = data[src, rel, dst].edge_index.numpy()
        m = int(data[dst].num_nodes)
        incidence = csr_matrix(
            coo_matrix((np.ones(edge_index.shape[1]), (edge_index[0], edge_index[1])), (n, m))
        )
        users = np.asarray(incidence.sum(axis=0)).ravel()
        # Mean target features per neighbour, then summed over each node's neighbours.
        per_neighbour = (incidence.T @ x) / np.maximum(users, 1.0)[:, None]
        total += incidence @ per_neighbour
        count += np.asarray(incidence.sum(axis=1)).ravel()
    mean = total / np.maximum(count, 1.0)[:, None]
    return np.hstack([x, mean])


@dataclass
class AnomalyModel:
    """PCA reconstruction error, ranked against the population; see the module docstring."""

    target: str
    standardizer: Standardizer
    mean: list[float]
    components: list[list[float]]
    quantiles: list[float]
    start: float = 0.95
    cap: float = 0.6

    def errors(self, data: HeteroData) -> np.ndarray:
        features = neighbourhood_features(self.standardizer.apply(data), self.target)
        centred = features - np.asarray(self.mean)
        basis = np.asarray(self.components)
        reconstructed = centred @ basis.T @ basis
        return np.asarray(((centred - reconstructed) ** 2).sum(axis=1))

    def probabilities(self, data: HeteroData, nodes: Tensor) -> np.ndarray:
        """Anomaly scores in [0, cap] of `nodes` (not probabilities: see the module docs)."""
        errors = self.errors(data)[nodes.numpy()]
        levels = np.linspace(0.0, 1.0, len(self.quantiles))
        rank = np.interp(errors, self.quantiles, levels)
        return np.asarray(np.clip((rank - self.start) / (1.0 - self.start), 0.0, 1.0) * self.cap)

    def score_arrays(
        self,
        x_dict: dict[str, np.ndarray],
        edge_index_dict: dict[tuple[str, str, str], np.ndarray],
        node: int,
    ) -> float:
        """The score of one node of a sampled neighbourhood given as NumPy arrays (live
        scoring)."""
        import torch

        subgraph = hetero_from_arrays(x_dict, edge_index_dict)
        return float(self.probabilities(subgraph, torch.tensor([node]))[0])

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "standardizer": self.standardizer.to_dict(),
                "mean": self.mean, "components": self.components, "quantiles": self.quantiles,
                "start": self.start, "cap": self.cap}  # fmt: skip

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> AnomalyModel:
        return cls(
            target=raw["target"],
            standardizer=Standardizer.from_dict(raw["standardizer"]),
            mean=raw["mean"],
            components=raw["components"],
            quantiles=raw["quantiles"],
            start=float(raw["start"]),
            cap=float(raw["cap"]),
        )


def fit_anomaly(data: HeteroData, target: str, *, variance: float = 0.9) -> AnomalyModel:
    """Fit the fallback on every `target` node of `data` (labels are not used)."""
    n = int(data[target].num_nodes)
    if n < 10:
        raise ModelError(f"the anomaly fallback needs at least 10 {target} nodes, not {n}")
    standardizer = Standardizer.fit(data)
    features = neighbourhood_features(standardizer.apply(data), target)
    pca = PCA(n_components=variance, svd_solver="full", random_state=0).fit(features)
    model = AnomalyModel(
        target=target,
        standardizer=standardizer,
        mean=[float(v) for v in pca.mean_],
        components=[[float(v) for v in row] for row in pca.components_],
        quantiles=[],
    )
    errors = model.errors(data)
    model.quantiles = [float(v) for v in np.quantile(errors, np.linspace(0.0, 1.0, 1001))]
    return model
