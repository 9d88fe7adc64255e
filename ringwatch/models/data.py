"""Dataset containers for node classification: a graph, the node type to score, labels, splits.

Everything here works on any PyG graph: a `HeteroData` is used as it is, a homogeneous `Data`
becomes a `HeteroData` with one node type (``"node"``) and one edge type. Labels are binary
(1 fraud, 0 legitimate) with -1 for unlabelled nodes; the caller gives the train, validation and
test masks (`group_split` makes them so that no group, e.g. a connected component or a ring,
has members in two splits).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from torch import Tensor
from torch_geometric.data import Data, HeteroData

from ringwatch.models.exceptions import ModelError

HOMOGENEOUS_NODE = "node"
HOMOGENEOUS_EDGE = (HOMOGENEOUS_NODE, "to", HOMOGENEOUS_NODE)


def as_hetero(data: Data | HeteroData) -> HeteroData:
    """A homogeneous graph as a one-type `HeteroData`; a `HeteroData` unchanged."""
    if isinstance(data, HeteroData):
        return data
    out = HeteroData()
    out[HOMOGENEOUS_NODE].x = data.x
    if data.y is not None:
        out[HOMOGENEOUS_NODE].y = data.y
    out[HOMOGENEOUS_EDGE].edge_index = data.edge_index
    return out


@dataclass
class NodeSplit:
    """Boolean masks over the target nodes; only labelled nodes (y >= 0) are ever used."""

    train: Tensor
    val: Tensor
    test: Tensor

    def sizes(self, y: Tensor) -> dict[str, dict[str, int]]:
        out = {}
        for name, mask in (("train", self.train), ("val", self.val), ("test", self.test)):
            labelled = mask & (y >= 0)
            out[name] = {
                "labelled": int(labelled.sum()),
                "fraud": int((labelled & (y == 1)).sum()),
            }
        return out


@dataclass
class NodeTask:
    """What to learn: `data[target].x` features, `data[target].y` labels (1, 0, -1), a split."""

    data: HeteroData
    target: str
    split: NodeSplit

    @classmethod
    def of(
        cls,
        data: Data | HeteroData,
        *,
        target: str | None = None,
        y: Tensor | None = None,
        train: Tensor,
        val: Tensor,
        test: Tensor,
    ) -> NodeTask:
        hetero = as_hetero(data)
        target = target or HOMOGENEOUS_NODE
        if target not in hetero.node_types:
            raise ModelError(f"node type {target!r} is not in the graph")
        if y is not None:
            hetero[target].y = y
        store = hetero[target]
        if "y" not in store or "x" not in store:
            raise ModelError(f"node type {target!r} needs features (x) and labels (y)")
        n = store.num_nodes
        for name, mask in (("train", train), ("val", val), ("test", test)):
            if mask.dtype != torch.bool or mask.numel() != n:
                raise ModelError(f"the {name} mask must be a bool tensor over the {n} nodes")
        if bool((train & val).any() or (train & test).any() or (val & test).any()):
            raise ModelError("train, validation and test masks overlap")
        return cls(hetero, target, NodeSplit(train, val, test))

    @property
    def y(self) -> Tensor:
        y: Tensor = self.data[self.target].y
        return y

    def labelled(self, mask: Tensor) -> Tensor:
        """Indices of the labelled target nodes in `mask`."""
        return torch.nonzero(mask & (self.y >= 0)).flatten()


def connected_groups(
    data: HeteroData, target: str, *, skip: dict[str, Tensor] | None = None
) -> np.ndarray:
    """Component id of every `target` node over the whole graph, ignoring nodes in `skip`
    (e.g. hub identifiers, which would glue strangers together)."""
    offsets: dict[str, int] = {}
    total = 0
    for node_type in data.node_types:
        offsets[node_type] = total
        total += int(data[node_type].num_nodes)
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    for src, rel, dst in data.edge_types:
        edge_index = data[src, rel, dst].edge_index
        keep = torch.ones(edge_index.size(1), dtype=torch.bool)
        if skip is not None:
            if src in skip:
                keep &= ~skip[src][edge_index[0]]
            if dst in skip:
                keep &= ~skip[dst][edge_index[1]]
        rows.append(edge_index[0][keep].numpy() + offsets[src])
        cols.append(edge_index[1][keep].numpy() + offsets[dst])
    row = np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)
    col = np.concatenate(cols) if cols else np.empty(0, dtype=np.int64)
    matrix = coo_matrix((np.ones(row.size), (row, col)), shape=(total, total))
    _, labels = connected_components(matrix, directed=False)
    start = offsets[target]
    return np.asarray(labels[start : start + int(data[target].num_nodes)])


def group_split(
    y: Tensor,
    groups: np.ndarray,
    *,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    seed: int = 0,
) -> NodeSplit:
    """Train / validation / test masks with whole groups in one split each.

    Groups holding labelled fraud are dealt out to reach the fractions of labelled fraud, the
    other groups to reach the fractions of labelled legitimate nodes, so a ring's members are
    never on both sides and every split gets some of each class when there are enough groups.
    """
    labels = y.numpy()
    labelled = labels >= 0
    rng = np.random.default_rng(seed)
    group_ids = np.unique(groups[labelled])
    fraud_in = {g: 0 for g in group_ids}
    legit_in = {g: 0 for g in group_ids}
    for group, label in zip(groups[labelled], labels[labelled], strict=True):
        if label == 1:
            fraud_in[group] += 1
        else:
            legit_in[group] += 1
    assignment: dict[int, int] = {}
    for holds_fraud in (True, False):
        chosen = [g for g in group_ids if (fraud_in[g] > 0) == holds_fraud]
        chosen = [chosen[i] for i in rng.permutation(len(chosen))]
        weight = fraud_in if holds_fraud else legit_in
        total = sum(weight[g] for g in chosen) or 1
        filled = [0.0, 0.0, 0.0]
        for group in chosen:
            # The split furthest below its share takes the next group.
            need = [fractions[i] - filled[i] / total for i in range(3)]
            split = int(np.argmax(need))
            assignment[int(group)] = split
            filled[split] += weight[group]
    split_of = np.array([assignment.get(int(g), -1) for g in groups])
    masks = [torch.from_numpy((split_of == i) & labelled) for i in range(3)]
    return NodeSplit(*masks)


@dataclass
class Standardizer:
    """Per node type feature means and deviations, fitted on the whole graph (no labels)."""

    mean: dict[str, list[float]]
    std: dict[str, list[float]]
    _tensors: dict[str, tuple[Tensor, Tensor]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _arrays: dict[str, tuple[np.ndarray, np.ndarray]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @classmethod
    def fit(cls, data: HeteroData) -> Standardizer:
        mean, std = {}, {}
        for node_type in data.node_types:
            x = data[node_type].x.to(torch.float64)
            mean[node_type] = x.mean(0).tolist() if x.size(0) else [0.0] * x.size(1)
            deviation = x.std(0, unbiased=False) if x.size(0) > 1 else torch.ones(x.size(1))
            std[node_type] = torch.clamp(deviation, min=1e-6).tolist()
        return cls(mean, std)

    def apply(self, data: HeteroData) -> HeteroData:
        """A shallow copy of `data` with standardised features."""
        out = copy.copy(data)
        for node_type in data.node_types:
            if node_type not in self._tensors:
                self._tensors[node_type] = (
                    torch.tensor(self.mean[node_type], dtype=torch.float32),
                    torch.tensor(self.std[node_type], dtype=torch.float32),
                )
            mean, std = self._tensors[node_type]
            out[node_type].x = (data[node_type].x.to(torch.float32) - mean) / std
        return out

    def apply_arrays(self, x_dict: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """`apply` for features as NumPy arrays (live scoring), float32 like `apply`'s."""
        out: dict[str, np.ndarray] = {}
        for node_type, x in x_dict.items():
            if node_type not in self._arrays:
                self._arrays[node_type] = (
                    np.asarray(self.mean[node_type], dtype=np.float32),
                    np.asarray(self.std[node_type], dtype=np.float32),
                )
            mean, std = self._arrays[node_type]
            out[node_type] = (x.astype(np.float32, copy=False) - mean) / std
        return out

    def to_dict(self) -> dict[str, dict[str, list[float]]]:
        return {"mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, raw: dict[str, dict[str, list[float]]]) -> Standardizer:
        return cls(dict(raw["mean"]), dict(raw["std"]))


def hetero_from_arrays(
    x_dict: dict[str, np.ndarray], edge_index_dict: dict[tuple[str, str, str], np.ndarray]
) -> HeteroData:
    """The `HeteroData` of features and edge indices given as NumPy arrays."""
    data = HeteroData()
    for node_type, x in x_dict.items():
        data[node_type].x = torch.from_numpy(np.array(x))  # a copy: any strides
    for edge_type, index in edge_index_dict.items():
        data[edge_type].edge_index = torch.from_numpy(np.array(index))
    return data
