"""Neighbour sampling for mini-batch training: PyG's `NeighborLoader` on any installation.

PyG's `NeighborSampler` delegates to compiled kernels from ``pyg-lib`` or ``torch-sparse``;
neither is published on PyPI as a wheel for current PyTorch releases, and this project installs
from PyPI only. `TorchNeighborSampler` keeps PyG's sampler (its CSC conversion, the loader's
filtering and batching) and, when no kernel is installed, replaces only the sampling step with
a vectorised PyTorch implementation of the same semantics: per hop and edge type, up to
``num_neighbors[hop]`` incoming edges of each frontier node, uniformly without replacement
(``-1`` takes all), new nodes appended after the ones already sampled so the seeds come first.
With ``pyg-lib`` installed the compiled kernel is used as before.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import torch
import torch_geometric.typing
from torch import Tensor
from torch_geometric.loader import NeighborLoader
from torch_geometric.sampler import HeteroSamplerOutput, NeighborSampler

if TYPE_CHECKING:
    from torch_geometric.data import HeteroData

EdgeType = tuple[str, str, str]


def _kernel_installed() -> bool:
    return bool(torch_geometric.typing.WITH_PYG_LIB or torch_geometric.typing.WITH_TORCH_SPARSE)


class TorchNeighborSampler(NeighborSampler):  # type: ignore[misc]
    """`NeighborSampler` that samples with PyTorch ops when no compiled kernel is installed."""

    def __init__(self, data: HeteroData, num_neighbors: Any, **kwargs: Any) -> None:
        with warnings.catch_warnings():
            # PyG warns that sampling without pyg-lib is deprecated; this class is the fallback.
            warnings.simplefilter("ignore", UserWarning)
            super().__init__(data, num_neighbors, **kwargs)
        self.generator = torch.Generator().manual_seed(0)

    def _sample(self, seed: Any, seed_time: Any = None, **kwargs: Any) -> HeteroSamplerOutput | Any:
        if _kernel_installed() or not isinstance(seed, dict):
            return super()._sample(seed, seed_time, **kwargs)
        return self._sample_hetero(seed)

    def _sample_hetero(self, seed: dict[str, Tensor]) -> HeteroSamplerOutput:
        counts = self.num_neighbors.get_mapped_values(self.edge_types)
        hops = self.num_neighbors.num_hops
        # Global id -> position in the sampled node list, per node type (-1: not sampled yet).
        position = {nt: torch.full((n,), -1, dtype=torch.long) for nt, n in self.num_nodes.items()}
        nodes: dict[str, list[Tensor]] = {nt: [] for nt in self.node_types}
        size = dict.fromkeys(self.node_types, 0)
        sampled_nodes = {nt: [0] * (hops + 1) for nt in self.node_types}
        frontier: dict[str, Tensor] = {}
        for nt, ids in seed.items():
            ids = ids.to(torch.long)
            position[nt][ids] = torch.arange(ids.numel())
            nodes[nt].append(ids)
            size[nt] = ids.numel()
            sampled_nodes[nt][0] = ids.numel()
            frontier[nt] = ids
        rows: dict[EdgeType, list[Tensor]] = {et: [] for et in self.edge_types}
        cols: dict[EdgeType, list[Tensor]] = {et: [] for et in self.edge_types}
        edges: dict[EdgeType, list[Tensor]] = {et: [] for et in self.edge_types}
        sampled_edges = {et: [0] * hops for et in self.edge_types}
        for hop in range(hops):
            added: dict[str, list[Tensor]] = {nt: [] for nt in self.node_types}
            for edge_type in self.edge_types:
                src, _, dst = edge_type
                key = self.to_rel_type[edge_type]
                k = int(counts[key][hop])
                targets = frontier.get(dst)
                if k == 0 or targets is None or targets.numel() == 0:
                    continue
                colptr, row = self.colptr_dict[key], self.row_dict[key]
                start, degree = colptr[targets], colptr[targets + 1] - colptr[targets]
                picked, owner = self._pick(start, degree, k)
                if picked.numel() == 0:
                    continue
                neighbours = row[picked]
                unseen = neighbours[position[src][neighbours] < 0].unique()
                if unseen.numel():
                    position[src][unseen] = torch.arange(size[src], size[src] + unseen.numel())
                    size[src] += unseen.numel()
                    nodes[src].append(unseen)
                    added[src].append(unseen)
                    sampled_nodes[src][hop + 1] += unseen.numel()
                rows[edge_type].append(position[src][neighbours])
                cols[edge_type].append(position[dst][targets[owner]])
                edges[edge_type].append(picked)
                sampled_edges[edge_type][hop] += picked.numel()
            frontier = {nt: torch.cat(parts) for nt, parts in added.items() if parts}
        empty = torch.empty(0, dtype=torch.long)
        return HeteroSamplerOutput(
            node={nt: torch.cat(parts) if parts else empty for nt, parts in nodes.items()},
            row={et: torch.cat(parts) if parts else empty for et, parts in rows.items()},
            col={et: torch.cat(parts) if parts else empty for et, parts in cols.items()},
            edge={et: torch.cat(parts) if parts else empty for et, parts in edges.items()},
            batch=None,
            num_sampled_nodes=sampled_nodes,
            num_sampled_edges=sampled_edges,
        )

    def _pick(self, start: Tensor, degree: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """Positions (in the CSC arrays) of up to `k` random incoming edges of each target, and
        the index of the target each belongs to."""
        owner = torch.arange(degree.numel()).repeat_interleave(degree)
        if owner.numel() == 0:
            return owner, owner
        first = torch.cumsum(degree, 0) - degree
        offset = torch.arange(owner.numel()) - first[owner]
        positions = start[owner] + offset
        if k < 0 or int(degree.max()) <= k:
            return positions, owner
        # A random rank within each target's edges: sort by (target, random key), keep the first k.
        keys = owner.to(torch.float64) + torch.rand(owner.numel(), generator=self.generator).to(
            torch.float64
        )
        order = torch.argsort(keys)
        rank = torch.arange(owner.numel()) - first[owner[order]]
        keep = order[rank < k]
        return positions[keep], owner[keep]


def neighbor_loader(
    data: HeteroData,
    target: str,
    nodes: Tensor,
    num_neighbors: list[int],
    *,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
) -> NeighborLoader:
    """A `NeighborLoader` over `nodes` of type `target`, sampling `num_neighbors[hop]` incoming
    edges per edge type at each hop."""
    fanout = {edge_type: list(num_neighbors) for edge_type in data.edge_types}
    sampler = TorchNeighborSampler(data, fanout)
    sampler.generator.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    return NeighborLoader(
        data,
        num_neighbors=fanout,
        input_nodes=(target, nodes),
        batch_size=batch_size,
        shuffle=shuffle,
        neighbor_sampler=sampler,
        generator=generator,
    )
