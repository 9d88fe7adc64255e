"""The graph model with a boosted head: neighbour aggregates worked by hand, the trees as arrays
against scikit-learn, training, live scoring and the registry (which loads it without PyTorch).
No servers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from ringwatch.models.boosted import NeighbourAggregates, TreeEnsemble

pytest.importorskip("torch_geometric", reason="the gnn extra is not installed")

import torch

from ringwatch.models.boosted import BoostedModel
from ringwatch.models.config import TrainConfig
from ringwatch.models.data import NodeTask
from ringwatch.models.exceptions import ModelError
from ringwatch.models.registry import ModelRegistry
from ringwatch.models.training import metrics_of, train, train_model
from tests.unit.test_gnn_models import planted, random_split

S, DEVICE, IP = "Subscriber", "Device", "IP"
USES_DEVICE, USES_IP = (S, "USES_DEVICE", DEVICE), (S, "USES_IP", IP)


def small_graph() -> tuple[dict[str, np.ndarray], dict[tuple[str, str, str], np.ndarray]]:
    """Subscribers 0-3 (features [k, 10 k]) and 4 (alone). Device 0: subscribers 0, 1, 2;
    device 1: subscribers 2, 3. IP 0, a hub: everyone; IP 1: subscribers 0 and 1 again."""
    x = np.array([[0, 0], [1, 10], [2, 20], [3, 30], [4, 40]], dtype=np.float32)
    devices = np.array([[0, 1, 2, 2, 3], [0, 0, 0, 1, 1]])
    ips = np.array([[0, 1, 2, 3, 4, 0, 1], [0, 0, 0, 0, 0, 1, 1]])
    x_dict = {
        S: x,
        DEVICE: np.array([[np.log1p(3), 0], [np.log1p(2), 0]], dtype=np.float32),
        IP: np.array([[np.log1p(5), 1], [np.log1p(2), 0]], dtype=np.float32),
    }
    edge_index_dict = {
        USES_DEVICE: devices,
        (DEVICE, "rev_USES_DEVICE", S): devices[::-1].copy(),
        USES_IP: ips,
        (IP, "rev_USES_IP", S): ips[::-1].copy(),
    }
    return x_dict, edge_index_dict


def test_neighbour_aggregates_worked_by_hand() -> None:
    x_dict, edge_index_dict = small_graph()
    features = NeighbourAggregates(S, hub_feature=1).features(x_dict, edge_index_dict)
    # Columns: own (2); log1p neighbours via USES_DEVICE, via USES_IP (sorted by type); the
    # mean (2) and the max (2) of the neighbours' own features over both types.
    expected = np.array(
        [
            # 0: device 0 -> 1, 2; IP 1 -> 1 (IP 0 is a hub). Neighbours {1, 2}.
            [0, 0, np.log1p(2), np.log1p(1), 1.5, 15, 2, 20],
            # 1: device 0 -> 0, 2; IP 1 -> 0. Neighbours {0, 2}.
            [1, 10, np.log1p(2), np.log1p(1), 1, 10, 2, 20],
            # 2: device 0 -> 0, 1; device 1 -> 3. Neighbours {0, 1, 3}.
            [2, 20, np.log1p(3), 0, 4 / 3, 40 / 3, 3, 30],
            # 3: device 1 -> 2.
            [3, 30, np.log1p(1), 0, 2, 20, 2, 20],
            # 4: only the hub: no neighbours, zeros.
            [4, 40, 0, 0, 0, 0, 0, 0],
        ]
    )
    np.testing.assert_allclose(features, expected, rtol=1e-6)
    # The same rows for chosen nodes alone, and the hub passed through when not flagged.
    chosen = NeighbourAggregates(S, hub_feature=1).features(
        x_dict, edge_index_dict, np.array([3, 0])
    )
    np.testing.assert_allclose(chosen, expected[[3, 0]], rtol=1e-6)
    for node in range(5):  # one node from its own edges (live scoring) gives the same row
        row = NeighbourAggregates(S, hub_feature=1).row(x_dict, edge_index_dict, node)
        np.testing.assert_allclose(row, expected[node], rtol=1e-6)
    through_hub = NeighbourAggregates(S).features(x_dict, edge_index_dict, np.array([4]))
    np.testing.assert_allclose(through_hub[0, 2:4], [0, np.log1p(4)], rtol=1e-6)
    np.testing.assert_allclose(through_hub[0, 4:], [1.5, 15, 3, 30], rtol=1e-6)


def test_neighbour_counts_come_from_the_identifiers_user_counts_when_given() -> None:
    """A live neighbourhood holds a bounded sample of each identifier's users; the counts must
    be those of the whole graph."""
    x_dict, edge_index_dict = small_graph()
    aggregates = NeighbourAggregates(S, hub_feature=1, users_feature=0)
    full = aggregates.features(x_dict, edge_index_dict)
    np.testing.assert_allclose(
        full, NeighbourAggregates(S, hub_feature=1).features(x_dict, edge_index_dict), rtol=1e-6
    )
    x_dict[DEVICE][0, 0] = np.log1p(20)  # device 0 has 20 users, three of them read
    sampled = aggregates.features(x_dict, edge_index_dict, np.array([0, 2]))
    # 0: 19 others on device 0; 2: 19 on device 0 and 1 on device 1. The rest is unchanged.
    np.testing.assert_allclose(sampled[:, 2], np.log1p([19, 20]), rtol=1e-6)
    np.testing.assert_allclose(np.delete(sampled, 2, axis=1), np.delete(full[[0, 2]], 2, axis=1),
                               rtol=1e-6)  # fmt: skip
    for position, node in enumerate((0, 2)):
        row = aggregates.row(x_dict, edge_index_dict, node)
        np.testing.assert_allclose(row, sampled[position], rtol=1e-6)


def test_the_tree_arrays_give_scikit_learns_log_odds_and_survive_a_round_trip(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 5))
    y = ((x[:, 0] + x[:, 1] * x[:, 2] + rng.normal(scale=0.5, size=600)) > 0.5).astype(int)
    x[rng.random(x.shape) < 0.05] = np.nan  # missing values take the learned side
    model = HistGradientBoostingClassifier(max_iter=40, max_leaf_nodes=15, random_state=0)
    model.fit(x, y)
    ensemble = TreeEnsemble.of(model)
    probe = rng.normal(size=(3000, 5))  # more rows than one chunk of the evaluation
    probe[rng.random(probe.shape) < 0.05] = np.nan
    np.testing.assert_allclose(ensemble.decision(probe), model.decision_function(probe),
                               rtol=0, atol=1e-9)  # fmt: skip
    # The first trees alone are the model at that stage.
    staged = list(model.staged_decision_function(probe))
    np.testing.assert_allclose(TreeEnsemble.of(model, 12).decision(probe), staged[11], atol=1e-9)
    ensemble.save(tmp_path / "trees.npz")
    loaded = TreeEnsemble.load(tmp_path / "trees.npz")
    np.testing.assert_array_equal(loaded.decision(probe), ensemble.decision(probe))


def fitted() -> tuple[BoostedModel, NodeTask]:
    data = planted()
    task = NodeTask.of(data, target=S, **random_split(data[S].y))
    model = train_model(task, TrainConfig(model="boosted", trees=60))
    assert isinstance(model, BoostedModel)
    return model, task


def test_the_boosted_model_learns_a_planted_ring_signal() -> None:
    model, task = fitted()
    test = model.metrics["test"]
    assert test.pr_auc is not None and test.pr_auc > test.fraud / test.n + 0.3, test
    assert [h["leaves"] for h in model.history] == [15, 31]
    assert 1 <= model.best_epoch <= len(model.history)
    nodes = torch.arange(task.data[S].num_nodes)
    probabilities = model.probabilities(task.data, nodes)
    assert float(probabilities.min()) >= 0.0 and float(probabilities.max()) <= 1.0
    # The stored metrics (computed from training's aggregates) are those of `probabilities`.
    tested = task.labelled(task.split.test)
    again = metrics_of(model.probabilities(task.data, tested), task.y[tested].numpy())
    assert again.pr_auc == pytest.approx(test.pr_auc) and again.brier == pytest.approx(test.brier)
    # Live scoring of one node of a neighbourhood given as arrays: here the whole graph.
    x_dict = {nt: task.data[nt].x.numpy() for nt in task.data.node_types}
    edges = {et: task.data[et].edge_index.numpy() for et in task.data.edge_types}
    for node in (0, 130, 160):
        assert model.score_arrays(x_dict, edges, node) == pytest.approx(probabilities[node])
    # Every node's row from its own edges is its row of the whole-graph computation.
    every = model.aggregates.features(x_dict, edges)
    rows = np.stack([model.aggregates.row(x_dict, edges, node) for node in range(len(every))])
    np.testing.assert_allclose(rows, every, rtol=1e-9, atol=1e-12)


def test_train_refuses_the_boosted_kind() -> None:
    data = planted()
    task = NodeTask.of(data, target=S, **random_split(data[S].y))
    with pytest.raises(ModelError, match="not a GNN"):
        train(task, TrainConfig(model="boosted"))


def test_a_stored_boosted_model_scores_alike_and_loads_without_pytorch(tmp_path: Path) -> None:
    model, task = fitted()
    registry = ModelRegistry(tmp_path)
    manifest = registry.save(model, data={}, feature_names={}, graph=task.data)
    assert manifest.kind == "boosted" and manifest.val_pr_auc == model.metrics["val"].pr_auc
    loaded = registry.load(manifest.version)
    nodes = torch.arange(task.data[S].num_nodes)
    np.testing.assert_array_equal(
        loaded.scorer.probabilities(task.data, nodes), model.probabilities(task.data, nodes)
    )
    x_dict = {nt: task.data[nt].x.numpy() for nt in task.data.node_types}
    edges = {et: task.data[et].edge_index.numpy() for et in task.data.edge_types}
    expected = model.score_arrays(x_dict, edges, 130)
    np.savez(tmp_path / "graph.npz", **{nt: x for nt, x in x_dict.items()},
             **{"|".join(et): e for et, e in edges.items()})  # fmt: skip
    # A fresh process (as the API's) loads and scores it; PyTorch is never imported.
    script = (
        "import sys, numpy as np\n"
        "from pathlib import Path\n"
        "from ringwatch.models.registry import ModelRegistry\n"
        f"root = Path({str(tmp_path)!r})\n"
        "stored = np.load(root / 'graph.npz')\n"
        "x = {k: stored[k] for k in stored.files if '|' not in k}\n"
        "e = {tuple(k.split('|')): stored[k] for k in stored.files if '|' in k}\n"
        f"scorer = ModelRegistry(root).load({manifest.version!r}).scorer\n"
        "print(repr(scorer.score_arrays(x, e, 130)))\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True)  # fmt: skip
    score, imported_torch = done.stdout.split()
    assert float(score) == pytest.approx(expected)
    assert imported_torch == "False"
