"""Real-time scoring of a signup and of a transaction through the API, on the real stack."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from graphdatascience import GraphDataScience
from neo4j import Driver

from ringwatch.graph.analytics import run_pipeline
from ringwatch.graph.db import Neo4jRunner
from ringwatch.graph.rings import reconcile_rings
from ringwatch.graph.schema import migrate
from ringwatch.graph.writer import GraphWriter
from ringwatch.scoring import reasons as reason_codec
from ringwatch.scoring.reasons import Reason
from tests.factories import T0, identity, label, prepared, transaction
from tests.integration.conftest import Api

RING_EMAIL = "ring@example.org"
RING_DEVICE = "490154203237518"
HOME_IP = "198.51.100.7"
NEW_YORK = {"lat": 40.7128, "lon": -74.0060, "country": "US"}
LONDON = {"lat": 51.5074, "lon": -0.1278, "country": "GB"}
TOO_LONG = "x" * 10_000
RING_REASON = Reason("ring.labelled_fraud", "1 of 3 members confirmed fraud", 0.73)


def register(writer: GraphWriter, event: str, subscriber: str, hours: float = 0.0,
             **identifiers: list[str]) -> None:  # fmt: skip
    payload = identity(event, subscriber, hours=hours)
    payload["identifiers"] = identifiers
    writer.write(prepared(payload))


def noisy_or(*strengths: float) -> float:
    remaining = 1.0
    for strength in strengths:
        remaining *= 1.0 - strength
    return 1.0 - remaining


@pytest.fixture
def ring_graph(api: Api, graph: Neo4jRunner) -> Neo4jRunner:
    """r1..r3 share an email and a device and form ring R-1 (risk 0.8); r1 is confirmed fraud.
    Three others share an IP that is a hub; `quiet` shares nothing."""
    migrate(graph)
    writer = GraphWriter(graph, hub_cap=50)
    for member in ("r1", "r2", "r3"):
        register(writer, f"e-{member}", member, emails=[RING_EMAIL], devices=[RING_DEVICE])
    writer.write(prepared(label("l-r1", "r1", "fraud")))
    small_cap = GraphWriter(graph, hub_cap=2)
    for index in range(3):
        register(small_cap, f"e-nat{index}", f"nat{index}", ips=["100.64.0.1"])
    register(writer, "e-quiet", "quiet", emails=["quiet@example.org"])
    graph.write(
        "CREATE (r:Ring {id: 'R-1', status: 'active', size: 3, risk: 0.8, reasons: $reasons}) "
        "WITH r MATCH (s:Subscriber) WHERE s.id IN ['r1', 'r2', 'r3'] "
        "SET s.ring_id = 'R-1' CREATE (s)-[:MEMBER_OF]->(r)",
        {"reasons": reason_codec.dumps([RING_REASON])},
    )
    return graph


def score_signup(api: Api, body: dict[str, Any], scope: str = "read") -> Any:
    return api.client.post("/v1/score/signup", json=body, headers=api.headers(scope))


# --- signup -------------------------------------------------------------------------------------


def test_signup_sharing_a_rings_identifiers_is_blocked_with_every_reason(
    api: Api, ring_graph: Neo4jRunner
) -> None:
    response = score_signup(
        api,
        {"emails": ["Ring@Example.org"], "devices": [RING_DEVICE],
         "addresses": ["1 New Road, Springfield"]},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    body = response.json()
    # Weighted identifier sets: the prospect has email 0.3 + device 0.25 + address 0.4 = 0.95;
    # each member email + device = 0.55, all of it shared: Jaccard 0.55 / 0.95.
    similarity = 0.55 / 0.95
    strengths = {
        "graph.ring": 0.8,  # the ring's stored risk; a prospect is a new account
        "graph.near_fraud": 0.5,  # 0.4 + 0.1 per subscriber confirmed fraud
        "graph.shared_identifier": 0.32,  # 0.08 per account on the email (3 + the prospect)
        "graph.same_person": 0.4 * similarity,
    }
    assert body["risk"] == pytest.approx(noisy_or(*strengths.values()))
    assert body["priority"] == "P1" and body["decision"] == "BLOCK"
    assert [(r["code"], r["weight"]) for r in body["reasons"]] == [
        (code, pytest.approx(weight)) for code, weight in strengths.items()
    ]
    reasons = {r["code"]: r for r in body["reasons"]}
    assert reasons["graph.ring"]["text"] == (
        "would join ring R-1 (3 subscribers, ring risk 0.80) through 490154…, ring@e…: "
        "1 of 3 members confirmed fraud"
    )
    assert reasons["graph.shared_identifier"]["text"] == (
        "shares email ring@e… with 3 subscribers in ring R-1"
    )
    assert reasons["graph.same_person"]["evidence"]["similar_to"] == "r1"
    assert reasons["graph.near_fraud"]["evidence"] == {"labelled_fraud_neighbours": 1}
    assert body["identifiers"] == 3
    assert body["matched"] == [
        {"kind": "email", "id": "ring@e…", "subscribers": 3, "hub": False, "rings": ["R-1"],
         "labelled_fraud": 1},
        {"kind": "device", "id": "490154…", "subscribers": 3, "hub": False, "rings": ["R-1"],
         "labelled_fraud": 1},
    ]  # fmt: skip
    # Nothing was written: no prospect, no new identifier.
    counts = ring_graph.read(
        "RETURN COUNT { MATCH (:Subscriber) } AS subscribers, COUNT { MATCH (:Address) } "
        "AS addresses"
    )[0]
    assert (counts["subscribers"], counts["addresses"]) == (7, 0)


def test_signup_on_a_hub_or_new_identifiers_is_approved(api: Api, ring_graph: Neo4jRunner) -> None:
    clean = score_signup(api, {"emails": ["someone.new@example.org"], "ips": ["100.64.0.1"]})
    assert clean.status_code == 200
    body = clean.json()
    assert body == {
        "risk": 0.0, "priority": "P4", "decision": "APPROVE", "components": {"graph": 0.0},
        "reasons": [], "identifiers": 2,
        "matched": [{"kind": "ip", "id": "100.64…", "subscribers": 3, "hub": True, "rings": [],
                     "labelled_fraud": 0}],
    }  # fmt: skip
    # Exactly the identifiers of one ordinary account: likely the same person coming back.
    same = score_signup(api, {"emails": ["quiet@example.org"]}).json()
    assert same["matched"][0]["subscribers"] == 1
    assert [(r["code"], r["weight"], r["evidence"]) for r in same["reasons"]] == [
        ("graph.same_person", 0.4, {"similar_to": "quiet", "similarity": 1.0})
    ]
    assert (same["risk"], same["decision"]) == (pytest.approx(0.4), "REVIEW")


def test_signup_joining_a_ring_found_by_the_pipeline(
    api: Api, graph: Neo4jRunner, gds: GraphDataScience, driver: Driver
) -> None:
    """The ring comes from GDS and reconciliation; its stored risk is what the prospect gets."""
    migrate(graph)
    writer = GraphWriter(graph, hub_cap=50)
    for member in ("a", "b", "c"):
        register(writer, f"e-{member}", member, addresses=["9 Elm Street, Springfield"],
                 emails=["shared@example.org"])  # fmt: skip
    run_pipeline(gds, driver, api.client.app.state.settings.scoring)  # type: ignore[attr-defined]
    reconcile_rings(graph, min_ring_size=3)
    ring = graph.write("MATCH (r:Ring) SET r.risk = 0.6 RETURN r.id AS id")[0]["id"]
    body = score_signup(api, {"addresses": ["9 ELM ST, Springfield"]}).json()
    assert body["matched"][0]["rings"] == [ring]
    # The address (0.4) is 0.4 / 0.7 of a member's weighted identifiers (address + email).
    same_person = 0.4 * 0.4 / 0.7
    assert {r["code"]: r["weight"] for r in body["reasons"]} == {
        "graph.ring": 0.6, "graph.same_person": pytest.approx(same_person)
    }  # fmt: skip
    assert body["risk"] == pytest.approx(noisy_or(0.6, same_person))
    assert body["decision"] == "REVIEW"


def test_signup_identifiers_that_do_not_normalise_are_named(
    api: Api, ring_graph: Neo4jRunner
) -> None:
    response = score_signup(api, {"emails": ["ok@example.org", "not-an-email"]})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_identifier"
    assert error["details"]["problems"][0]["location"] == "body.emails[1]"
    assert "not-an-email" not in response.text


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({}, "body"),  # nothing to score
        ({"emails": "a@example.org"}, "body.emails"),  # not a list
        ({"emails": [1]}, "body.emails.0"),
        ({"emails": ["a@example.org"], "extra": 1}, "body.extra"),
        ({"emails": [TOO_LONG]}, "body.emails.0"),
        ({"emails": ["a\u0000@example.org"]}, "body.emails.0"),
        ({"emails": [f"u{i}@example.org" for i in range(33)]}, "body.emails"),
        ({"emails": ["a@example.org"], "created_at": "2026-01-01T00:00:00"}, "body.created_at"),
    ],
)
def test_signup_bad_input_is_a_clean_422(
    api: Api, graph: Neo4jRunner, body: dict[str, Any], location: str
) -> None:
    response = score_signup(api, body)
    assert response.status_code == 422
    problems = response.json()["error"]["details"]["problems"]
    assert problems[0]["location"] == location


def test_signup_hostile_strings_are_only_data(api: Api, ring_graph: Neo4jRunner) -> None:
    for hostile in ("' OR 1=1 //", "}) MATCH (n) DETACH DELETE n //"):
        response = score_signup(api, {"addresses": [hostile], "devices": [hostile]})
        assert response.status_code in (200, 422)
        assert response.status_code == 422 or response.json()["matched"] == []
        email = score_signup(api, {"emails": [hostile]})
        assert email.status_code == 422 and "error" in email.json()
    assert ring_graph.read("MATCH (s:Subscriber) RETURN count(s) AS n")[0]["n"] == 7


# --- transaction --------------------------------------------------------------------------------


@pytest.fixture
def spender(api: Api, graph: Neo4jRunner) -> Neo4jRunner:
    """`t1` registered ten days before T0 on one device and IP, paid $400 in New York an hour
    before T0; stored graph risk 0.2 and GNN risk 0.1."""
    migrate(graph)
    writer = GraphWriter(graph, hub_cap=50)
    register(writer, "e-t1", "t1", hours=-240, devices=[RING_DEVICE], ips=[HOME_IP])
    paid = transaction("p-1", "t1", hours=-1, amount=400.0, device=RING_DEVICE, ip=HOME_IP,
                       location=NEW_YORK)  # fmt: skip
    writer.write(prepared(paid))
    graph.write(
        "MATCH (s:Subscriber {id: 't1'}) SET s.graph_risk = 0.2, s.gnn_risk = 0.1, "
        "s.graph_reasons = $reasons",
        {"reasons": reason_codec.dumps([Reason("graph.shared_identifier", "shares ...", 0.2)])},
    )
    return graph


def score_transaction(api: Api, body: dict[str, Any], scope: str = "read") -> Any:
    return api.client.post("/v1/score/transaction", json=body, headers=api.headers(scope))


def payment(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"subscriber_id": "t1", "kind": "payment", "amount": 200.0,
                            "currency": "USD", "ts": T0.isoformat()}  # fmt: skip
    body.update(changes)
    return body


def test_transaction_over_the_limit_from_a_new_device_abroad(
    api: Api, spender: Neo4jRunner
) -> None:
    response = score_transaction(
        api, payment(device="356938035643809", ip="203.0.113.9", location=LONDON)
    )
    assert response.status_code == 200, response.text
    body = response.json()
    reasons = {r["code"]: r for r in body["reasons"]}
    # $400 + $200 = $600 in 24 h: 0.6 + 0.35 * (1.2 - 1) / 2.
    charge = 0.6 + 0.35 * 0.1
    # New device: 0.1 + 0.05 * (1 transaction / 10) + 0.45 * ($200 / $500); new IP: 0.03 + ...
    device = 0.1 + 0.005 + 0.45 * 0.4
    ip = 0.03 + 0.002 + 0.35 * 0.4
    travel = 0.8  # ~5,570 km in 1 h, over four times the 900 km/h limit
    usage = noisy_or(charge, device, ip, travel)
    assert body["components"] == {
        "usage": pytest.approx(usage),
        "graph": 0.2,
        "gnn": pytest.approx(0.1),
    }
    assert body["risk"] == pytest.approx(noisy_or(usage, 0.2, 0.1))
    assert body["priority"] == "P1" and body["decision"] == "BLOCK"
    assert reasons["usage.daily_charge_limit"]["weight"] == pytest.approx(charge)
    assert reasons["usage.daily_charge_limit"]["text"] == (
        "charges $600 in 24 h with this payment of $200 (limit $500)"
    )
    assert reasons["usage.daily_charge_limit"]["evidence"] == {
        "spend": 600.0, "limit": 500.0, "amount": 200.0, "spend_before": 400.0
    }  # fmt: skip
    assert reasons["usage.new_device"]["weight"] == pytest.approx(device)
    assert reasons["usage.new_device"]["evidence"]["days_before"] == pytest.approx(10.0)
    assert reasons["usage.new_ip"]["weight"] == pytest.approx(ip)
    assert reasons["usage.impossible_travel"]["weight"] == pytest.approx(travel)
    assert reasons["usage.impossible_travel"]["text"].startswith(
        "impossible travel: 5,570 km in 1.0 h from US to GB"
    )
    assert "graph.shared_identifier" in reasons
    assert body["as_of"] == "2026-11-01T12:00:00Z"
    # Nothing was written.
    assert spender.read("MATCH (t:Transaction) RETURN count(t) AS n")[0]["n"] == 1


def test_ordinary_transaction_keeps_the_stored_risk(api: Api, spender: Neo4jRunner) -> None:
    ts = (T0 + timedelta(hours=1)).isoformat()
    body = score_transaction(
        api, payment(amount=20.0, ts=ts, device=RING_DEVICE, ip=HOME_IP, location=NEW_YORK)
    ).json()
    assert body["components"]["usage"] == 0.0
    assert body["risk"] == pytest.approx(noisy_or(0.2, 0.1))
    assert (body["priority"], body["decision"]) == ("P4", "APPROVE")
    assert [r["code"] for r in body["reasons"]] == ["graph.shared_identifier"]


def test_transaction_of_a_subscriber_confirmed_fraud_is_blocked(
    api: Api, spender: Neo4jRunner
) -> None:
    GraphWriter(spender, hub_cap=50).write(prepared(label("l-t1", "t1", "fraud")))
    body = score_transaction(api, payment(amount=1.0)).json()
    assert body["risk"] >= 0.99 and body["decision"] == "BLOCK"
    assert body["reasons"][0]["code"] == "label.fraud"


def test_transaction_errors(api: Api, spender: Neo4jRunner) -> None:
    unknown = score_transaction(api, payment(subscriber_id="nobody"))
    assert unknown.status_code == 404
    assert unknown.json()["error"]["message"] == "no subscriber with id 'nobody'"
    hostile = score_transaction(api, payment(subscriber_id="' OR 1=1 //"))
    assert hostile.status_code == 404
    bad_ip = score_transaction(api, payment(ip="999.1.1.1"))
    assert bad_ip.status_code == 422
    assert bad_ip.json()["error"]["details"]["problems"][0]["location"] == "body.ip"
    for changes, location in (
        ({"amount": "abc"}, "body.amount"),
        ({"amount": -1}, "body.amount"),
        ({"kind": "refund"}, "body.kind"),
        ({"currency": None}, "body"),  # an amount needs a currency
        ({"amount": None, "currency": None}, "body"),  # a payment needs an amount
        ({"subscriber_id": TOO_LONG}, "body.subscriber_id"),
        ({"subscriber_id": "t\u00001"}, "body.subscriber_id"),
        ({"location": {"lat": 91, "lon": 0}}, "body.location.lat"),
        ({"ts": "yesterday"}, "body.ts"),
    ):
        response = score_transaction(api, payment(**changes))
        assert response.status_code == 422, changes
        assert response.json()["error"]["details"]["problems"][0]["location"] == location


# --- access -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/score/signup", "/v1/score/transaction"])
def test_scoring_needs_a_read_key(api: Api, graph: Neo4jRunner, path: str) -> None:
    body = payment() if path.endswith("transaction") else {"emails": ["a@example.org"]}
    assert api.client.post(path, json=body).status_code == 401
    wrong = api.client.post(path, json=body, headers={"X-API-Key": "rw_deadbeef_" + "x" * 43})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized"
    assert api.client.post(path, json=body, headers=api.headers("write")).status_code != 401


@pytest.mark.parametrize("path", ["/v1/score/signup", "/v1/score/transaction"])
def test_oversize_scoring_bodies_are_refused(api: Api, graph: Neo4jRunner, path: str) -> None:
    response = api.client.post(
        path,
        content=b'{"emails": ["' + b"a" * 1_100_000 + b'"]}',
        headers={**api.headers(), "Content-Type": "application/json"},
    )
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"
