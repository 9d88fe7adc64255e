"""Labels through the API: stored by the ingest writer, idempotent, listed per subscriber."""

from __future__ import annotations

from typing import Any

import pytest

from ringwatch.graph.db import Neo4jRunner
from ringwatch.graph.schema import migrate
from ringwatch.graph.writer import GraphWriter
from tests.factories import identity, prepared
from tests.integration.conftest import Api

TOO_LONG = "x" * 10_000


@pytest.fixture
def people(api: Api, graph: Neo4jRunner) -> Neo4jRunner:
    migrate(graph)
    writer = GraphWriter(graph, hub_cap=50)
    for subscriber in ("s1", "s2"):
        writer.write(
            prepared(identity(f"e-{subscriber}", subscriber, emails=[f"{subscriber}@x.org"]))
        )
    graph.write("CREATE (:Ring {id: 'R-1', status: 'active', size: 3})")
    return graph


def label(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "subscriber_id": "s1", "label": "fraud", "analyst": "ana",
        "reason": "same device as a known mule", "event_id": "lbl-1",
    }  # fmt: skip
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def post(api: Api, body: dict[str, Any], scope: str = "write") -> Any:
    return api.client.post("/v1/labels", json=body, headers=api.headers(scope))


def stored(graph: Neo4jRunner) -> list[dict[str, Any]]:
    return [
        row["l"]
        for row in graph.read(
            "MATCH (l:Label)-[:ABOUT]->(s:Subscriber) RETURN l {.*, about: s.id} AS l ORDER BY l.id"
        )
    ]


def test_a_label_is_stored_like_an_ingested_one(api: Api, people: Neo4jRunner) -> None:
    response = post(api, label(ring_id="R-1"))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body.pop("ts") is not None
    assert body == {
        "event_id": "lbl-1", "subscriber_id": "s1", "label": "fraud", "source": "analyst",
        "analyst": "ana", "reason": "same device as a known mule", "ring_id": "R-1",
        "transaction_id": None,
    }  # fmt: skip
    [node] = stored(people)
    assert (node["id"], node["about"], node["label"], node["ring_id"]) == (
        "lbl-1", "s1", "fraud", "R-1"
    )  # fmt: skip
    subscriber = people.read("MATCH (s:Subscriber {id: 's1'}) RETURN s {.*} AS s")[0]["s"]
    assert (subscriber["label"], subscriber["label_source"]) == ("fraud", "analyst")


def test_the_same_event_id_again_changes_nothing(api: Api, people: Neo4jRunner) -> None:
    first = post(api, label())
    assert first.status_code == 201
    again = post(api, label())
    assert again.status_code == 200
    assert again.json() == first.json()
    assert len(stored(people)) == 1
    assert people.read("MATCH (:Label)-[r:ABOUT]->() RETURN count(r) AS n")[0]["n"] == 1
    # The same id for a different outcome is a mistake worth saying so.
    conflict = post(api, label(label="legitimate"))
    assert conflict.status_code == 409
    assert conflict.json()["error"]["details"] == {"event_id": "lbl-1"}
    assert people.read("MATCH (s:Subscriber {id: 's1'}) RETURN s.label AS l")[0]["l"] == "fraud"


def test_labels_without_an_event_id_get_one_and_the_newest_wins(
    api: Api, people: Neo4jRunner
) -> None:
    first = post(api, label(event_id=None))
    second = post(api, label(event_id=None, label="legitimate", reason="customer verified"))
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["event_id"].startswith("label-")
    assert first.json()["event_id"] != second.json()["event_id"]
    listed = api.client.get("/v1/subscribers/s1/labels", headers=api.headers("read"))
    assert listed.status_code == 200
    body = listed.json()
    assert body["current"] == "legitimate" and body["truncated"] is False
    assert [(item["label"], item["reason"]) for item in body["labels"]] == [
        ("legitimate", "customer verified"),
        ("fraud", "same device as a known mule"),
    ]
    page = api.client.get("/v1/subscribers/s1/labels?limit=1", headers=api.headers("read"))
    assert len(page.json()["labels"]) == 1 and page.json()["truncated"] is True
    empty = api.client.get("/v1/subscribers/s2/labels", headers=api.headers("read")).json()
    assert empty == {"subscriber_id": "s2", "current": None, "labels": [], "truncated": False}


def test_unknown_subscribers_and_rings_are_404(api: Api, people: Neo4jRunner) -> None:
    for body, kind in (
        (label(subscriber_id="nobody"), "subscriber"),
        (label(subscriber_id="' OR 1=1 //"), "subscriber"),
        (label(ring_id="R-404"), "ring"),
    ):
        response = post(api, body)
        assert response.status_code == 404
        assert response.json()["error"]["details"] == {"kind": kind}
    listed = api.client.get("/v1/subscribers/nobody/labels", headers=api.headers("read"))
    assert listed.status_code == 404
    assert stored(people) == []
    assert people.read("MATCH (s:Subscriber) RETURN count(s) AS n")[0]["n"] == 2


@pytest.mark.parametrize(
    ("changes", "location"),
    [
        ({"label": "maybe"}, "body.label"),
        ({"label": 1}, "body.label"),
        ({"analyst": None}, "body.analyst"),
        ({"reason": TOO_LONG}, "body.reason"),
        ({"analyst": "a\u0000b"}, "body.analyst"),
        ({"subscriber_id": TOO_LONG}, "body.subscriber_id"),
        ({"event_id": ""}, "body.event_id"),
        ({"source": "' OR 1=1 //"}, "body.source"),
        ({"unexpected": True}, "body.unexpected"),
    ],
)
def test_bad_labels_are_a_clean_422(
    api: Api, people: Neo4jRunner, changes: dict[str, Any], location: str
) -> None:
    response = post(api, label(**changes))
    assert response.status_code == 422
    assert response.json()["error"]["details"]["problems"][0]["location"] == location
    assert stored(people) == []


def test_label_access_and_limits(api: Api, people: Neo4jRunner) -> None:
    assert api.client.post("/v1/labels", json=label()).status_code == 401
    wrong = api.client.post("/v1/labels", json=label(), headers={"X-API-Key": "rw_x"})
    assert wrong.status_code == 401
    read_only = post(api, label(), scope="read")
    assert read_only.status_code == 403
    assert read_only.json()["error"]["details"] == {"required": "write", "granted": ["read"]}
    assert post(api, label(), scope="admin").status_code == 201
    assert api.client.get("/v1/subscribers/s1/labels").status_code == 401
    bad_path = api.client.get("/v1/subscribers/a%00b/labels", headers=api.headers("read"))
    assert bad_path.status_code == 422 and "error" in bad_path.json()
    huge = api.client.post(
        "/v1/labels",
        content=b'{"reason": "' + b"x" * 1_100_000 + b'"}',
        headers={**api.headers("write"), "Content-Type": "application/json"},
    )
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "too_large"
