"""The API on the real stack: auth, errors, limits, metrics, drift, subscribers, identifiers,
rings."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import quote

import pytest
from graphdatascience import GraphDataScience
from neo4j import Driver

from ringwatch.graph.analytics import run_pipeline
from ringwatch.graph.db import Neo4jRunner
from ringwatch.graph.rings import reconcile_rings
from ringwatch.graph.scoring_run import score_all
from ringwatch.graph.writer import GraphWriter
from tests.factories import identity, label, prepared, transaction
from tests.integration.conftest import Api

HOSTILE = ["' OR 1=1 //", "x\u0000y", "}) MATCH (n) DETACH DELETE n //", "é" * 300]
AS_OF = datetime(2026, 11, 2, tzinfo=UTC)


def register(writer: GraphWriter, event: str, subscriber: str, **identifiers: list[str]) -> None:
    payload = identity(event, subscriber)
    payload["identifiers"] = identifiers
    writer.write(prepared(payload))


@pytest.fixture
def population(
    api: Api, graph: Neo4jRunner, gds: GraphDataScience, driver: Driver
) -> dict[str, Any]:
    """Four accounts on one email and address (one labelled fraud), a bystander, transactions."""
    writer = GraphWriter(graph, hub_cap=50)
    for index, member in enumerate(("r1", "r2", "r3", "r4")):
        register(writer, f"e-{member}", member, emails=["ring@example.org"],
                 addresses=["9 Elm Street, Springfield"], ips=[f"10.0.0.{index + 1}"])  # fmt: skip
    register(writer, "e-alone", "alone", emails=["alone@example.org"])
    writer.write(prepared(label("l-r1", "r1", "fraud")))
    writer.write(
        prepared(*(transaction(f"t-{n}", "r2", hours=n * 0.1, amount=12.5) for n in range(5)))
    )
    run_pipeline(gds, driver, api.client.app.state.settings.scoring)  # type: ignore[attr-defined]
    reconcile_rings(graph, min_ring_size=3)
    score_all(graph, api.client.app.state.settings.scoring, as_of=AS_OF)  # type: ignore[attr-defined]
    ring = graph.read("MATCH (r:Ring) RETURN r.id AS id")[0]["id"]
    return {"ring": ring}


# --- auth and errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/v1/subscribers/r1", "/v1/subscribers/r1/network", "/v1/identifiers/email/a@b.org",
     "/v1/rings", "/v1/rings/R-1", "/v1/drift", "/metrics"],
)  # fmt: skip
def test_every_endpoint_but_health_needs_a_valid_key(api: Api, path: str) -> None:
    missing = api.client.get(path)
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "unauthorized"
    wrong = api.client.get(path, headers={"X-API-Key": "rw_deadbeef_" + "x" * 43})
    assert wrong.status_code == 401
    malformed = api.client.get(path, headers={"X-API-Key": "nonsense"})
    assert malformed.status_code == 401
    bearer = api.client.get(path, headers={"Authorization": f"Bearer {api.keys['read']}"})
    assert bearer.status_code != 401


def test_health_is_open(api: Api) -> None:
    assert api.client.get("/healthz").json()["status"] == "ok"
    ready = api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"neo4j": "ok", "kafka": "ok"}


def test_under_scoped_key_is_forbidden_and_revoked_key_refused(
    api: Api, population: dict[str, Any], graph: Neo4jRunner
) -> None:
    suspended = api.client.post(
        "/v1/subscribers/r3/suspend", json={"reason": "ring", "actor": "t"},
        headers=api.headers("read"),
    )  # fmt: skip
    assert suspended.status_code == 403
    assert suspended.json()["error"]["details"] == {"required": "write", "granted": ["read"]}
    # admin includes write
    ok = api.client.post(
        "/v1/subscribers/r3/suspend", json={"reason": "ring", "actor": "t"},
        headers=api.headers("admin"),
    )  # fmt: skip
    assert ok.status_code == 200 and ok.json()["status"] == "suspended"

    from ringwatch.graph.api_keys import revoke_key

    prefix = api.keys["write"].split("_")[1]
    revoke_key(graph, prefix)
    api.client.app.state.key_cache._entries.clear()  # type: ignore[attr-defined]
    refused = api.client.get("/v1/subscribers/r1", headers=api.headers("write"))
    assert refused.status_code == 401


def test_oversize_bodies_are_refused_before_reading(api: Api) -> None:
    huge = "x" * 1_100_000
    response = api.client.post(
        "/v1/subscribers/r1/suspend", content=huge, headers={**api.headers("write"),
                                                             "Content-Type": "application/json"},
    )  # fmt: skip
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"


def test_bad_input_gets_a_clear_json_error(api: Api, population: dict[str, Any]) -> None:
    wrong_type = api.client.get("/v1/subscribers/r1/network?depth=abc", headers=api.headers())
    assert wrong_type.status_code == 422
    assert wrong_type.json()["error"]["details"]["problems"][0]["location"] == "query.depth"
    too_deep = api.client.get("/v1/subscribers/r1/network?depth=4", headers=api.headers())
    assert too_deep.status_code == 422
    bad_body = api.client.post("/v1/subscribers/r1/suspend", json={"reason": 3},
                               headers=api.headers("write"))  # fmt: skip
    assert bad_body.status_code == 422
    for hostile in map(partial(quote, safe=""), HOSTILE):
        for path in (f"/v1/subscribers/{hostile}", f"/v1/rings/{hostile}"):
            response = api.client.get(path, headers=api.headers())
            assert response.status_code in (404, 422), (path, response.status_code)
            assert "error" in response.json()
    bad_cursor = api.client.get("/v1/rings?cursor=!!!", headers=api.headers())
    assert bad_cursor.status_code == 400
    assert bad_cursor.json()["error"]["code"] == "invalid_cursor"
    # Nothing was deleted by the hostile strings.
    assert api.client.get("/v1/subscribers/r1", headers=api.headers()).status_code == 200


# --- resources --------------------------------------------------------------------------------


def test_subscriber_profile_has_identifiers_usage_scores_and_ring(
    api: Api, population: dict[str, Any]
) -> None:
    response = api.client.get("/v1/subscribers/r2", headers=api.headers())
    assert response.status_code == 200
    body = response.json()
    kinds = {(i["kind"], i["subscribers"]) for i in body["identifiers"]}
    assert {("email", 4), ("address", 4), ("ip", 1)} <= kinds
    # Five transactions of $12.50 within half an hour, all inside every window.
    for window in ("1h", "24h", "7d", "30d"):
        assert body["usage"][window]["count"] == 5
        assert body["usage"][window]["spend"] == pytest.approx(62.5)
    assert body["ring"]["id"] == population["ring"] and body["ring"]["size"] == 4
    merged = body["scores"]["merged"]
    assert 0.0 <= merged["risk"] <= 1.0 and body["priority"] in ("P1", "P2", "P3", "P4")
    graph_reasons = {reason["code"] for reason in body["scores"]["graph"]["reasons"]}
    assert {"graph.ring", "graph.near_fraud"} <= graph_reasons
    assert api.client.get("/v1/subscribers/nobody", headers=api.headers()).status_code == 404


def test_network_summarises_and_caps(api: Api, population: dict[str, Any]) -> None:
    response = api.client.get("/v1/subscribers/r1/network?depth=1&fanout=2",
                              headers=api.headers())  # fmt: skip
    body = response.json()
    ids = {(node["type"], node["id"]) for node in body["nodes"]}
    assert ("subscriber", "r1") in ids and ("email", "ring@example.org") in ids
    assert body["truncated"] is True
    assert any("2 of its 4 subscribers" in note for note in body["notes"])
    full = api.client.get("/v1/subscribers/r1/network?depth=2", headers=api.headers()).json()
    members = {node["id"] for node in full["nodes"] if node["type"] == "subscriber"}
    assert members == {"r1", "r2", "r3", "r4"} and full["truncated"] is False
    assert {"source": "r1", "target": "ring@example.org", "type": "HAS_EMAIL"} in full["edges"]


def test_who_uses_an_identifier_normalises_like_ingest(
    api: Api, population: dict[str, Any]
) -> None:
    response = api.client.get("/v1/identifiers/email/RING@Example.org", headers=api.headers())
    body = response.json()
    assert body["found"] and body["subscribers"] == 4
    assert sorted(user["id"] for user in body["users"]) == ["r1", "r2", "r3", "r4"]
    absent = api.client.get("/v1/identifiers/ip/192.0.2.1", headers=api.headers()).json()
    assert absent["found"] is False and absent["users"] == []
    invalid = api.client.get("/v1/identifiers/ip/not-an-ip", headers=api.headers())
    assert invalid.status_code == 422 and invalid.json()["error"]["code"] == "invalid_identifier"
    unknown_kind = api.client.get("/v1/identifiers/shoe/x", headers=api.headers())
    assert unknown_kind.status_code == 422


def test_rings_ranked_paginated_and_explained(api: Api, population: dict[str, Any]) -> None:
    page = api.client.get("/v1/rings?limit=1", headers=api.headers()).json()
    assert [ring["id"] for ring in page["rings"]] == [population["ring"]]
    assert page["next_cursor"] is None
    assert api.client.get("/v1/rings?min_risk=1.0&priority=P4",
                          headers=api.headers()).json()["rings"] == []  # fmt: skip
    detail = api.client.get(f"/v1/rings/{population['ring']}", headers=api.headers()).json()
    assert [m["id"] for m in detail["members"]] == ["r1", "r2", "r3", "r4"]
    shared = {(s["kind"], tuple(s["members"])) for s in detail["shared_identifiers"]}
    assert ("email", ("r1", "r2", "r3", "r4")) in shared
    assert {"source": "r1", "target": "r4", "via_kind": "email",
            "via": "ring@example.org"} in detail["evidence_paths"]  # fmt: skip
    assert detail["lineage"][0]["kind"] == "created"
    assert any(r["code"] == "ring.labelled_fraud" for r in detail["reasons"])
    assert api.client.get("/v1/rings/R-999999", headers=api.headers()).status_code == 404


def test_metrics_and_drift(api: Api, population: dict[str, Any]) -> None:
    assert api.client.get("/v1/subscribers/r1", headers=api.headers()).status_code == 200
    text = api.client.get("/metrics", headers=api.headers()).text
    requests = [line for line in text.splitlines() if "_count{" in line]
    assert (
        'ringwatch_http_request_duration_seconds_count{method="GET",'
        'route="/v1/subscribers/{subscriber_id}",status="200"}' in text
    ), requests
    assert 'ringwatch_ingest_events_total{family="identity",outcome="stored"} 5.0' in text
    assert "ringwatch_risk_score_count 5.0" in text
    assert "ringwatch_alerts_total{priority=" in text
    drift = api.client.get("/v1/drift", headers=api.headers()).json()
    assert drift["current_size"] == 5 and drift["baseline_size"] == 0
    assert drift["score_drift"] is False
