"""Live GNN scoring through the API: subscribers the model has never seen get a score from
their neighbourhood, without a retrain."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("torch_geometric", reason="the gnn extra is not installed")

from fastapi.testclient import TestClient

from ringwatch.config import ModelsConfig, Settings
from ringwatch.graph.db import Neo4jRunner
from ringwatch.graph.gnn_run import train_from_graph
from ringwatch.graph.writer import GraphWriter
from ringwatch.models.registry import ModelRegistry
from ringwatch.service.app import create_app
from tests.factories import prepared
from tests.integration.conftest import Api
from tests.integration.gnn_helpers import QUICK, device, register, write_labelled_graph


@pytest.fixture
def labelled_graph(api: Api, graph: Neo4jRunner) -> Neo4jRunner:
    return write_labelled_graph(graph)


@pytest.fixture
def models_config(tmp_path: Path) -> ModelsConfig:
    return ModelsConfig(dir=tmp_path / "models", min_labels_per_class=2, reload_check_s=0)


@pytest.fixture
def gnn_client(api: Api, settings: Settings, models_config: ModelsConfig) -> Iterator[TestClient]:
    """The API with its own models directory (the keys are the `api` fixture's)."""
    app = create_app(settings.model_copy(update={"models": models_config}))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


# HeteroSAGE stands for the GNNs (both score live through the same NumPy pass); the boosted
# graph model scores from the same neighbourhood through its own aggregates.
@pytest.mark.parametrize("kind", ["sage", "boosted"])
def test_a_new_subscriber_gets_a_gnn_score_without_a_retrain(
    kind: str,
    api: Api,
    labelled_graph: Neo4jRunner,
    models_config: ModelsConfig,
    gnn_client: TestClient,
) -> None:
    headers = api.headers()
    body = {"emails": ["ring1@example.org"], "devices": [device(1)]}
    before = gnn_client.post("/v1/score/signup", json=body, headers=headers)
    assert before.status_code == 200, before.text
    assert set(before.json()["components"]) == {"graph"}  # nothing promoted: no GNN

    registry = ModelRegistry(models_config.dir)
    trained = train_from_graph(labelled_graph, registry, models_config, kinds=[kind], base=QUICK)
    assert trained.manifest.kind == kind
    kept = trained.candidates[0]["fit"]  # what `ringwatch train` prints
    assert kept.startswith("epoch ") if kind == "sage" else " trees of " in kept
    version = trained.manifest.version
    registry.promote(version)

    # A prospect: never in the graph, scored from the subscribers it would share identifiers with.
    response = gnn_client.post("/v1/score/signup", json=body, headers=headers)
    assert response.status_code == 200, response.text
    scored = response.json()
    gnn = scored["components"]["gnn"]
    assert 0.0 <= gnn <= 1.0
    reasons = {reason["code"]: reason for reason in scored["reasons"]}
    assert reasons["gnn.score"]["evidence"]["model"] == version
    assert reasons["gnn.score"]["evidence"]["neighbour"].startswith("f1-")
    assert scored["risk"] == pytest.approx(
        1 - (1 - scored["components"]["graph"]) * (1 - gnn), abs=1e-9
    )

    # A subscriber created after training, scored live on its first transaction.
    GraphWriter(labelled_graph, hub_cap=50).write(
        prepared(register("late", emails=["ring2@example.org"], devices=[device(2)]))
    )
    response = gnn_client.post(
        "/v1/score/transaction",
        json={"subscriber_id": "late", "kind": "sms"},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    live = response.json()
    assert 0.0 <= live["components"]["gnn"] <= 1.0
    gnn_reasons = [r for r in live["reasons"] if r["code"] == "gnn.score"]
    assert gnn_reasons and gnn_reasons[0]["evidence"]["model"] == version
    stored = labelled_graph.read("MATCH (s:Subscriber {id: 'late'}) RETURN s.gnn_risk AS r")
    assert stored[0]["r"] is None  # nothing was written: the score is live
    assert [m.version for m in registry.versions()] == [version]  # and nothing retrained
