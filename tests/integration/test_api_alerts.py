"""Alerts through the API: list with filters and cursors, acknowledge, resolve, and the live
stream of new alerts (Server-Sent Events over a real HTTP server)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn

from ringwatch.config import Settings
from ringwatch.graph.alerts import StoredAlert, raise_alerts
from ringwatch.graph.db import Neo4jRunner
from ringwatch.graph.schema import migrate
from ringwatch.scoring.alerts import AlertCandidate
from ringwatch.scoring.reasons import Reason
from ringwatch.scoring.risk import Priority
from ringwatch.service.app import create_app
from tests.integration.conftest import Api

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CHARGES = Reason("usage.daily_charge_limit", "charges $640 in 24 h (limit $500)", 0.6,
                 {"spend": 640.0, "limit": 500.0})  # fmt: skip
TOO_LONG = "x" * 10_000


def candidate(entity: str, kind: str = "risk", priority: Priority = Priority.P2,
              entity_kind: str = "subscriber") -> AlertCandidate:  # fmt: skip
    return AlertCandidate(
        entity_kind="ring" if entity_kind == "ring" else "subscriber",
        entity_id=entity,
        kind=kind,
        priority=priority,
        risk={Priority.P1: 0.9, Priority.P2: 0.6, Priority.P3: 0.4}[priority],
        reasons=[CHARGES],
    )


@pytest.fixture
def alerts(api: Api, graph: Neo4jRunner) -> list[StoredAlert]:
    """Four alerts a minute apart, oldest first: S-1 risk P2, S-2 charge rule P3, ring R-1 P1,
    S-3 risk P3 (delivered)."""
    migrate(graph)
    graph.write("UNWIND ['S-1', 'S-2', 'S-3'] AS id CREATE (:Subscriber {id: id})")
    graph.write("CREATE (:Ring {id: 'R-1', size: 3})")
    raised = []
    for minute, item in enumerate(
        [
            candidate("S-1"),
            candidate("S-2", kind="usage.daily_charge_limit", priority=Priority.P3),
            candidate("R-1", priority=Priority.P1, entity_kind="ring"),
            candidate("S-3", priority=Priority.P3),
        ]
    ):
        raised.extend(raise_alerts(graph, [item], NOW + timedelta(minutes=minute)))
    graph.write("MATCH (a:Alert {id: $id}) SET a.delivery = 'delivered'", {"id": raised[3].id})
    return raised


def get(api: Api, path: str, scope: str = "read") -> Any:
    return api.client.get(path, headers=api.headers(scope))


def act(api: Api, alert_id: str, action: str, scope: str = "write", **body: Any) -> Any:
    payload = {"actor": "ana", **body}
    return api.client.post(
        f"/v1/alerts/{alert_id}/{action}", json=payload, headers=api.headers(scope)
    )


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [alert["id"] for alert in response.json()["alerts"]]


def test_alerts_are_listed_newest_first_with_every_filter(
    api: Api, alerts: list[StoredAlert]
) -> None:
    s1, s2, r1, s3 = (a.id for a in alerts)
    assert ids(get(api, "/v1/alerts")) == [s3, r1, s2, s1]
    assert ids(get(api, "/v1/alerts?priority=P3")) == [s3, s2]
    assert ids(get(api, "/v1/alerts?entity_kind=ring")) == [r1]
    assert ids(get(api, "/v1/alerts?entity_id=S-2")) == [s2]
    assert ids(get(api, "/v1/alerts?kind=usage.daily_charge_limit")) == [s2]
    assert ids(get(api, "/v1/alerts?delivery=delivered")) == [s3]
    assert ids(get(api, "/v1/alerts?delivery=pending&priority=P3")) == [s2]
    assert ids(get(api, "/v1/alerts?status=acknowledged")) == []
    assert ids(get(api, "/v1/alerts?status=open&entity_kind=subscriber")) == [s3, s2, s1]
    first = get(api, "/v1/alerts").json()["alerts"][-1]
    assert first == {
        "id": s1, "kind": "risk", "entity_kind": "subscriber", "entity_id": "S-1",
        "priority": "P2", "risk": 0.6, "reasons": [CHARGES.to_dict()],
        "reason_codes": ["usage.daily_charge_limit"], "status": "open",
        "created_at": "2026-03-01T12:00:00Z", "updated_at": "2026-03-01T12:00:00Z",
        "escalated_from": None, "delivery": "pending", "delivery_attempts": 0,
        "published": False, "acknowledged_at": None, "acknowledged_by": None,
        "acknowledge_note": None, "resolved_at": None, "resolved_by": None,
        "resolution_note": None,
    }  # fmt: skip


def test_cursor_pages_through_every_alert_once(api: Api, alerts: list[StoredAlert]) -> None:
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = "/v1/alerts?limit=3" + (f"&cursor={cursor}" if cursor else "")
        response = get(api, query)
        seen.extend(ids(response))
        pages += 1
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break
    assert pages == 2
    assert seen == [a.id for a in reversed(alerts)]


def test_one_alert_and_its_lifecycle(api: Api, alerts: list[StoredAlert]) -> None:
    alert = alerts[0].id
    assert get(api, f"/v1/alerts/{alert}").json()["status"] == "open"

    acknowledged = act(api, alert, "acknowledge", note="looking")
    assert acknowledged.status_code == 200, acknowledged.text
    body = acknowledged.json()
    assert (body["status"], body["acknowledged_by"], body["acknowledge_note"]) == (
        "acknowledged", "ana", "looking"
    )  # fmt: skip
    assert body["acknowledged_at"] is not None and body["updated_at"] == body["acknowledged_at"]
    assert body["resolved_at"] is None

    again = act(api, alert, "acknowledge", actor="bob")
    assert again.status_code == 200 and again.json() == body  # nothing changes

    resolved = act(api, alert, "resolve", actor="bob", note="blocked the SIM")
    assert resolved.status_code == 200
    done = resolved.json()
    assert (done["status"], done["resolved_by"], done["resolution_note"]) == (
        "resolved", "bob", "blocked the SIM"
    )  # fmt: skip
    assert done["acknowledged_by"] == "ana"  # history kept

    late = act(api, alert, "acknowledge")
    assert late.status_code == 409
    assert late.json()["error"] == {
        "code": "conflict",
        "message": "the alert is resolved; a resolved alert cannot be acknowledged",
        "details": {"status": "resolved"},
    }
    assert act(api, alert, "resolve", actor="carol").json() == done
    assert get(api, f"/v1/alerts/{alert}").json() == done

    # Straight from open to resolved; the delivery outbox is untouched.
    direct = act(api, alerts[1].id, "resolve").json()
    assert (direct["status"], direct["acknowledged_at"], direct["delivery"]) == (
        "resolved", None, "pending"
    )  # fmt: skip
    assert ids(get(api, "/v1/alerts?status=resolved")) == [alerts[1].id, alert]


def test_alert_errors(api: Api, alerts: list[StoredAlert]) -> None:
    assert get(api, "/v1/alerts/alert-nope").status_code == 404
    missing = act(api, "alert-nope", "resolve")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    for path in ("/v1/alerts?status=closed", "/v1/alerts?priority=P9", "/v1/alerts?limit=0",
                 "/v1/alerts?limit=abc", "/v1/alerts?delivery=lost",
                 "/v1/alerts?kind=' OR 1=1 //", f"/v1/alerts?entity_id={TOO_LONG}"):  # fmt: skip
        response = get(api, path)
        assert response.status_code == 422, path
        assert "error" in response.json()
    for cursor in ("!!!", "WyJ4IiwgInkiXQ==", "WzEsIDJd"):  # junk, ["x","y"], [1,2]
        bad = get(api, f"/v1/alerts?cursor={cursor}")
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_cursor"
    hostile = get(api, "/v1/alerts?entity_id=' OR 1=1 //")
    assert ids(hostile) == []
    bodies: list[dict[str, Any]] = [
        {}, {"actor": 1}, {"actor": TOO_LONG}, {"actor": "a\u0000"},
        {"actor": "ana", "note": TOO_LONG}, {"actor": "ana", "status": "resolved"},
    ]  # fmt: skip
    for body in bodies:
        response = api.client.post(
            f"/v1/alerts/{alerts[0].id}/resolve", json=body, headers=api.headers("write")
        )
        assert response.status_code == 422, body
        assert response.json()["error"]["code"] == "invalid_request"
    huge = api.client.post(
        f"/v1/alerts/{alerts[0].id}/resolve",
        content=b'{"actor": "' + b"x" * 1_100_000 + b'"}',
        headers={**api.headers("write"), "Content-Type": "application/json"},
    )
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "too_large"
    assert get(api, f"/v1/alerts/{alerts[0].id}").json()["status"] == "open"


def test_alert_access(api: Api, alerts: list[StoredAlert]) -> None:
    alert = alerts[0].id
    for path in ("/v1/alerts", f"/v1/alerts/{alert}", "/v1/alerts/stream"):
        assert api.client.get(path).status_code == 401
        assert api.client.get(path, headers={"X-API-Key": "rw_x_y"}).status_code == 401
    for action in ("acknowledge", "resolve"):
        assert (
            api.client.post(f"/v1/alerts/{alert}/{action}", json={"actor": "a"}).status_code == 401
        )
        forbidden = act(api, alert, action, scope="read")
        assert forbidden.status_code == 403
        assert forbidden.json()["error"]["code"] == "forbidden"
    assert get(api, f"/v1/alerts/{alert}").json()["status"] == "open"
    assert act(api, alert, "acknowledge", scope="admin").status_code == 200


# --- the stream ---------------------------------------------------------------------------------


class Server:
    """The app on a real HTTP server in a thread, for streaming tests."""

    def __init__(self, settings: Settings) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.app = create_app(settings)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def server(alerts: list[StoredAlert], settings: Settings) -> Iterator[Server]:
    with Server(settings) as running:
        yield running


def read_events(lines: Iterator[str], wanted: int, timeout_s: float = 20) -> list[dict[str, Any]]:
    """The next `wanted` events (comments skipped) as {id, event, data}."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    deadline = time.monotonic() + timeout_s
    for line in lines:
        assert time.monotonic() < deadline, "no event in time"
        if line.startswith("id: "):
            current["id"] = line[4:]
        elif line.startswith("event: "):
            current["event"] = line[7:]
        elif line.startswith("data: "):
            current["data"] = json.loads(line[6:])
        elif line == "" and current:
            events.append(current)
            current = {}
            if len(events) == wanted:
                return events
    raise AssertionError("the stream ended")


