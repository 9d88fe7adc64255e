"""The two GNNs, as plain `torch.nn.Module`s built from a graph's metadata.

Both take ``x_dict`` (features per node type) and ``edge_index_dict`` and return one logit per
node of the target type, so either can be trained, sampled and served the same way.

`HeteroSAGE`
    GraphSAGE over the heterogeneous graph (`HeteroConv` of one `SAGEConv` per edge type, mean
    aggregation, sums over edge types). Each node type first gets a linear projection to a common
    width, since identifier types carry 2 features and subscribers about 70.

`CamouflageGNN`
    Built for fraud graphs where a fraudster's neighbours are mostly legitimate (heterophily) and
    fraudsters deliberately connect to legitimate accounts (camouflage). Two ideas, in a simple
    form of our own:

    1. *Label-aware neighbour filtering* (after CARE-GNN, Dou et al. 2020, and PC-GNN, Liu et al.
       2021). At every layer each node gets a suspicion score ``p = sigmoid(w · h)`` from its
       current representation; the suspicion of the target type is trained directly on the
       labels (an auxiliary loss), so it measures "looks like fraud". An edge u → v is weighted
       ``max(0, 1 - |p_u - p_v| / tau)``: neighbours whose suspicion differs from v's by more than
       ``tau`` are dropped, the others averaged with weights. A fraudster's legitimate camouflage
       links then carry little weight, and so do the few suspicious links of a legitimate
       subscriber. Unlike CARE-GNN's top-p selection trained by reinforcement learning, the
       filter is soft and differentiable, and the threshold is fixed.
    2. *Separate ego and neighbour embeddings* (after H2GCN, Zhu et al. 2020). A node's own
       representation is never mixed into the neighbour mean: each layer concatenates the ego
       embedding with one filtered neighbour mean per incoming edge type before a linear layer,
       and the classifier reads the concatenation of every layer's output of the target node, so
       its own features survive however different its neighbours are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import numpy as np
import numpy.typing as npt
import torch
from scipy.special import expit
from torch import Tensor, nn
from torch.nn import functional
from torch_geometric.nn import HeteroConv, SAGEConv

EdgeType = tuple[str, str, str]
Metadata = tuple[list[str], list[EdgeType]]
ModelKind = Literal["sage", "camouflage"]
Folded = TypeVar("Folded")
Array = npt.NDArray[np.float32]
Indices = npt.NDArray[np.int64]


def _key(edge_type: EdgeType) -> str:
    return "__".join(edge_type)


def _needed_types(edge_types: list[EdgeType], target: str, layers: int) -> list[set[str]]:
    """Per layer, the destination types whose output a later layer or the head reads: the live
    passes compute only these."""
    needed = [{target}]
    for _ in range(layers - 1):
        read = {t for src, _, dst in edge_types if dst in needed[0] for t in (src, dst)}
        needed.insert(0, read | needed[0])
    return needed


def _linear(modules: nn.ModuleDict, key: str) -> nn.Linear:
    module = modules[key]
    assert isinstance(module, nn.Linear)
    return module


class _Fold(Generic[Folded]):
    """Weights a live pass derives from a module's parameters once, and derives again when one
    of them has changed in place since (an optimiser step, `load_state_dict`): tensors count
    their in-place changes."""

    def __init__(self, derive: Callable[[], tuple[Folded, list[Tensor | None]]]) -> None:
        self._derive = derive
        self._value: Folded | None = None
        self._sources: list[tuple[Tensor, int]] = []

    def get(self) -> Folded:
        if self._value is None or any(p._version != v for p, v in self._sources):
            self._value, sources = self._derive()
            self._sources = [(p, p._version) for p in sources if p is not None]
        return self._value


# ---------------------------------------------------------------------- live passes in NumPy
#
# Live scoring runs a model over one subscriber's neighbourhood: a few dozen nodes. There the
# fixed cost of each PyTorch operation (several microseconds of dispatch) is most of a pass,
# and NumPy's is a fraction of it; `live_forward` is `fast_forward` in NumPy, on weights copied
# (transposed, folded) once per change of the parameters.


def _array(tensor: Tensor) -> Array:
    # A copy: an in-place change of the parameter must not reach a fold silently.
    return np.array(tensor.detach().numpy(), dtype=np.float32)


def _affine(linear: nn.Module) -> tuple[Array, Array]:
    """(weight transposed, bias) of a linear layer, for ``x @ weight + bias``."""
    assert isinstance(linear, nn.Linear) and linear.bias is not None
    return _array(linear.weight).T.copy(), _array(linear.bias)


def _relu(x: Array) -> Array:
    return np.maximum(x, np.float32(0.0))


def _segment_sum(values: Array, index: Indices, size: int) -> Array:
    total = np.zeros((size, values.shape[1]), dtype=np.float32)
    np.add.at(total, index, values)
    return total


def _counts(index: Indices, size: int, weights: Array | None = None) -> Array:
    return np.bincount(index, weights=weights, minlength=size).astype(np.float32)


def _head(layers: list[tuple[Array, Array]], x: Array) -> Array:
    (w1, b1), (w2, b2) = layers
    out: Array = (_relu(x @ w1 + b1) @ w2 + b2)[:, 0]
    return out


def _live_ends(
    net: HeteroSAGE | CamouflageGNN,
) -> tuple[dict[str, tuple[Array, Array]], list[tuple[Array, Array]]]:
    """Either model's input projections and head, for its live pass."""
    inputs = {nt: _affine(module) for nt, module in net.inputs.items()}
    return inputs, [_affine(net.head[0]), _affine(net.head[2])]


