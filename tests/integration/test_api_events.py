"""Event ingestion over HTTP: validated like Kafka ingest, published, read back from Kafka."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, Message
from fastapi.testclient import TestClient

from ringwatch.config import Settings
from ringwatch.graph.db import Neo4jRunner
from ringwatch.service.app import create_app
from tests.factories import identity, label, transaction
from tests.integration.conftest import Api

TOO_LONG = "x" * 10_000


class Topics:
    def __init__(self, make: Callable[..., str]) -> None:
        self.identity = make("api-identity")
        self.transactions = make("api-transactions")
        self.labels = make("api-labels")


@pytest.fixture
def topics(kafka_topic: Callable[..., str]) -> Topics:
    return Topics(kafka_topic)


@pytest.fixture
def client(api: Api, settings: Settings, topics: Topics) -> Iterator[TestClient]:
    """The app publishing to this test's own topics (the keys are the `api` fixture's)."""
    kafka = settings.kafka.model_copy(
        update={"topic_identity": topics.identity, "topic_transactions": topics.transactions,
                "topic_labels": topics.labels}
    )  # fmt: skip
    with TestClient(
        create_app(settings.model_copy(update={"kafka": kafka})), raise_server_exceptions=False
    ) as test_client:
        yield test_client


def consume(settings: Settings, topic: str, expected: int, timeout_s: float = 30) -> list[Message]:
    consumer = Consumer(
        {**settings.kafka.librdkafka(), "group.id": f"api-test-{uuid.uuid4().hex[:8]}",
         "auto.offset.reset": "earliest", "enable.auto.commit": False}
    )  # fmt: skip
    consumer.subscribe([topic])
    received: list[Message] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(received) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                received.append(message)
        # Nothing more than expected arrives.
        extra = consumer.poll(1.0)
        assert extra is None or extra.error() is not None
    finally:
        consumer.close()
    return received


def post(client: TestClient, api: Api, family: str, body: Any, scope: str = "write") -> Any:
    return client.post(f"/v1/events/{family}", json=body, headers=api.headers(scope))


def test_one_event_is_published_keyed_by_subscriber(
    client: TestClient, api: Api, settings: Settings, topics: Topics
) -> None:
    event = identity("e-1", "s-1", emails=["a@example.org"])
    response = post(client, api, "identity", event)
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 1, "rejected": []}
    [message] = consume(settings, topics.identity, 1)
    assert message.key() == b"s-1"
    assert json.loads(message.value() or b"") == event


def test_a_batch_publishes_the_good_and_names_the_bad(
    client: TestClient, api: Api, settings: Settings, topics: Topics
) -> None:
    good = [transaction(f"t-{n}", f"s-{n}", amount=12.5) for n in range(3)]
    bad_amount = transaction("t-bad", "s-9", amount=-5.0)
    not_an_object = "hello"
    unknown_field = {**transaction("t-x", "s-9"), "' OR 1=1 //": 1}
    body = {"events": [good[0], bad_amount, good[1], not_an_object, unknown_field, good[2]]}
    response = post(client, api, "transactions", body)
    assert response.status_code == 202, response.text
    assert response.json() == {
        "accepted": 3,
        "rejected": [
            {"index": 1, "problem": "amount: Input should be greater than or equal to 0"},
            {"index": 3, "problem": "event: Input should be an object"},
            {"index": 4, "problem": "' OR 1=1 //: Extra inputs are not permitted"},
        ],
    }
    messages = consume(settings, topics.transactions, 3)
    assert sorted((m.key(), json.loads(m.value() or b"")["transaction_id"]) for m in messages) == [
        (b"s-0", "t-0"), (b"s-1", "t-1"), (b"s-2", "t-2")
    ]  # fmt: skip


def test_labels_family(client: TestClient, api: Api, settings: Settings, topics: Topics) -> None:
    response = post(client, api, "labels", {"events": [label("l-1", "s-1", "fraud")]})
    assert response.json() == {"accepted": 1, "rejected": []}
    [message] = consume(settings, topics.labels, 1)
    assert message.key() == b"s-1"
    # An identity event is not a label: families are validated by their own models.
    wrong = post(client, api, "labels", identity("e-1", "s-1"))
    assert wrong.status_code == 422


def test_nothing_valid_is_a_422_and_nothing_is_published(
    client: TestClient, api: Api, settings: Settings, topics: Topics
) -> None:
    hostile = identity("e-1", "s\u00001")
    long_id = identity("e-2", TOO_LONG)
    response = post(client, api, "identity", {"events": [hostile, long_id, {}]})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_events"
    assert [item["index"] for item in error["details"]["rejected"]] == [0, 1, 2]
    assert error["details"]["rejected"][0]["problem"] == (
        "subscriber_id: must not contain control characters"
    )
    assert TOO_LONG not in response.text
    assert consume(settings, topics.identity, 1, timeout_s=3) == []


def test_malformed_requests(client: TestClient, api: Api, graph: Neo4jRunner) -> None:
    headers = {**api.headers("write"), "Content-Type": "application/json"}
    not_json = client.post("/v1/events/identity", content=b"{nope", headers=headers)
    assert not_json.status_code == 400 and not_json.json()["error"]["code"] == "invalid_json"
    nan = client.post("/v1/events/identity", content=b'{"amount": NaN}', headers=headers)
    assert nan.status_code == 400
    deep = client.post("/v1/events/identity", content=b"[" * 100_000, headers=headers)
    assert deep.status_code == 400
    for body, status in (
        ({"events": []}, 422),
        ({"events": "many"}, 422),
        ({"events": [{}] * 1001}, 413),
    ):
        response = post(client, api, "identity", body)
        assert response.status_code == status, body
        assert "error" in response.json()
    unknown = post(client, api, "payments", identity("e-1", "s-1"))
    assert unknown.status_code == 422
    assert unknown.json()["error"]["details"]["problems"][0]["location"] == "path.family"
    huge = client.post("/v1/events/identity", content=b"[" + b" " * 1_100_000 + b"]",
                       headers=headers)  # fmt: skip
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "too_large"


def test_event_ingestion_needs_a_write_key(
    client: TestClient, api: Api, settings: Settings, topics: Topics
) -> None:
    event = identity("e-1", "s-1")
    assert client.post("/v1/events/identity", json=event).status_code == 401
    wrong = client.post("/v1/events/identity", json=event, headers={"X-API-Key": "rw_x_y"})
    assert wrong.status_code == 401
    forbidden = post(client, api, "identity", event, scope="read")
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["details"] == {"required": "write", "granted": ["read"]}
    assert consume(settings, topics.identity, 1, timeout_s=3) == []
    assert post(client, api, "identity", event, scope="admin").status_code == 202
