"""The one place that talks to Neo4j.

A process creates one `Driver` at its edge (`create_driver`) and hands it to a `QueryRunner`;
everything else takes the runner. Statements always travel with their parameters: nothing from
input is ever formatted into Cypher text. Writes retry transient errors (leader switch,
deadlock) through the driver's managed transactions. A read is one auto-commit query, the
cheapest way to ask (one round trip instead of a transaction's two), so it retries an error the
driver calls retryable itself, a few times.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from types import NoneType
from typing import TYPE_CHECKING, Any, LiteralString, Protocol, TypeVar

import neo4j
from neo4j import (
    Driver,
    GraphDatabase,
    NotificationDisabledClassification,
    NotificationMinimumSeverity,
    RoutingControl,
)
from neo4j.exceptions import AuthError, DriverError, Neo4jError, ServiceUnavailable
from neo4j.graph import Node, Path, Relationship

from ringwatch.config import Neo4jConfig
from ringwatch.graph.exceptions import GraphError

if TYPE_CHECKING:  # the GDS client pulls in pandas; only analytics needs it
    from graphdatascience import GraphDataScience

Record = dict[str, Any]
T = TypeVar("T")


class Tx(Protocol):
    """One open transaction: statements run here commit or roll back together."""

    def run(
        self, query: LiteralString, params: Mapping[str, Any] | None = None
    ) -> list[Record]: ...


def create_driver(config: Neo4jConfig) -> Driver:
    return GraphDatabase.driver(
        config.uri,
        auth=config.auth,
        max_connection_pool_size=config.max_connection_pool_size,
        connection_timeout=config.connection_timeout_s,
        # A label or type that no node has yet is normal on a young graph, not worth a warning;
        # informational notices (e.g. two index lookups per row read as a "cartesian product")
        # would flood the log of a busy worker.
        notifications_disabled_classifications=[NotificationDisabledClassification.UNRECOGNIZED],
        notifications_min_severity=NotificationMinimumSeverity.WARNING,
    )


class QueryRunner(Protocol):
    """What the rest of ringwatch needs from a graph: parameterised reads and writes."""

    def read(
        self, query: LiteralString, params: Mapping[str, Any] | None = None
    ) -> list[Record]: ...

    def write(
        self, query: LiteralString, params: Mapping[str, Any] | None = None
    ) -> list[Record]: ...

    def write_transaction(self, work: Callable[[Tx], T]) -> T:
        """Run `work` in one write transaction, retried as a whole on transient errors.

        `work` may run more than once (after a deadlock or a leader switch), so it must not
        have effects outside the transaction.
        """
        ...


_SCALARS = frozenset((str, int, float, bool, NoneType, bytes))


def plain_value(value: Any) -> Any:
    """`value` as `neo4j.Record.data()` turns it into plain Python, only faster.

    `data()` rebuilds every element of every list and map through abstract-class checks; on
    the bulk reads (a subscriber's 32-number embedding, its identifier list) that cost more
    than the query itself. Here a list or map holding only scalars is kept as the driver
    decoded it (a fresh object per record, so nothing is shared), and only graph values are
    converted, the way `data()` converts them: a node to its properties, a relationship to
    ``(start properties, type, end properties)``, a path to its nodes and relationship types.
    Temporal and spatial values stay as they are, as in `data()`.
    """
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is list:
        if _SCALARS.issuperset(map(type, value)):
            return value
        return [plain_value(item) for item in value]
    if kind is dict:
        if _SCALARS.issuperset(map(type, value.values())):
            return value
        return {key: plain_value(item) for key, item in value.items()}
    if isinstance(value, Node):
        return plain_value(dict(value))
    if isinstance(value, Relationship):
        return (
            plain_value(value.start_node),
            type(value).__name__,
            plain_value(value.end_node),
        )
    if isinstance(value, Path):
        converted: list[Any] = [plain_value(value.start_node)]
        for relationship, node in zip(value.relationships, value.nodes[1:], strict=True):
            converted += [type(relationship).__name__, plain_value(node)]
        return converted
    return value


def plain_record(record: neo4j.Record) -> Record:
    """One record as a dict of plain values (`plain_value`)."""
    return {key: plain_value(value) for key, value in zip(record.keys(), record, strict=True)}


class _ManagedTx:
    def __init__(self, tx: neo4j.ManagedTransaction) -> None:
        self._tx = tx

    def run(self, query: LiteralString, params: Mapping[str, Any] | None = None) -> list[Record]:
        return [plain_record(record) for record in self._tx.run(query, dict(params or {}))]


class Neo4jRunner:
    """`QueryRunner` over a real driver; reads are routed to readers in a cluster."""

    def __init__(self, driver: Driver, database: str = "neo4j") -> None:
        self.driver = driver
        self.database = database

    def _run(
        self, query: LiteralString, params: Mapping[str, Any] | None, routing: RoutingControl
    ) -> list[Record]:
        try:
            records, _, _ = self.driver.execute_query(
                query, dict(params or {}), database_=self.database, routing_=routing
            )
        except ServiceUnavailable as exc:
            raise GraphError(f"Neo4j is not reachable: {exc}") from None
        except AuthError:
            raise GraphError("Neo4j refused the credentials (RINGWATCH_NEO4J__*)") from None
        return [plain_record(record) for record in records]

    READ_ATTEMPTS = 3

    def read(self, query: LiteralString, params: Mapping[str, Any] | None = None) -> list[Record]:
        """The records of one read, as an auto-commit query routed to a reader. The bookmarks
        are those of `execute_query`, which the writes use, so a read follows the writes this
        process made before it (in a cluster too)."""
        parameters = dict(params or {})
        for attempt in range(1, self.READ_ATTEMPTS + 1):
            try:
                with self.driver.session(
                    database=self.database,
                    default_access_mode=neo4j.READ_ACCESS,
                    bookmark_manager=self.driver.execute_query_bookmark_manager,
                ) as session:
                    return [plain_record(record) for record in session.run(query, parameters)]
            except AuthError:
                raise GraphError("Neo4j refused the credentials (RINGWATCH_NEO4J__*)") from None
            except (Neo4jError, DriverError) as exc:
                if attempt < self.READ_ATTEMPTS and exc.is_retryable():
                    time.sleep(0.05 * 2**attempt)
                    continue
                if isinstance(exc, ServiceUnavailable):
                    raise GraphError(f"Neo4j is not reachable: {exc}") from None
                raise
        raise AssertionError("unreachable")

    def write(self, query: LiteralString, params: Mapping[str, Any] | None = None) -> list[Record]:
        return self._run(query, params, RoutingControl.WRITE)

    def write_transaction(self, work: Callable[[Tx], T]) -> T:
        try:
            with self.driver.session(database=self.database) as session:
                return session.execute_write(lambda tx: work(_ManagedTx(tx)))
        except ServiceUnavailable as exc:
            raise GraphError(f"Neo4j is not reachable: {exc}") from None

    def server_info(self) -> tuple[str, str]:
        """(agent, edition) of the connected server, e.g. ('Neo4j/5.26.24', 'community')."""
        records = self.read("CALL dbms.components() YIELD name, versions, edition RETURN *")
        first = records[0]
        return f"{first['name']}/{first['versions'][0]}", str(first["edition"])


__all__ = ["Driver", "Neo4jRunner", "QueryRunner", "Record", "Tx", "create_driver", "neo4j"]


def create_gds(config: Neo4jConfig) -> GraphDataScience:
    """A Graph Data Science client on the same server and database as the driver."""
    from graphdatascience import GraphDataScience

    return GraphDataScience(config.uri, auth=config.auth, database=config.database)