def _live_inputs(
    inputs: dict[str, tuple[Array, Array]], x_dict: Mapping[str, Array]
) -> dict[str, Array]:
    return {nt: _relu(x @ w + b) for nt, x in x_dict.items() for w, b in [inputs[nt]]}


@dataclass(frozen=True)
class _LiveSage:
    inputs: dict[str, tuple[Array, Array]]
    roots: list[dict[str, tuple[Array, Array]]]  # per layer, per destination type
    neighbours: list[dict[EdgeType, Array]]  # per layer, per edge type: lin_l transposed
    head: list[tuple[Array, Array]]


@dataclass(frozen=True)
class _LiveCamouflage:
    inputs: dict[str, tuple[Array, Array]]
    # per layer, per node type: own (weight, bias) and per incoming edge type (weight, bias)
    folded: list[dict[str, tuple[tuple[Array, Array], dict[EdgeType, tuple[Array, Array]]]]]
    suspicion: list[dict[str, tuple[Array, Array]]]
    taus: list[float]
    head: list[tuple[Array, Array]]


class HeteroSAGE(nn.Module):
    """Heterogeneous GraphSAGE; see the module docstring."""

    def __init__(
        self,
        metadata: Metadata,
        in_dims: dict[str, int],
        target: str,
        *,
        hidden: int = 64,
        layers: int = 2,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        node_types, edge_types = metadata
        self.target = target
        self.dropout = dropout
        self.edge_types = list(edge_types)
        self.inputs = nn.ModuleDict({nt: nn.Linear(in_dims[nt], hidden) for nt in node_types})
        self.convs = nn.ModuleList(
            HeteroConv({et: SAGEConv((hidden, hidden), hidden) for et in edge_types}, aggr="sum")
            for _ in range(layers)
        )
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self._folded = _Fold(self._fold_roots)  # `fast_forward`'s root terms (see there)
        self._live = _Fold(self._live_weights)  # `live_forward`'s weights, in NumPy
        self._needed_types = _needed_types(self.edge_types, target, layers)

    def forward(
        self, x_dict: dict[str, Tensor], edge_index_dict: dict[EdgeType, Tensor]
    ) -> tuple[Tensor, list[Tensor]]:
        h = {nt: functional.relu(self.inputs[nt](x)) for nt, x in x_dict.items()}
        for conv in self.convs:
            out = conv(h, edge_index_dict)
            # A node type that received no message in this batch keeps its representation.
            h = {
                nt: functional.dropout(functional.relu(out[nt]), self.dropout, self.training)
                if nt in out
                else h[nt]
                for nt in h
            }
        logits: Tensor = self.head(h[self.target]).squeeze(-1)
        return logits, []

    @torch.no_grad()
    def _live_weights(self) -> tuple[_LiveSage, list[Tensor | None]]:
        roots = self._folded.get()
        neighbours: list[dict[EdgeType, Array]] = []
        for conv in self.convs:
            hetero: Any = conv
            neighbours.append(
                {et: _array(hetero.convs[et].lin_l.weight).T.copy() for et in self.edge_types}
            )
        inputs, head = _live_ends(self)
        weights = _LiveSage(
            inputs=inputs,
            roots=[
                {dst: (_array(w).T.copy(), _array(b)) for dst, (w, b) in layer.items()}
                for layer in roots
            ],
            neighbours=neighbours,
            head=head,
        )
        return weights, list(self.parameters())

    def live_forward(
        self, x_dict: Mapping[str, Array], edge_index_dict: Mapping[EdgeType, Indices]
    ) -> Array:
        """`fast_forward` in NumPy (the same logits to float precision), for live scoring."""
        weights = self._live.get()
        h = _live_inputs(weights.inputs, x_dict)
        for roots, neighbours, needed in zip(
            weights.roots, weights.neighbours, self._needed_types, strict=True
        ):
            out = {
                dst: h[dst] @ w + b for dst, (w, b) in roots.items() if dst in needed and dst in h
            }
            for edge_type in self.edge_types:
                src, _, dst = edge_type
                edge_index = edge_index_dict.get(edge_type)
                if dst not in out or src not in h or edge_index is None or not edge_index.size:
                    continue  # no neighbours: the mean is zero, its bias is already in
                size = h[dst].shape[0]
                total = _segment_sum(h[src][edge_index[0]], edge_index[1], size)
                mean = total / np.maximum(_counts(edge_index[1], size), 1.0)[:, None]
                out[dst] = out[dst] + mean @ neighbours[edge_type]
            h = {nt: _relu(out[nt]) if nt in out else h[nt] for nt in h}
        return _head(weights.head, h[self.target])

    @torch.no_grad()
    def _fold_roots(self) -> tuple[list[dict[str, tuple[Tensor, Tensor]]], list[Tensor | None]]:
        """Per layer and destination type, the sum over its edge types of the root weights and
        of the biases: every edge type adds ``lin_r(x_dst) + lin_l.bias`` whether it has edges
        or not, so these are one linear layer instead of one per edge type."""
        folded: list[dict[str, tuple[Tensor, Tensor]]] = []
        sources: list[Tensor | None] = []
        for conv in self.convs:
            hetero: Any = conv
            by_dst: dict[str, tuple[Tensor, Tensor]] = {}
            for edge_type in self.edge_types:
                sage = hetero.convs[edge_type]
                sources += [sage.lin_r.weight, sage.lin_l.bias, sage.lin_r.bias]
                weight, bias = sage.lin_r.weight, sage.lin_l.bias
                if sage.lin_r.bias is not None:
                    bias = bias + sage.lin_r.bias
                if (dst := edge_type[2]) in by_dst:
                    weight, bias = by_dst[dst][0] + weight, by_dst[dst][1] + bias
                by_dst[dst] = (weight, bias)
            folded.append(by_dst)
        return folded, sources

    def fast_forward(
        self, x_dict: dict[str, Tensor], edge_index_dict: dict[EdgeType, Tensor]
    ) -> Tensor:
        """The same logits as `forward` in eval mode, computed for the small neighbourhoods of
        live scoring, where the per-call overhead of 2 x 12 convolutions was most of the time:
        the mean aggregation is done by plain index ops instead of `MessagePassing`; the root
        terms and biases of all edge types of a destination are one linear layer
        (`_fold_roots`); a layer computes only the types a later layer or the head reads.

        Every edge type of the model counts, with or without edges here, as in `forward` on a
        sampled batch (which holds every edge type): a type without edges still adds its
        convolution's root term and bias to each node of its destination type. A live
        neighbourhood lacks most types (a subscriber without a card has no card edges), and
        leaving them out gave scores unlike batch scoring's."""
        folded = self._folded.get()
        h = {nt: functional.relu(self.inputs[nt](x)) for nt, x in x_dict.items()}
        for conv, roots, needed in zip(self.convs, folded, self._needed_types, strict=True):
            hetero: Any = conv
            out: dict[str, Tensor] = {}
            for dst, (root_weight, bias) in roots.items():
                if dst in needed and dst in h:
                    out[dst] = functional.linear(h[dst], root_weight, bias)
            for edge_type in self.edge_types:
                src, _, dst = edge_type
                edge_index = edge_index_dict.get(edge_type)
                if dst not in out or src not in h or edge_index is None or not edge_index.numel():
                    continue  # no neighbours: the mean is zero, its bias is already in
                x_src, x_dst = h[src], h[dst]
                total = x_src.new_zeros((x_dst.size(0), x_src.size(1)))
                total.index_add_(0, edge_index[1], x_src[edge_index[0]])
                count = x_src.new_zeros(x_dst.size(0)).index_add_(
                    0, edge_index[1], x_src.new_ones(edge_index.size(1))
                )
                mean = total / count.clamp(min=1.0).unsqueeze(-1)
                out[dst] = out[dst] + functional.linear(mean, hetero.convs[edge_type].lin_l.weight)
            h = {nt: functional.relu(out[nt]) if nt in out else h[nt] for nt in h}
        logits: Tensor = self.head(h[self.target]).squeeze(-1)
        return logits


# Per node type: the folded ego map (weight, bias) and per incoming edge type the folded
# neighbour map (weight, bias); see `FilteredLayer.fold`.
_FoldedType = tuple[tuple[Tensor, Tensor], dict[EdgeType, tuple[Tensor, Tensor]]]


class FilteredLayer(nn.Module):
    """One layer of `CamouflageGNN`: suspicion scores, filtered neighbour means, ego concat."""

    def __init__(self, metadata: Metadata, hidden: int, tau: float) -> None:
        super().__init__()
        node_types, edge_types = metadata
        self.tau = tau
        self.edge_types = list(edge_types)
        self.suspicion = nn.ModuleDict({nt: nn.Linear(hidden, 1) for nt in node_types})
        self.ego = nn.ModuleDict({nt: nn.Linear(hidden, hidden) for nt in node_types})
        self.neighbour = nn.ModuleDict({_key(et): nn.Linear(hidden, hidden) for et in edge_types})
        incoming = {nt: [et for et in edge_types if et[2] == nt] for nt in node_types}
        self.incoming = incoming
        self.combine = nn.ModuleDict(
            {nt: nn.Linear(hidden * (1 + len(incoming[nt])), hidden) for nt in node_types}
        )

    def forward(
        self, h: dict[str, Tensor], edge_index_dict: dict[EdgeType, Tensor]
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        logits = {nt: self.suspicion[nt](x).squeeze(-1) for nt, x in h.items()}
        p = {nt: torch.sigmoid(value) for nt, value in logits.items()}
        out: dict[str, Tensor] = {}
        for nt, x in h.items():
            parts = [self.ego[nt](x)]
            for et in self.incoming[nt]:
                src = et[0]
                edge_index = edge_index_dict.get(et)
                if edge_index is None or src not in h or edge_index.numel() == 0:
                    parts.append(torch.zeros_like(parts[0]))
                    continue
                s, d = edge_index[0], edge_index[1]
                weight = torch.clamp(1.0 - (p[src][s] - p[nt][d]).abs() / self.tau, min=0.0)
                message = self.neighbour[_key(et)](h[src])[s] * weight.unsqueeze(-1)
                total = torch.zeros_like(parts[0]).index_add_(0, d, message)
                norm = torch.zeros(x.size(0), device=x.device, dtype=x.dtype)
                norm = norm.index_add_(0, d, weight)
                parts.append(total / (norm.unsqueeze(-1) + 1e-6))
            out[nt] = functional.relu(self.combine[nt](torch.cat(parts, dim=-1)))
        return out, logits

    @torch.no_grad()
    def fold(self) -> tuple[dict[str, _FoldedType], list[Tensor | None]]:
        """Per node type, `combine` applied to the ego and neighbour embeddings as one linear
        map each: ``combine(cat(parts))`` is the sum of `combine`'s column blocks times the
        parts, and each part is itself linear, so a block and the linear layer before it are
        one matrix. The neighbour bias enters scaled by ``norm / (norm + 1e-6)``, as in the
        weighted mean of `forward`."""
        folded: dict[str, _FoldedType] = {}
        sources: list[Tensor | None] = []
        for nt in self.combine:
            combine, ego = _linear(self.combine, nt), _linear(self.ego, nt)
            blocks = torch.split(combine.weight, combine.weight.size(0), dim=1)
            sources += [combine.weight, combine.bias, ego.weight, ego.bias]
            own = (blocks[0] @ ego.weight, blocks[0] @ ego.bias + combine.bias)
            incoming: dict[EdgeType, tuple[Tensor, Tensor]] = {}
            for block, et in zip(blocks[1:], self.incoming[nt], strict=True):
                neighbour = _linear(self.neighbour, _key(et))
                sources += [neighbour.weight, neighbour.bias]
                incoming[et] = (block @ neighbour.weight, block @ neighbour.bias)
            folded[nt] = (own, incoming)
        return folded, sources

    def fast(
        self,
        h: dict[str, Tensor],
        edge_index_dict: dict[EdgeType, Tensor],
        folded: dict[str, _FoldedType],
        needed: set[str],
    ) -> dict[str, Tensor]:
        """`forward` in eval mode for the `needed` types only, with the folded weights; the
        suspicion scores of the types that a needed type's edges read."""
        p: dict[str, Tensor] = {}

        def suspicion(nt: str) -> Tensor:
            if nt not in p:
                p[nt] = torch.sigmoid(self.suspicion[nt](h[nt]).squeeze(-1))
            return p[nt]

        out: dict[str, Tensor] = {}
        for nt in needed:
            if nt not in h:
                continue
            (weight, bias), incoming = folded[nt]
            total = functional.linear(h[nt], weight, bias)
            for et, (neighbour_weight, neighbour_bias) in incoming.items():
                src = et[0]
                edge_index = edge_index_dict.get(et)
                if edge_index is None or src not in h or edge_index.numel() == 0:
                    continue  # a zero part: nothing to add
                s, d = edge_index[0], edge_index[1]
                weight_of_edge = torch.clamp(
                    1.0 - (suspicion(src)[s] - suspicion(nt)[d]).abs() / self.tau, min=0.0
                )
                message = functional.linear(h[src], neighbour_weight)[s]
                summed = total.new_zeros(total.shape).index_add_(
                    0, d, message * weight_of_edge.unsqueeze(-1)
                )
                norm = total.new_zeros(total.size(0)).index_add_(0, d, weight_of_edge)
                share = norm / (norm + 1e-6)
                total = total + summed / (norm + 1e-6).unsqueeze(-1)
                total = total + share.unsqueeze(-1) * neighbour_bias
            out[nt] = functional.relu(total)
        return out


def _live_filtered_layer(
    h: Mapping[str, Array],
    edge_index_dict: Mapping[EdgeType, Indices],
    folded: dict[str, tuple[tuple[Array, Array], dict[EdgeType, tuple[Array, Array]]]],
    suspicion_weights: dict[str, tuple[Array, Array]],
    tau: float,
    needed: set[str],
) -> dict[str, Array]:
    """`FilteredLayer.fast` in NumPy: the `needed` types' outputs of one layer."""
    suspicion: dict[str, Array] = {}

    def suspect(nt: str) -> Array:
        if nt not in suspicion:
            w, b = suspicion_weights[nt]
            suspicion[nt] = expit((h[nt] @ w + b)[:, 0])
        return suspicion[nt]

    out: dict[str, Array] = {}
    for nt in needed:
        if nt not in h:
            continue
        (weight, bias), incoming = folded[nt]
        total = h[nt] @ weight + bias
        size = total.shape[0]
        for et, (neighbour_weight, neighbour_bias) in incoming.items():
            edge_index = edge_index_dict.get(et)
            if edge_index is None or et[0] not in h or not edge_index.size:
                continue  # a zero part: nothing to add
            s, d = edge_index[0], edge_index[1]
            filtered = 1.0 - np.abs(suspect(et[0])[s] - suspect(nt)[d]) / tau
            edge_weight = np.maximum(filtered, 0.0).astype(np.float32)
            message = (h[et[0]] @ neighbour_weight)[s] * edge_weight[:, None]
            norm = _counts(d, size, edge_weight)
            total = total + _segment_sum(message, d, size) / (norm + 1e-6)[:, None]
            total = total + (norm / (norm + 1e-6))[:, None] * neighbour_bias
        out[nt] = _relu(total)
    return out


class CamouflageGNN(nn.Module):
    """Label-aware filtered aggregation with separate ego and neighbour embeddings; see the
    module docstring."""

    def __init__(
        self,
        metadata: Metadata,
        in_dims: dict[str, int],
        target: str,
        *,
        hidden: int = 64,
        layers: int = 2,
        dropout: float = 0.2,
        tau: float = 0.5,
    ) -> None:
        super().__init__()
        node_types, _ = metadata
        self.target = target
        self.dropout = dropout
        self.inputs = nn.ModuleDict({nt: nn.Linear(in_dims[nt], hidden) for nt in node_types})
        self.layers = nn.ModuleList(FilteredLayer(metadata, hidden, tau) for _ in range(layers))
        self.head = nn.Sequential(
            nn.Linear(hidden * (layers + 1), hidden), nn.ReLU(), nn.Linear(hidden, 1)
        )
        self._folded = _Fold(self._fold_layers)  # `fast_forward`'s folded weights
        self._live = _Fold(self._live_weights)  # `live_forward`'s weights, in NumPy
        self._needed_types = _needed_types(list(metadata[1]), target, layers)

    def _fold_layers(self) -> tuple[list[dict[str, _FoldedType]], list[Tensor | None]]:
        folded: list[dict[str, _FoldedType]] = []
        sources: list[Tensor | None] = []
        for layer in self.layers:
            assert isinstance(layer, FilteredLayer)
            per_type, read = layer.fold()
            folded.append(per_type)
            sources += read
        return folded, sources

    @torch.no_grad()
    def _live_weights(self) -> tuple[_LiveCamouflage, list[Tensor | None]]:
        folded = [
            {
                nt: (
                    (_array(own[0]).T.copy(), _array(own[1])),
                    {et: (_array(w).T.copy(), _array(b)) for et, (w, b) in incoming.items()},
                )
                for nt, (own, incoming) in layer.items()
            }
            for layer in self._folded.get()
        ]
        suspicion, taus = [], []
        for layer in self.layers:
            assert isinstance(layer, FilteredLayer)
            suspicion.append({nt: _affine(module) for nt, module in layer.suspicion.items()})
            taus.append(layer.tau)
        inputs, head = _live_ends(self)
        weights = _LiveCamouflage(
            inputs=inputs, folded=folded, suspicion=suspicion, taus=taus, head=head
        )
        return weights, list(self.parameters())

    def live_forward(
        self, x_dict: Mapping[str, Array], edge_index_dict: Mapping[EdgeType, Indices]
    ) -> Array:
        """`fast_forward` in NumPy (the same logits to float precision), for live scoring."""
        weights = self._live.get()
        h = _live_inputs(weights.inputs, x_dict)
        kept = [h[self.target]]
        for folded, suspicion, tau, needed in zip(
            weights.folded, weights.suspicion, weights.taus, self._needed_types, strict=True
        ):
            h = {**h, **_live_filtered_layer(h, edge_index_dict, folded, suspicion, tau, needed)}
            kept.append(h[self.target])
        return _head(weights.head, np.concatenate(kept, axis=1))

    def forward(
        self, x_dict: dict[str, Tensor], edge_index_dict: dict[EdgeType, Tensor]
    ) -> tuple[Tensor, list[Tensor]]:
        h = {nt: functional.relu(self.inputs[nt](x)) for nt, x in x_dict.items()}
        kept = [h[self.target]]
        suspicion: list[Tensor] = []
        for layer in self.layers:
            h, logits = layer(h, edge_index_dict)
            h = {nt: functional.dropout(x, self.dropout, self.training) for nt, x in h.items()}
            kept.append(h[self.target])
            suspicion.append(logits[self.target])
        out: Tensor = self.head(torch.cat(kept, dim=-1)).squeeze(-1)
        return out, suspicion

    def fast_forward(
        self, x_dict: dict[str, Tensor], edge_index_dict: dict[EdgeType, Tensor]
    ) -> Tensor:
        """The same logits as `forward` in eval mode, for the small neighbourhoods of live
        scoring, where the per-call overhead of each small operation was most of the time: each
        layer computes only the node types a later layer or the head reads, an edge type with
        no edges here adds nothing (its part of the concatenation is zero), and the ego and
        neighbour maps are folded into `combine` (`FilteredLayer.fold`)."""
        folded = self._folded.get()
        h = {nt: functional.relu(self.inputs[nt](x)) for nt, x in x_dict.items()}
        kept = [h[self.target]]
        for layer, weights, needed in zip(self.layers, folded, self._needed_types, strict=True):
            assert isinstance(layer, FilteredLayer)
            h = {**h, **layer.fast(h, edge_index_dict, weights, needed)}
            kept.append(h[self.target])
        logits: Tensor = self.head(torch.cat(kept, dim=-1)).squeeze(-1)
        return logits


def build_model(
    kind: ModelKind,
    metadata: Metadata,
    in_dims: dict[str, int],
    target: str,
    *,
    hidden: int,
    layers: int,
    dropout: float,
) -> HeteroSAGE | CamouflageGNN:
    if kind == "sage":
        return HeteroSAGE(metadata, in_dims, target, hidden=hidden, layers=layers, dropout=dropout)
    return CamouflageGNN(metadata, in_dims, target, hidden=hidden, layers=layers, dropout=dropout)
