"""The GNN library on tiny synthetic graphs: sampling, splits, training, calibration, fallback,
registry. Seconds on a laptop; no servers."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch_geometric", reason="the gnn extra is not installed")

import torch
from torch_geometric.data import Data, HeteroData
from torch_geometric.transforms import ToUndirected

from ringwatch.config import ModelsConfig
from ringwatch.graph.gnn_export import GraphBuilder, export_graph
from ringwatch.graph.gnn_run import strongest_neighbours, train_from_graph
from ringwatch.models.anomaly import fit_anomaly
from ringwatch.models.calibration import TIE_BREAK, fit_calibrator
from ringwatch.models.config import TrainConfig
from ringwatch.models.data import NodeTask, connected_groups, group_split
from ringwatch.models.exceptions import ModelError
from ringwatch.models.nets import CamouflageGNN, HeteroSAGE
from ringwatch.models.registry import ModelRegistry
from ringwatch.models.sampling import neighbor_loader
from ringwatch.models.training import train
from tests.cli_helpers import assert_one_line_error, run_cli
from tests.unit.fakes import RecordingRunner

NETS: dict[str, type[HeteroSAGE | CamouflageGNN]] = {
    "sage": HeteroSAGE,
    "camouflage": CamouflageGNN,
}


def fast(**overrides: Any) -> TrainConfig:
    """Small and quick: a few seconds per model on these graphs."""
    settings: dict[str, Any] = {"epochs": 15, "hidden": 16, "batch_size": 32, "lr": 0.01,
                                "patience": 10, "fanout": [10, 5]}  # fmt: skip
    return TrainConfig(**{**settings, **overrides})


def planted(legit: int = 120, rings: int = 12, size: int = 4, seed: int = 0) -> HeteroData:
    """Legitimate subscribers each with their own device, in households of two sharing an
    address; fraud rings whose members share one device and one address, each member also
    linked to a random household's address (camouflage). Features are noise but for a weak
    shift in one column: the signal is in the structure (identifiers carry their user count).
    90 % of subscribers are labelled."""
    rng = np.random.default_rng(seed)
    n = legit + rings * size
    y = np.zeros(n, dtype=np.int64)
    y[legit:] = 1
    devices: list[tuple[int, int]] = [(i, i) for i in range(legit)]
    addresses: list[tuple[int, int]] = [(i, i // 2) for i in range(legit)]
    device, address = legit, legit // 2
    for ring in range(rings):
        for member in range(legit + ring * size, legit + (ring + 1) * size):
            devices.append((member, device))
            addresses.append((member, address))
            addresses.append((member, int(rng.integers(0, legit // 2))))
        device, address = device + 1, address + 1
    data = HeteroData()
    x = rng.normal(size=(n, 6)).astype(np.float32)
    x[:, 0] += 0.3 * y
    data["Subscriber"].x = torch.from_numpy(x)
    data["Subscriber"].y = torch.from_numpy(np.where(rng.random(n) < 0.9, y, -1))
    for label, rel, pairs, count in (
        ("Device", "USES_DEVICE", devices, device),
        ("Address", "HAS_ADDRESS", addresses, address),
    ):
        edge_index = torch.tensor(pairs).t()
        users = torch.bincount(edge_index[1], minlength=count).to(torch.float32)
        data[label].x = torch.log1p(users).unsqueeze(-1)  # as the export's subscriber counts
        data["Subscriber", rel, label].edge_index = edge_index
    undirected: HeteroData = ToUndirected()(data)
    return undirected


def random_split(y: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
    draw = torch.rand(y.numel(), generator=torch.Generator().manual_seed(seed))
    labelled = y >= 0
    return {
        "train": (draw < 0.6) & labelled,
        "val": (draw >= 0.6) & (draw < 0.8) & labelled,
        "test": (draw >= 0.8) & labelled,
    }


# --- sampling -----------------------------------------------------------------------------------


def test_neighbour_sampling_keeps_seeds_first_respects_fanout_and_real_edges() -> None:
    data = planted()
    seeds = torch.tensor([0, 5, 130])
    batch = next(iter(neighbor_loader(data, "Subscriber", seeds, [1, 3], batch_size=3,
                                      shuffle=False)))  # fmt: skip
    assert batch["Subscriber"].batch_size == 3
    assert batch["Subscriber"].n_id[:3].tolist() == [0, 5, 130]
    original = {et: set(map(tuple, data[et].edge_index.t().tolist())) for et in data.edge_types}
    for edge_type in batch.edge_types:
        src, _, dst = edge_type
        edge_index = batch[edge_type].edge_index
        for s, d in edge_index.t().tolist():
            pair = (int(batch[src].n_id[s]), int(batch[dst].n_id[d]))
            assert pair in original[edge_type]
    # Hop 1: at most one device and one address per seed; every seed has both.
    to_seed = batch["Device", "rev_USES_DEVICE", "Subscriber"].edge_index
    assert sorted(to_seed[1].tolist()) == [0, 1, 2]
    # Hop 2: at most 3 subscribers per sampled device (a ring device has 4).
    into_devices = batch["Subscriber", "USES_DEVICE", "Device"].edge_index[1]
    assert int(torch.bincount(into_devices).max()) <= 3


def test_group_split_never_puts_one_group_in_two_splits() -> None:
    data = planted(seed=3)
    y = data["Subscriber"].y
    # Without the camouflage links the components are rings and households.
    hubs = {"Address": torch.zeros(data["Address"].num_nodes, dtype=torch.bool)}
    groups = connected_groups(data, "Subscriber", skip=hubs)
    split = group_split(y, groups, seed=1)
    seen: dict[int, int] = {}
    for index, name in enumerate(("train", "val", "test")):
        mask = getattr(split, name)
        assert not bool((mask & (y < 0)).any())
        for group in np.unique(groups[mask.numpy()]):
            assert seen.setdefault(int(group), index) == index
    covered = split.train | split.val | split.test
    assert bool(torch.equal(covered, y >= 0))


def test_connected_groups_ignore_skipped_hubs() -> None:
    data = planted(legit=10, rings=2, size=3)
    everyone = connected_groups(data, "Subscriber")
    hubs = torch.ones(data["Address"].num_nodes, dtype=torch.bool)
    by_device = connected_groups(data, "Subscriber", skip={"Address": hubs})
    assert len(np.unique(by_device)) == 10 + 2  # own devices, one per ring
    assert len(np.unique(everyone)) < len(np.unique(by_device))


# --- training -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sage", "camouflage"])
def test_training_beats_chance_on_a_planted_ring_signal(kind: str) -> None:
    data = planted()
    y = data["Subscriber"].y
    task = NodeTask.of(data, target="Subscriber", **random_split(y))
    model = train(task, fast(model=kind))
    test = model.metrics["test"]
    base_rate = test.fraud / test.n
    assert test.pr_auc is not None and test.roc_auc is not None
    assert test.pr_auc > base_rate + 0.3, (test, base_rate)
    assert test.roc_auc > 0.8
    assert model.history and 1 <= model.best_epoch <= len(model.history)
    nodes = torch.arange(data["Subscriber"].num_nodes)
    probabilities = model.probabilities(data, nodes)
    assert probabilities.shape == (nodes.numel(),)
    assert float(probabilities.min()) >= 0.0 and float(probabilities.max()) <= 1.0


def test_a_homogeneous_graph_trains_too() -> None:
    rng = np.random.default_rng(0)
    n = 120
    y = torch.from_numpy((np.arange(n) >= 90).astype(np.int64))
    # Fraud nodes form a clique-ish cluster, legitimate ones a ring lattice.
    edges = [(i, (i + 1) % 90) for i in range(90)]
    edges += [(i, j) for i in range(90, n) for j in range(90, n) if i != j and rng.random() < 0.3]
    edge_index = torch.tensor(edges).t()
    edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)
    data = Data(x=torch.randn(n, 4), edge_index=edge_index, y=y)
    masks = random_split(y, seed=2)
    task = NodeTask.of(data, train=masks["train"], val=masks["val"], test=masks["test"])
    model = train(task, fast(fanout=[5, 5]))
    assert model.metrics["test"].roc_auc is not None and model.metrics["test"].roc_auc > 0.8


def test_training_refuses_a_split_without_both_classes() -> None:
    data = planted()
    y = data["Subscriber"].y
    masks = random_split(y)
    masks["val"] = masks["val"] & (y == 0)
    with pytest.raises(ModelError, match="validation split needs labelled nodes of both"):
        train(NodeTask.of(data, target="Subscriber", **masks), TrainConfig(epochs=1))


def test_overlapping_masks_are_refused() -> None:
    data = planted()
    y = data["Subscriber"].y
    masks = random_split(y)
    with pytest.raises(ModelError, match="overlap"):
        NodeTask.of(data, target="Subscriber", train=masks["train"], val=masks["train"],
                    test=masks["test"])  # fmt: skip


# --- calibration --------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_calibration_gives_probabilities_matching_observed_rates(method: str) -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(size=4000) * 3
    truth = 1 / (1 + np.exp(-(0.5 * logits - 1)))  # over-confident raw scores
    labels = (rng.random(4000) < truth).astype(np.int64)
    calibrator = fit_calibrator(logits, labels, method)  # type: ignore[arg-type]
    probabilities = calibrator(np.linspace(-20, 20, 101))
    assert float(probabilities.min()) >= 0.0 and float(probabilities.max()) <= 1.0
    assert bool(np.all(np.diff(probabilities) >= -1e-12))  # monotone
    # On the data: mean predicted rate within 2 points of the observed one in each half.
    fitted = calibrator(logits)
    for half in (logits < 0, logits >= 0):
        assert abs(float(fitted[half].mean()) - float(labels[half].mean())) < 0.02
    again = type(calibrator).from_dict(calibrator.to_dict())
    assert np.allclose(again(logits), fitted)


def test_isotonic_calibration_keeps_the_models_order_within_a_step() -> None:
    rng = np.random.default_rng(3)
    logits = rng.normal(size=2000) * 2
    labels = (rng.random(2000) < 1 / (1 + np.exp(-logits))).astype(np.int64)
    calibrator = fit_calibrator(logits, labels, "isotonic")
    ordered = np.sort(logits)
    served = calibrator(ordered)
    assert bool(np.all(np.diff(served) > 0))  # no ties: higher logit, higher probability
    steps = np.interp(ordered, calibrator.x, calibrator.y)
    assert float(np.abs(served - steps).max()) <= TIE_BREAK  # calibration all but unchanged
    assert float(served.min()) >= 0.0 and float(served.max()) <= 1.0


def test_calibration_needs_both_classes() -> None:
    with pytest.raises(ModelError):
        fit_calibrator(np.zeros(5), np.zeros(5, dtype=np.int64))


# --- unsupervised fallback ----------------------------------------------------------------------


def test_anomaly_fallback_ranks_planted_outliers_first_and_stays_below_block() -> None:
    rng = np.random.default_rng(2)
    data = planted(legit=200, rings=0)
    x = rng.normal(size=(200, 6)).astype(np.float32)
    x[:, 1] = x[:, 0] * 2 + rng.normal(size=200).astype(np.float32) * 0.05  # a correlation
    outliers = [3, 77, 150]
    x[outliers, 0] = 1.5
    x[outliers, 1] = -3.0  # breaks the correlation; each value alone is ordinary
    data["Subscriber"].x = torch.from_numpy(x)
    model = fit_anomaly(data, "Subscriber")
    scores = model.probabilities(data, torch.arange(200))
    assert set(np.argsort(-scores)[:3].tolist()) == set(outliers)
    assert float(scores.min()) == 0.0 and float(scores.max()) <= model.cap
    assert float(np.median(scores)) == 0.0
    arrays = _arrays(data.x_dict, data.edge_index_dict)
    assert model.score_arrays(*arrays, 77) == pytest.approx(float(scores[77]))


# --- registry -----------------------------------------------------------------------------------


def test_registry_round_trip_and_promotion_gate(tmp_path: Path) -> None:
    data = planted()
    y = data["Subscriber"].y
    task = NodeTask.of(data, target="Subscriber", **random_split(y))
    model = train(task, fast(epochs=5))
    registry = ModelRegistry(tmp_path)
    names = {nt: [f"f{i}" for i in range(int(data[nt].x.size(1)))] for nt in data.node_types}
    first = registry.save(model, data={"subscribers": 168}, feature_names=names, graph=data,
                          seen_labels=["a", "b"])  # fmt: skip
    assert first.version == "v0001" and registry.seen_labels("v0001") == {"a", "b"}
    loaded = registry.load("v0001")
    nodes = torch.arange(20)
    assert np.allclose(loaded.scorer.probabilities(data, nodes), model.probabilities(data, nodes))

    assert registry.promoted_version() is None
    registry.promote("v0001")
    assert registry.promoted_version() == "v0001"
    # A worse model (same artefact, lower stored validation PR-AUC) is refused, then forced.
    worse = registry.save(model, data={}, feature_names=names, graph=data)
    manifest_path = tmp_path / worse.version / "manifest.json"
    manifest = worse.model_copy(update={"metrics": {"val": {"pr_auc": 0.01}}})
    manifest_path.write_text(manifest.model_dump_json())
    with pytest.raises(ModelError, match="does not beat the promoted v0001"):
        registry.promote(worse.version)
    assert registry.promoted_version() == "v0001"
    forced = registry.promote(worse.version, force=True)
    assert forced.forced and forced.previous == "v0001"
    assert registry.promoted_version() == worse.version
    assert [m.version for m in registry.versions()] == ["v0001", "v0002"]
    with pytest.raises(ModelError, match="no model v0009"):
        registry.load("v0009")


def test_cli_promotion_gate_refuses_then_forces_loudly(tmp_path: Path) -> None:
    data = planted()
    y = data["Subscriber"].y
    model = train(NodeTask.of(data, target="Subscriber", **random_split(y)), fast(epochs=2))
    registry = ModelRegistry(tmp_path)
    names = {nt: [f"f{i}" for i in range(int(data[nt].x.size(1)))] for nt in data.node_types}
    for score in (0.6, 0.4):
        saved = registry.save(model, data={"subscribers": 168}, feature_names=names, graph=data)
        manifest = saved.model_copy(update={"metrics": {"val": {"pr_auc": score}}})
        (tmp_path / saved.version / "manifest.json").write_text(manifest.model_dump_json())
    env = {"RINGWATCH_MODELS__DIR": str(tmp_path)}
    assert run_cli("models", "promote", "v0001", env=env).code == 0
    refused = run_cli("models", "promote", "v0002", env=env)
    assert_one_line_error(refused, "v0002 does not beat the promoted v0001", "0.4000 <= 0.6000")
    forced = run_cli("models", "promote", "v0002", "--force", env=env)
    assert forced.code == 0, forced.stderr
    assert "warning:" in forced.stderr and "promoted by force over v0001" in forced.stderr
    listed = run_cli("models", "list", env=env)
    assert listed.code == 0
    rows = [line for line in listed.stdout.splitlines() if "v000" in line]
    assert len(rows) == 2 and "*" in rows[1] and "*" not in rows[0]


def _rows(n: int, fraud: int, legit: int, shared: bool) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        label = "fraud" if i < fraud else "legitimate" if i < fraud + legit else None
        email = "shared@example.org" if shared else f"s{i}@example.org"
        rows.append({"id": f"s{i:03d}", "label": label, "created_ms": 0, "links": [
            ["HAS_EMAIL", email, n if shared else 1, False]]})  # fmt: skip
    return rows


_COLUMNS = ("id", "label", "usage_risk", "usage_reasons", "pagerank", "similarity_degree",
            "embedding", "created_ms", "ring_size")  # fmt: skip


def _page_columns(page: list[dict[str, Any]]) -> dict[str, Any]:
    """What the export's page query returns for these subscriber rows: a list per field, links
    grouped by relationship type."""
    columns: dict[str, Any] = {name: [row.get(name) for row in page] for name in _COLUMNS}
    groups: dict[str, dict[str, list[Any]]] = {}
    for number, row in enumerate(page):
        for rel, ident, users, hub in row["links"]:
            group = groups.setdefault(rel, {"rows": [], "ids": [], "users": [], "hubs": []})
            for key, value in zip(("rows", "ids", "users", "hubs"), (number, ident, users, hub),
                                  strict=True):  # fmt: skip
                group[key].append(value)
    columns["links"] = [{"type": rel, **group} for rel, group in groups.items()]
    return columns


def _graph_of(rows: list[dict[str, Any]]) -> RecordingRunner:
    def respond(query: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        if "WHERE s.id > $after" in query:
            last = params.get("last")
            page = [
                r for r in rows if r["id"] > params["after"] and (last is None or r["id"] <= last)
            ]
            return [_page_columns(page[: params["limit"]])]
        if "count(s) AS subscribers" in query:
            return [{"subscribers": len(rows)}]
        if "SKIP $skip" in query:
            return [{"id": sorted(r["id"] for r in rows)[params["skip"]]}]
        return []  # no transactions: the export is as of now

    return RecordingRunner(responder=respond)


def test_export_reads_pages_not_nodes_and_training_falls_back_without_labels(
    tmp_path: Path,
) -> None:
    runner = _graph_of(_rows(30, fraud=3, legit=3, shared=False))
    exported = export_graph(runner, page=12)
    pages = [q for q, _ in runner.reads if "WHERE s.id > $after" in q]
    # 3 full pages, 1 empty, the count (too few for two ranges), the clock
    assert len(pages) == 4 and len(runner.reads) == 6
    assert exported.data["Subscriber"].num_nodes == 30 and exported.data["Email"].num_nodes == 30
    report = train_from_graph(runner, ModelRegistry(tmp_path), ModelsConfig(dir=tmp_path))
    assert report.manifest.kind == "anomaly"  # 3 labels per class < 10


def test_an_export_in_two_ranges_reads_each_subscriber_once_in_a_fixed_order() -> None:
    runner = _graph_of(_rows(30, fraud=3, legit=3, shared=False))
    exported = export_graph(runner, page=5, readers=2)
    ids = sorted(exported.subscriber_ids)
    assert ids == sorted(row["id"] for row in _rows(30, fraud=3, legit=3, shared=False))
    # Ranges split at the 15th id; a page of five from each in turn.
    assert exported.subscriber_ids[:10] == ids[:5] + ids[15:20]
    pages = [params for q, params in runner.reads if "WHERE s.id > $after" in q]
    assert len(pages) == 8  # 3 full pages and an empty one per range
    assert {params.get("last") for params in pages} == {ids[14], None}


def test_an_export_whose_range_end_vanished_reads_one_range() -> None:
    rows = _rows(30, fraud=3, legit=3, shared=False)
    graph = _graph_of(rows)
    respond = graph.responder

    def shrunk(query: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        # Subscribers deleted between the count and the range end: no id at that position.
        return [] if "SKIP $skip" in query else respond(query, params)

    graph.responder = shrunk
    exported = export_graph(graph, page=5, readers=2)
    assert exported.subscriber_ids == sorted(row["id"] for row in rows)
    pages = [params for q, params in graph.reads if "WHERE s.id > $after" in q]
    assert len(pages) == 7 and all(params.get("last") is None for params in pages)


def test_the_builders_arrays_are_what_its_hetero_data_holds() -> None:
    rows = [
        {"id": "s0", "label": "fraud", "created_ms": 0, "embedding": [0.5] * 32,
         "links": [["HAS_EMAIL", "e", 2, False], ["USES_IP", "hub", 900, True]]},
        {"id": "s1", "created_ms": 0, "links": [["HAS_EMAIL", "e", 2, False],
                                               ["USES_DEVICE", "d", 1, False]]},
    ]  # fmt: skip
    builder = GraphBuilder(86_400_000)
    for row in rows:
        builder.add_subscriber(row)
    x_dict, edge_index_dict = builder.arrays()
    data = builder.build()
    assert set(x_dict) == set(data.node_types)
    for node_type, x in x_dict.items():
        assert x.dtype == np.float32 and np.array_equal(x, data[node_type].x.numpy())
    assert set(edge_index_dict) == set(data.edge_types) and len(edge_index_dict) == 12
    for edge_type, edge_index in edge_index_dict.items():
        assert np.array_equal(edge_index, data[edge_type].edge_index.numpy())
    assert edge_index_dict["Subscriber", "HAS_EMAIL", "Email"].tolist() == [[0, 1], [0, 0]]
    assert edge_index_dict["Email", "rev_HAS_EMAIL", "Subscriber"].tolist() == [[0, 0], [0, 1]]


def test_training_explains_labels_that_cannot_be_split_by_component(tmp_path: Path) -> None:
    runner = _graph_of(_rows(40, fraud=12, legit=12, shared=True))  # one component
    config = ModelsConfig(dir=tmp_path, min_labels_per_class=5)
    with pytest.raises(
        ModelError, match=r"fall into 1 connected components \(the largest holds 24"
    ):
        train_from_graph(runner, ModelRegistry(tmp_path), config, base=fast(epochs=1))


def _arrays(
    x_dict: dict[str, torch.Tensor], edge_index_dict: dict[tuple[str, str, str], torch.Tensor]
) -> tuple[dict[str, Any], dict[tuple[str, str, str], Any]]:
    """The NumPy inputs of `live_forward`."""
    return (
        {nt: x.numpy() for nt, x in x_dict.items()},
        {et: index.numpy() for et, index in edge_index_dict.items()},
    )


@pytest.mark.parametrize("kind", ["sage", "camouflage"])
def test_fast_and_live_passes_equal_the_forward(kind: str) -> None:
    data = planted(seed=5)
    task = NodeTask.of(data, target="Subscriber", **random_split(data["Subscriber"].y))
    model = train(task, fast(epochs=2, model=kind))
    assert isinstance(model.net, NETS[kind])
    scaled = model.standardizer.apply(data)
    with torch.inference_mode():
        standard, _ = model.net(scaled.x_dict, scaled.edge_index_dict)
        fast_logits = model.net.fast_forward(scaled.x_dict, scaled.edge_index_dict)
    assert torch.allclose(standard, fast_logits, atol=1e-5)
    live_logits = model.net.live_forward(*_arrays(scaled.x_dict, scaled.edge_index_dict))
    assert live_logits.dtype == np.float32
    assert np.allclose(standard.numpy(), live_logits, atol=1e-5)
    assert model.score_arrays(*_arrays(data.x_dict, data.edge_index_dict), 7) == pytest.approx(
        float(model.calibrator(standard[7:8].numpy().astype(np.float64))[0]), abs=1e-6
    )


@pytest.mark.parametrize("kind", ["sage", "camouflage"])
def test_live_scoring_counts_edge_types_absent_from_the_neighbourhood_like_batch_scoring(
    kind: str,
) -> None:
    # Batches always hold every edge type, so in GraphSAGE a type without edges still adds its
    # root term and bias; a live neighbourhood without, say, device edges must be scored the
    # same way (the camouflage model's part for such a type is zero either way).
    data = planted(seed=5)
    task = NodeTask.of(data, target="Subscriber", **random_split(data["Subscriber"].y))
    model = train(task, fast(epochs=2, model=kind))
    assert isinstance(model.net, NETS[kind])
    no_devices = data.clone()
    for edge_type in no_devices.edge_types:
        if "Device" in (edge_type[0], edge_type[2]):
            no_devices[edge_type].edge_index = torch.empty((2, 0), dtype=torch.long)
    scaled = model.standardizer.apply(no_devices)
    with torch.inference_mode():
        standard, _ = model.net(scaled.x_dict, scaled.edge_index_dict)
        present = {et: ei for et, ei in scaled.edge_index_dict.items() if ei.numel()}
        assert len(present) < len(scaled.edge_index_dict)
        fast_logits = model.net.fast_forward(scaled.x_dict, present)
    assert torch.allclose(standard, fast_logits, atol=1e-5)
    live_logits = model.net.live_forward(*_arrays(scaled.x_dict, present))
    assert np.allclose(standard.numpy(), live_logits, atol=1e-5)
    raw = _arrays(no_devices.x_dict, no_devices.edge_index_dict)
    assert model.score_arrays(*raw, 7) == pytest.approx(
        float(model.calibrator(standard[7:8].numpy().astype(np.float64))[0]), abs=1e-6
    )


def test_strongest_neighbour_is_the_best_other_user_of_a_non_hub_identifier() -> None:
    # s0, s1, s2 share an email; s2 and s3 a device; s3 and s4 only a hub IP. s3 is labelled
    # fraud (evidence 1); s4's high score does not reach s3 through the hub.
    rows = [
        {"id": "s0", "links": [["HAS_EMAIL", "e", 3, False]]},
        {"id": "s1", "links": [["HAS_EMAIL", "e", 3, False]]},
        {"id": "s2", "links": [["HAS_EMAIL", "e", 3, False], ["USES_DEVICE", "d", 2, False]]},
        {"id": "s3", "label": "fraud",
         "links": [["USES_DEVICE", "d", 2, False], ["USES_IP", "hub", 900, True]]},
        {"id": "s4", "links": [["USES_IP", "hub", 900, True]]},
    ]  # fmt: skip
    exported = export_graph(_graph_of([{"created_ms": 0, **row} for row in rows]))
    scores = np.array([0.1, 0.9, 0.2, 0.5, 0.99])
    best = strongest_neighbours(exported, scores)
    named = [
        None if b is None else (exported.subscriber_ids[b[0]], b[1], round(b[3], 2)) for b in best
    ]
    assert named == [
        ("s1", "HAS_EMAIL", 0.9),
        ("s2", "HAS_EMAIL", 0.2),
        ("s3", "USES_DEVICE", 1.0),
        ("s2", "USES_DEVICE", 0.2),
        None,
    ]


@pytest.mark.parametrize("kind", ["sage", "camouflage"])
def test_fast_and_live_passes_follow_weights_changed_after_their_first_use(kind: str) -> None:
    # The live pass folds weights once; new weights (a reload, more training) must not be
    # scored with the old fold.
    data = planted(seed=5)
    task = NodeTask.of(data, target="Subscriber", **random_split(data["Subscriber"].y))
    first = train(task, fast(epochs=1, model=kind))
    second = train(task, fast(epochs=3, seed=11, model=kind))
    assert isinstance(first.net, NETS[kind]) and isinstance(second.net, NETS[kind])
    scaled = first.standardizer.apply(data)
    arrays = _arrays(scaled.x_dict, scaled.edge_index_dict)
    with torch.inference_mode():
        before = first.net.fast_forward(scaled.x_dict, scaled.edge_index_dict)
        live_before = first.net.live_forward(*arrays)
    first.net.load_state_dict(second.net.state_dict())
    with torch.inference_mode():
        standard, _ = first.net(scaled.x_dict, scaled.edge_index_dict)
        after = first.net.fast_forward(scaled.x_dict, scaled.edge_index_dict)
        live_after = first.net.live_forward(*arrays)
    assert not torch.allclose(before, standard, atol=1e-3)
    assert torch.allclose(after, standard, atol=1e-5)
    assert not np.allclose(live_before, standard.numpy(), atol=1e-3)
    assert np.allclose(live_after, standard.numpy(), atol=1e-5)