def test_stream_sends_alerts_raised_after_connecting_and_resumes(
    api: Api, graph: Neo4jRunner, server: Server
) -> None:
    headers = api.headers("read")
    fresh = candidate("S-1", priority=Priority.P1)
    with (
        httpx.Client(base_url=server.url, timeout=30) as client,
        client.stream("GET", "/v1/alerts/stream?heartbeat_s=0.5", headers=headers) as stream,
    ):
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        assert next(lines) == "retry: 2000"
        assert next(lines) == ": connected"
        # Older alerts are not replayed; a keep-alive comes while nothing happens.
        assert next(lines) == ""
        assert next(lines) == ": keep-alive"
        [raised] = raise_alerts(graph, [fresh], datetime.now(UTC))
        [event] = read_events(lines, 1)
        assert event["event"] == "alert"
        assert (event["data"]["id"], event["data"]["priority"]) == (raised.id, "P1")
        last_id = event["id"]
    # The server notices the client left and stops polling for it.
    deadline = time.monotonic() + 10
    while server.app.state.alert_streams:
        assert time.monotonic() < deadline, "the stream did not stop"
        time.sleep(0.1)

    # Two more while disconnected: resuming from the last id sends both, in order.
    later = [candidate("S-2", priority=Priority.P1), candidate("R-1", kind="ring.created",
                                                              entity_kind="ring")]  # fmt: skip
    missed = [raise_alerts(graph, [item], datetime.now(UTC))[0] for item in later]
    with (
        httpx.Client(base_url=server.url, timeout=30) as client,
        client.stream(
            "GET", "/v1/alerts/stream", headers={**headers, "Last-Event-ID": last_id}
        ) as stream,
    ):
        events = read_events(stream.iter_lines(), 2)
        assert [e["data"]["id"] for e in events] == [a.id for a in missed]


def test_stream_filters_and_bad_resume_ids(api: Api, graph: Neo4jRunner, server: Server) -> None:
    headers = api.headers("read")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        bad = client.get("/v1/alerts/stream", headers={**headers, "Last-Event-ID": "junk"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_cursor"
        with client.stream("GET", "/v1/alerts/stream?entity_kind=ring", headers=headers) as s:
            lines = s.iter_lines()
            raise_alerts(graph, [candidate("S-2", priority=Priority.P1)], datetime.now(UTC))
            [ring_alert] = raise_alerts(
                graph, [candidate("R-1", kind="ring.created", entity_kind="ring")],
                datetime.now(UTC),
            )  # fmt: skip
            [event] = read_events(lines, 1)
            assert event["data"]["id"] == ring_alert.id
