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

from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional
from torch_geometric.nn import HeteroConv, SAGEConv

EdgeType = tuple[str, str, str]
Metadata = tuple[list[str], list[EdgeType]]
ModelKind = Literal["sage", "camouflage"]


def _key(edge_type: EdgeType) -> str:
    return "__".join(edge_type)


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

    def fast_forward(
        self, x_dict: dict[str, Tensor], edge_index_dict: dict[EdgeType, Tensor]
    ) -> Tensor:
        """The same logits as `forward` in eval mode, with the mean aggregation done by plain
        index ops instead of `MessagePassing`: for the small neighbourhoods of live scoring the
        per-call overhead of 2 x 12 convolutions is most of the time.

        Every edge type of the model counts, with or without edges here, as in `forward` on a
        sampled batch (which holds every edge type): a type without edges still adds its
        convolution's root term and bias to each node of its destination type. A live
        neighbourhood lacks most types (a subscriber without a card has no card edges), and
        leaving them out gave scores unlike batch scoring's."""
        h = {nt: functional.relu(self.inputs[nt](x)) for nt, x in x_dict.items()}
        for conv in self.convs:
            hetero: Any = conv
            out: dict[str, Tensor] = {}
            for edge_type in self.edge_types:
                src, _, dst = edge_type
                if dst not in h:
                    continue
                sage = hetero.convs[edge_type]
                x_dst = h[dst]
                edge_index = edge_index_dict.get(edge_type)
                if edge_index is None or not edge_index.numel() or src not in h:
                    # No neighbours: the mean is zero, so its linear layer gives its bias.
                    value = sage.lin_r(x_dst) + sage.lin_l.bias
                else:
                    x_src = h[src]
                    total = x_src.new_zeros((x_dst.size(0), x_src.size(1)))
                    total.index_add_(0, edge_index[1], x_src[edge_index[0]])
                    count = x_src.new_zeros(x_dst.size(0)).index_add_(
                        0, edge_index[1], x_src.new_ones(edge_index.size(1))
                    )
                    mean = total / count.clamp(min=1.0).unsqueeze(-1)
                    value = sage.lin_l(mean) + sage.lin_r(x_dst)
                out[dst] = out[dst] + value if dst in out else value
            h = {nt: functional.relu(out[nt]) if nt in out else h[nt] for nt in h}
        logits: Tensor = self.head(h[self.target]).squeeze(-1)
        return logits


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
