"""The GNN loop on the real stack: train from the graph, the promotion gate, and batch inference
that the API returns."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch_geometric", reason="the gnn extra is not installed")

from ringwatch.config import ModelsConfig, ScoringConfig
from ringwatch.graph.db import Neo4jRunner
from ringwatch.graph.gnn_run import (
    evaluate_version,
    new_labels,
    score_subscribers,
    train_from_graph,
)
from ringwatch.graph.scoring_run import score_all
from ringwatch.models.exceptions import ModelError
from ringwatch.models.registry import ModelRegistry
from ringwatch.scoring import reasons as reason_codec
from tests.factories import T0
from tests.integration.conftest import Api
from tests.integration.gnn_helpers import QUICK, RINGS, write_labelled_graph


@pytest.fixture
def labelled_graph(api: Api, graph: Neo4jRunner) -> Neo4jRunner:
    return write_labelled_graph(graph)


@pytest.fixture
def models_config(tmp_path: Path) -> ModelsConfig:
    return ModelsConfig(dir=tmp_path / "models", min_labels_per_class=2, reload_check_s=0)


def test_promotion_gate_refuses_a_model_that_is_no_better(
    labelled_graph: Neo4jRunner, models_config: ModelsConfig
) -> None:
    registry = ModelRegistry(models_config.dir)
    first = train_from_graph(labelled_graph, registry, models_config, kinds=["sage"], base=QUICK)
    manifest = first.manifest
    assert manifest.version == "v0001" and manifest.kind == "sage"
    assert manifest.val_pr_auc is not None
    assert manifest.data["subscribers"] == RINGS * 3 + 12 + 2
    split = manifest.data["split"]
    assert all(split[name]["fraud"] > 0 for name in ("train", "val", "test"))
    # Rings are held out whole: no ring has members on two sides of the split.
    seen = registry.seen_labels("v0001")
    for ring in range(RINGS):
        members = {f"f{ring}-{m}" for m in range(3)}
        assert members <= seen or not (members & seen)
    # Evaluated on today's labels: all 27, and the test split's, which training never saw.
    today = evaluate_version(labelled_graph, registry, "v0001")
    assert today["all labelled"]["n"] == RINGS * 3 + 12
    assert today["unseen labels"]["n"] == split["test"]["labelled"]
    assert today["unseen labels"]["pr_auc"] == pytest.approx(manifest.metrics["test"]["pr_auc"])
    registry.promote("v0001")
    assert new_labels(labelled_graph, registry) == 0
    labelled_graph.write("MATCH (s:Subscriber {id: 'u1'}) SET s.label = 'legitimate'")
    assert new_labels(labelled_graph, registry) == 1
    labelled_graph.write("MATCH (s:Subscriber {id: 'u1'}) REMOVE s.label")

    # The same data, seed and settings train the same model: not better, so refused.
    again = train_from_graph(labelled_graph, registry, models_config, kinds=["sage"], base=QUICK)
    assert again.manifest.val_pr_auc == manifest.val_pr_auc
    with pytest.raises(ModelError, match="does not beat the promoted v0001"):
        registry.promote(again.manifest.version)
    # Without labels enough for a GNN, the fallback has no PR-AUC: refused too.
    fallback = train_from_graph(
        labelled_graph, registry, models_config.model_copy(update={"min_labels_per_class": 99})
    )
    assert fallback.manifest.kind == "anomaly" and fallback.manifest.val_pr_auc is None
    with pytest.raises(ModelError, match="no validation PR-AUC"):
        registry.promote(fallback.manifest.version)
    assert registry.promoted_version() == "v0001"
    forced = registry.promote(fallback.manifest.version, force=True)
    assert forced.forced and registry.promoted_version() == fallback.manifest.version


@pytest.mark.parametrize("kind", ["sage", "boosted"])
def test_batch_inference_writes_scores_the_api_returns(
    kind: str, api: Api, labelled_graph: Neo4jRunner, models_config: ModelsConfig
) -> None:
    registry = ModelRegistry(models_config.dir)
    trained = train_from_graph(labelled_graph, registry, models_config, kinds=[kind], base=QUICK)
    assert trained.manifest.kind == kind
    version = trained.manifest.version
    registry.promote(version)
    report = score_subscribers(labelled_graph, registry)
    assert report.version == version and report.subscribers == RINGS * 3 + 12 + 2
    stored = {
        row["id"]: row
        for row in labelled_graph.read(
            "MATCH (s:Subscriber) RETURN s.id AS id, s.gnn_risk AS risk, s.gnn_reasons AS "
            "reasons, s.gnn_model AS model"
        )
    }
    assert len(stored) == report.subscribers
    assert all(0.0 <= row["risk"] <= 1.0 and row["model"] == version for row in stored.values())
    # u2 shares ring 0's email: its strongest neighbour is a confirmed fraudster of ring 0.
    reason = reason_codec.loads(stored["u2"]["reasons"])[0]
    assert reason.code == "gnn.score" and reason.evidence["model"] == version
    assert reason.evidence["neighbour"].startswith("f0-") and reason.evidence["neighbour_fraud"]

    # The merged risk takes the GNN as a component (rule merge: too few labels for stacking).
    score_all(labelled_graph, ScoringConfig(), as_of=T0)
    merged = labelled_graph.read(
        "MATCH (s:Subscriber {id: 'u2'}) RETURN s.risk AS risk, s.risk_reason_codes AS codes"
    )[0]
    assert merged["risk"] >= stored["u2"]["risk"] - 1e-9
    assert "gnn.score" in merged["codes"]

    response = api.client.get("/v1/subscribers/u2", headers=api.headers())
    assert response.status_code == 200, response.text
    gnn = response.json()["scores"]["gnn"]
    assert gnn["risk"] == pytest.approx(stored["u2"]["risk"])
    assert gnn["reasons"][0]["code"] == "gnn.score"
    assert gnn["reasons"][0]["evidence"]["model"] == version
