"""`Neo4jRunner.read` is one auto-commit query: what it retries and what it reports."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from neo4j.exceptions import ClientError, ServiceUnavailable, SessionExpired

from ringwatch.graph.db import Neo4jRunner
from ringwatch.graph.exceptions import GraphError


class FakeRecord:
    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def keys(self) -> list[str]:
        return list(self.values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.values.values())


class FakeDriver:
    """Sessions whose `run` raises the queued errors in turn, then answers."""

    execute_query_bookmark_manager = object()

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.sessions: list[dict[str, Any]] = []
        self.queries: list[tuple[str, dict[str, Any]]] = []

    def session(self, **config: Any) -> FakeDriver:
        self.sessions.append(config)
        return self

    def __enter__(self) -> FakeDriver:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def run(self, query: str, params: dict[str, Any]) -> list[FakeRecord]:
        self.queries.append((query, params))
        if self.errors:
            raise self.errors.pop(0)
        return [FakeRecord({"answer": 42})]


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ringwatch.graph.db.time.sleep", lambda _: None)


def runner(driver: FakeDriver) -> Neo4jRunner:
    return Neo4jRunner(driver)  # type: ignore[arg-type]


def test_a_read_is_one_auto_commit_query_in_read_mode_with_the_writes_bookmarks() -> None:
    driver = FakeDriver()
    assert runner(driver).read("RETURN $x AS answer", {"x": 42}) == [{"answer": 42}]
    assert driver.queries == [("RETURN $x AS answer", {"x": 42})]
    (session,) = driver.sessions
    assert session["default_access_mode"] == "READ"
    assert session["bookmark_manager"] is FakeDriver.execute_query_bookmark_manager


def test_an_error_the_driver_calls_retryable_is_retried() -> None:
    driver = FakeDriver(SessionExpired("the reader went away"))
    assert runner(driver).read("RETURN 42 AS answer") == [{"answer": 42}]
    assert len(driver.queries) == 2


def test_other_errors_are_not_retried() -> None:
    driver = FakeDriver(ClientError("Invalid input 'RETRUN'"))
    with pytest.raises(ClientError):
        runner(driver).read("RETRUN 1")
    assert len(driver.queries) == 1


def test_an_unreachable_server_is_reported_after_the_last_attempt() -> None:
    driver = FakeDriver(*[ServiceUnavailable("connection refused")] * Neo4jRunner.READ_ATTEMPTS)
    with pytest.raises(GraphError, match="Neo4j is not reachable"):
        runner(driver).read("RETURN 1")
    assert len(driver.queries) == Neo4jRunner.READ_ATTEMPTS
