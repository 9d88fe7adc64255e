"""The one place that talks to Neo4j.

A process creates one `Driver` at its edge (`create_driver`) and hands it to a `QueryRunner`;
everything else takes the runner. Statements always travel with their parameters: nothing from
input is ever formatted into Cypher text. Retries of transient errors (leader switch, deadlock)
come from the driver's managed transactions (`execute_query`), the only retries in this layer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, LiteralString, Protocol, TypeVar

import neo4j
from neo4j import (
    Driver,
    GraphDatabase,
    NotificationDisabledClassification,
    NotificationMinimumSeverity,
    RoutingControl,
)
from neo4j.exceptions import AuthError, ServiceUnavailable

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


class _ManagedTx:
    def __init__(self, tx: neo4j.ManagedTransaction) -> None:
        self._tx = tx

    def run(self, query: LiteralString, params: Mapping[str, Any] | None = None) -> list[Record]:
        return [record.data() for record in self._tx.run(query, dict(params or {}))]


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
        return [record.data() for record in records]

    def read(self, query: LiteralString, params: Mapping[str, Any] | None = None) -> list[Record]:
        return self._run(query, params, RoutingControl.READ)

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
