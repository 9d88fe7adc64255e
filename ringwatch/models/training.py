"""Training and evaluation of the GNNs on any node-classification task (`NodeTask`).

`train` fits one model with mini-batches of sampled neighbourhoods (`NeighborLoader`: only the
seeds' sampled neighbourhood is in memory at once, so the graph size is bounded by the feature
tensors, not by activations), a class-weighted loss (fraud is rare: positives weigh
``negatives / positives``), early stopping on validation PR-AUC (the best epoch's weights are
kept), and Platt or isotonic calibration on the validation outputs. `evaluate` reports PR-AUC,
ROC-AUC, Brier score and precision at the top of the ranking on any mask. `train_model` trains
whichever kind a config names, the GNNs here and the graph model with a boosted head in
`ringwatch.models.boosted` (selected and calibrated on validation the same way).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from torch import Tensor
from torch.nn import functional

from ringwatch.models.calibration import Calibrator, fit_calibrator
from ringwatch.models.config import TrainConfig
from ringwatch.models.data import NodeTask, Standardizer
from ringwatch.models.exceptions import ModelError
from ringwatch.models.nets import CamouflageGNN, HeteroSAGE, build_model
from ringwatch.models.sampling import neighbor_loader

if TYPE_CHECKING:
    from ringwatch.models.boosted import BoostedModel

log = logging.getLogger(__name__)

Net = HeteroSAGE | CamouflageGNN
# Target nodes per batch when scoring: fewer, larger batches share the per-batch cost of
# sampling and of each layer's call (a million subscribers: 49 s with 1,024, 35 s with 4,096;
# 16,384 another 10 % less than 4,096).
SCORING_BATCH = 16_384


@dataclass
class Metrics:
    """Quality of calibrated scores on one set of labelled nodes."""

    n: int
    fraud: int
    pr_auc: float | None
    roc_auc: float | None
    brier: float | None
    precision_at_fraud_count: float | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class TrainedModel:
    """A trained network with what it needs to score: feature scaling and calibration."""

    net: Net
    config: TrainConfig
    target: str
    standardizer: Standardizer
    calibrator: Calibrator
    metrics: dict[str, Metrics]
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0

    def logits(self, task_data: Any, nodes: Tensor) -> np.ndarray:
        """Uncalibrated logits of `nodes` (target type) of a raw graph."""
        data = self.standardizer.apply(task_data)
        return predict_logits(self.net, data, self.target, nodes, self.config,
                              batch_size=SCORING_BATCH)  # fmt: skip

    def probabilities(self, task_data: Any, nodes: Tensor) -> np.ndarray:
        """Calibrated fraud probabilities of `nodes` (target type) of a raw graph."""
        return self.calibrator(self.logits(task_data, nodes))

    def score_arrays(
        self,
        x_dict: dict[str, np.ndarray],
        edge_index_dict: dict[tuple[str, str, str], np.ndarray],
        node: int,
    ) -> float:
        """Calibrated probability of one node of an already sampled neighbourhood given as
        NumPy arrays (`GraphBuilder.arrays`; live scoring): one pass over the whole subgraph,
        no further sampling, no `HeteroData` and no PyTorch operation. Both networks' live
        passes give the same logits as their forward in eval mode."""
        logits = self.net.live_forward(self.standardizer.apply_arrays(x_dict), edge_index_dict)
        return float(self.calibrator(np.array([float(logits[node])]))[0])


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run with `count` intra-op threads, then restore the process's setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def metrics_of(probabilities: np.ndarray, labels: np.ndarray) -> Metrics:
    both = labels.size > 0 and 0 < int(labels.sum()) < labels.size
    fraud = int(labels.sum())
    top = np.argsort(-probabilities)[:fraud] if fraud else np.empty(0, dtype=np.int64)
    return Metrics(
        n=int(labels.size),
        fraud=fraud,
        pr_auc=float(average_precision_score(labels, probabilities)) if both else None,
        roc_auc=float(roc_auc_score(labels, probabilities)) if both else None,
        brier=float(brier_score_loss(labels, probabilities)) if labels.size else None,
        precision_at_fraud_count=float(labels[top].mean()) if fraud else None,
    )


@torch.no_grad()
def predict_logits(
    net: Net,
    data: Any,
    target: str,
    nodes: Tensor,
    config: TrainConfig,
    *,
    batch_size: int = 1024,
) -> np.ndarray:
    """Raw logits of `nodes`, in their order, from sampled neighbourhoods (fixed seed), at
    least `batch_size` target nodes per batch."""
    net.eval()
    if nodes.numel() == 0:
        return np.empty(0, dtype=np.float64)
    out = np.empty(nodes.numel(), dtype=np.float64)
    loader = neighbor_loader(
        data, target, nodes, config.fanout, batch_size=max(config.batch_size, batch_size),
        shuffle=False, seed=config.seed,
    )  # fmt: skip
    start = 0
    with torch_threads(config.threads):
        for batch in loader:
            size = int(batch[target].batch_size)
            # The eval-mode pass that computes only what the seeds' logits read (the last
            # layer for the target type alone): the same logits as `net(...)`, in about half
            # the time on batches of sampled neighbourhoods.
            logits = net.fast_forward(batch.x_dict, batch.edge_index_dict)
            out[start : start + size] = logits[:size].numpy()
            start += size
    return out


def check_splits(task: NodeTask) -> tuple[Tensor, Tensor]:
    """The labelled training and validation nodes; both splits need both classes."""
    train_nodes = task.labelled(task.split.train)
    val_nodes = task.labelled(task.split.val)
    for name, nodes in (("training", train_nodes), ("validation", val_nodes)):
        labels = task.y[nodes]
        if int((labels == 1).sum()) == 0 or int((labels == 0).sum()) == 0:
            raise ModelError(f"the {name} split needs labelled nodes of both classes")
    return train_nodes, val_nodes


def train_model(task: NodeTask, config: TrainConfig) -> TrainedModel | BoostedModel:
    """The model `config.model` names, trained on `task`: `train` for the GNNs,
    `ringwatch.models.boosted.train_boosted` for the boosted model."""
    if config.model == "boosted":
        from ringwatch.models.boosted import train_boosted

        return train_boosted(task, config)
    return train(task, config)


def train(task: NodeTask, config: TrainConfig | None = None) -> TrainedModel:
    """Train one GNN on `task`; see the module docstring."""
    config = config or TrainConfig()
    if config.model == "boosted":
        raise ModelError("the boosted model is not a GNN: use train_model or train_boosted")
    with torch_threads(config.threads):
        return _train(task, config)


def _train(task: NodeTask, config: TrainConfig) -> TrainedModel:
    if len(config.fanout) != config.layers:
        config = config.model_copy(
            update={"fanout": (config.fanout * config.layers)[: config.layers]}
        )
    torch.manual_seed(config.seed)
    train_nodes, val_nodes = check_splits(task)
    standardizer = Standardizer.fit(task.data)
    data = standardizer.apply(task.data)
    target = task.target
    in_dims = {nt: int(data[nt].x.size(1)) for nt in data.node_types}
    assert config.model != "boosted"  # refused by `train`
    net = build_model(
        config.model, data.metadata(), in_dims, target,
        hidden=config.hidden, layers=config.layers, dropout=config.dropout,
    )  # fmt: skip
    optimiser = torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    y = task.y
    positives = int((y[train_nodes] == 1).sum())
    pos_weight = torch.tensor((train_nodes.numel() - positives) / positives)
    loader = neighbor_loader(
        data, target, train_nodes, config.fanout, batch_size=config.batch_size, shuffle=True,
        seed=config.seed,
    )  # fmt: skip
    val_labels = y[val_nodes].numpy()
    best_score, best_epoch, best_state = -1.0, 0, copy.deepcopy(net.state_dict())
    history: list[dict[str, float]] = []
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        net.train()
        total, seen = 0.0, 0
        for batch in loader:
            optimiser.zero_grad()
            size = int(batch[target].batch_size)
            labels = batch[target].y[:size].to(torch.float32)
            logits, suspicion = net(batch.x_dict, batch.edge_index_dict)
            loss = functional.binary_cross_entropy_with_logits(
                logits[:size], labels, pos_weight=pos_weight
            )
            for aux in suspicion:
                loss = loss + config.aux_weight * functional.binary_cross_entropy_with_logits(
                    aux[:size], labels, pos_weight=pos_weight
                )
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            total += float(loss.detach()) * size
            seen += size
        val_logits = predict_logits(net, data, target, val_nodes, config)
        score = float(average_precision_score(val_labels, val_logits))
        seconds = time.perf_counter() - started
        history.append({"epoch": epoch, "loss": total / max(seen, 1), "val_pr_auc": score,
                        "seconds": seconds})  # fmt: skip
        log.info("%s epoch %d loss %.4f val PR-AUC %.4f (%.2f s)", config.model, epoch,
                 total / max(seen, 1), score, seconds)  # fmt: skip
        if score > best_score:
            best_score, best_epoch = score, epoch
            best_state = copy.deepcopy(net.state_dict())
        elif epoch - best_epoch >= config.patience:
            break
    net.load_state_dict(best_state)
    calibrator = fit_calibrator(
        predict_logits(net, data, target, val_nodes, config), val_labels, config.calibration
    )
    model = TrainedModel(net, config, target, standardizer, calibrator, {}, history, best_epoch)
    model.metrics = evaluate(task, lambda nodes: model.probabilities(task.data, nodes))
    return model


def evaluate(
    task: NodeTask, probabilities_of: Callable[[Tensor], np.ndarray]
) -> dict[str, Metrics]:
    """Metrics of the calibrated scores `probabilities_of` gives a split's labelled nodes, on
    the train, validation and test splits."""
    out = {}
    for name, mask in (("train", task.split.train), ("val", task.split.val),
                       ("test", task.split.test)):  # fmt: skip
        nodes = task.labelled(mask)
        out[name] = metrics_of(probabilities_of(nodes), task.y[nodes].numpy())
    return out
