"""Loading identity files into an EMPTY database with Neo4j's offline importer.

`neo4j-admin database import` writes the store files directly, with no transactions, so it is
much faster than any online load; the price is that the database must be empty and stopped.
This module builds the same graph the online graph writer would (subscribers, identifiers, their
links with first/last seen and counts, hub flags, one `IngestedEvent` per event), writes it as
the importer's CSV files, stops the local stack's Neo4j, imports, starts it again and applies the
schema. Transactions and labels are then loaded online (`ringwatch backfill transactions ...`):
the claims already in the graph keep everything exact.

Only the local stack is supported: the importer needs the server's own store directory.
"""

from __future__ import annotations

import csv
import os
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ringwatch.config import Neo4jConfig, StackConfig
from ringwatch.graph.db import Driver, Neo4jRunner, create_driver
from ringwatch.graph.schema import migrate
from ringwatch.graph.writer import IDENTIFIER_SCHEMA
from ringwatch.ingest.backfill import reject_line
from ringwatch.ingest.events import EventFamily, parse_event
from ringwatch.ingest.exceptions import IngestError
from ringwatch.ingest.formats import iter_records
from ringwatch.ingest.normalize import IdentifierKind
from ringwatch.ingest.prepare import PreparedIdentity, Preparer
from ringwatch.stack import manager
from ringwatch.stack.servers import Neo4jServer
from ringwatch.stack.toolchain import find_java


def _iso(ts: datetime) -> str:
    # Millisecond precision, as the online writer stores it (epoch milliseconds).
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class _Subscriber:
    first_seen: datetime
    last_seen: datetime
    created_at: datetime | None = None
    closed_at: datetime | None = None
    status: str = "active"
    status_at: datetime | None = None
    name: str | None = None
    name_at: datetime | None = None

    def apply(self, event: PreparedIdentity) -> None:
        """The online writer's rules: min/max, earliest registration, newest status and name."""
        ts = event.ts
        self.first_seen = min(self.first_seen, ts)
        self.last_seen = max(self.last_seen, ts)
        if event.type == "subscriber.registered" and (
            self.created_at is None or ts < self.created_at
        ):
            self.created_at = ts
        if event.type == "subscriber.closed" and (self.closed_at is None or ts < self.closed_at):
            self.closed_at = ts
        if event.status is not None and (self.status_at is None or ts >= self.status_at):
            self.status, self.status_at = event.status, ts
        if event.name is not None and (self.name_at is None or ts >= self.name_at):
            self.name, self.name_at = event.name, ts


@dataclass
class _Identifier:
    first_seen: datetime
    placeholder: bool
    subscribers: set[str] = field(default_factory=set)


@dataclass
class _Link:
    first_seen: datetime
    last_seen: datetime
    count: int = 0


@dataclass
class ImportSummary:
    rows_read: int = 0
    events: int = 0
    duplicates: int = 0
    rejected: int = 0
    subscribers: int = 0
    identifiers: int = 0
    links: int = 0
    seconds: float = 0.0
    import_seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


@dataclass
class _Graph:
    hub_cap: int
    events: dict[str, PreparedIdentity] = field(default_factory=dict)
    subscribers: dict[str, _Subscriber] = field(default_factory=dict)
    identifiers: dict[tuple[IdentifierKind, str], _Identifier] = field(default_factory=dict)
    links: dict[tuple[IdentifierKind, str, str], _Link] = field(default_factory=dict)

    def add(self, event: PreparedIdentity) -> bool:
        if event.event_id in self.events:
            return False  # the same event twice counts once, as online
        self.events[event.event_id] = event
        subscriber = self.subscribers.get(event.subscriber_id)
        if subscriber is None:
            subscriber = self.subscribers[event.subscriber_id] = _Subscriber(event.ts, event.ts)
        subscriber.apply(event)
        for link in event.links:
            identifier = self.identifiers.get((link.kind, link.id))
            if identifier is None:
                identifier = self.identifiers[(link.kind, link.id)] = _Identifier(
                    event.ts, link.placeholder
                )
            identifier.first_seen = min(identifier.first_seen, event.ts)
            identifier.subscribers.add(event.subscriber_id)
            edge = self.links.get((link.kind, event.subscriber_id, link.id))
            if edge is None:
                edge = self.links[(link.kind, event.subscriber_id, link.id)] = _Link(
                    event.ts, event.ts
                )
            edge.first_seen = min(edge.first_seen, event.ts)
            edge.last_seen = max(edge.last_seen, event.ts)
            edge.count += 1
        return True

    def write_csv(self, directory: Path) -> list[str]:
        """The importer's files; returns its --nodes/--relationships arguments."""
        directory.mkdir(parents=True, exist_ok=True)
        args: list[str] = []
        now = _iso(datetime.now(UTC))

        def write(name: str, header: Sequence[str], rows: Iterable[Sequence[object]]) -> Path:
            path = directory / name
            with path.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(header)
                writer.writerows(rows)
            return path

        def opt(value: datetime | None) -> str:
            return _iso(value) if value is not None else ""

        subscribers = write(
            "subscribers.csv",
            [
                "id:ID(Subscriber)",
                "first_seen:datetime",
                "last_seen:datetime",
                "created_at:datetime",
                "closed_at:datetime",
                "status",
                "status_at:datetime",
                "name",
                "name_at:datetime",
            ],
            (
                [
                    sid,
                    _iso(s.first_seen),
                    _iso(s.last_seen),
                    opt(s.created_at),
                    opt(s.closed_at),
                    s.status,
                    opt(s.status_at),
                    s.name or "",
                    opt(s.name_at),
                ]
                for sid, s in self.subscribers.items()
            ),
        )
        args.append(f"--nodes=Subscriber={subscribers}")
        events = write(
            "ingested_events.csv",
            ["id:ID(IngestedEvent)", "type", "ts:datetime", "subscriber_id"],
            ([e.event_id, e.type, _iso(e.ts), e.subscriber_id] for e in self.events.values()),
        )
        args.append(f"--nodes=IngestedEvent={events}")
        for kind, schema in IDENTIFIER_SCHEMA.items():
            label = schema.label
            rows = []
            for (ident_kind, ident_id), ident in self.identifiers.items():
                if ident_kind is not kind:
                    continue
                count = len(ident.subscribers)
                hub = ident.placeholder or count > self.hub_cap
                rows.append(
                    [
                        ident_id,
                        _iso(ident.first_seen),
                        count,
                        str(hub).lower(),
                        now if hub and not ident.placeholder else "",
                    ]
                )
            nodes = write(
                f"{label}.csv",
                [
                    f"id:ID({label})",
                    "first_seen:datetime",
                    "subscribers:long",
                    "hub:boolean",
                    "hub_since:datetime",
                ],
                rows,
            )
            args.append(f"--nodes={label}={nodes}")
            relationships = write(
                f"{schema.relationship}.csv",
                [
                    ":START_ID(Subscriber)",
                    f":END_ID({label})",
                    "first_seen:datetime",
                    "last_seen:datetime",
                    "count:long",
                ],
                (
                    [sid, ident_id, _iso(e.first_seen), _iso(e.last_seen), e.count]
                    for (link_kind, sid, ident_id), e in self.links.items()
                    if link_kind is kind
                ),
            )
            args.append(f"--relationships={schema.relationship}={relationships}")
        return args


def offline_import_identities(
    paths: Sequence[str | Path],
    *,
    stack: StackConfig,
    preparer: Preparer,
    hub_cap: int,
    work_dir: Path,
    rejects_path: Path,
) -> ImportSummary:
    """Import identity files into the local stack's empty Neo4j; see the module docstring."""
    started = time.perf_counter()
    server = Neo4jServer(stack)
    summary = ImportSummary()
    with create_driver_for(stack) as driver:
        runner = Neo4jRunner(driver)
        if runner.read("MATCH (n) RETURN count(n) > 0 AS any")[0]["any"]:
            raise IngestError(
                "the offline import needs an empty database; "
                "use the online backfill (without --offline) to add to a graph"
            )

    graph = _Graph(hub_cap)
    rejects_path.parent.mkdir(parents=True, exist_ok=True)
    with rejects_path.open("wb") as rejects:
        for path in paths:
            for record in iter_records(path, EventFamily.IDENTITY):
                summary.rows_read += 1
                if record.raw is None:
                    rejects.write(reject_line(record.file, record.line, str(record.error), "read"))
                    summary.rejected += 1
                    continue
                try:
                    event = parse_event(EventFamily.IDENTITY, record.raw)
                except IngestError as exc:
                    rejects.write(reject_line(record.file, record.line, str(exc), "parse"))
                    summary.rejected += 1
                    continue
                try:
                    prepared = preparer.prepare(event)
                except IngestError as exc:
                    rejects.write(reject_line(record.file, record.line, str(exc), "normalise"))
                    summary.rejected += 1
                    continue
                assert isinstance(prepared, PreparedIdentity)
                if graph.add(prepared):
                    summary.events += 1
                else:
                    summary.duplicates += 1
    import_args = graph.write_csv(work_dir)
    summary.subscribers = len(graph.subscribers)
    summary.identifiers = len(graph.identifiers)
    summary.links = len(graph.links)

    imported = time.perf_counter()
    server.process.stop()
    try:
        _run_importer(server, import_args, work_dir)
    finally:
        manager.up(stack)  # start Neo4j again, imported or not (Kafka is left as it was)
    summary.import_seconds = time.perf_counter() - imported
    with create_driver_for(stack) as driver:
        migrate(Neo4jRunner(driver))
    summary.seconds = time.perf_counter() - started
    return summary


def create_driver_for(stack: StackConfig) -> Driver:
    return create_driver(Neo4jConfig(uri=stack.neo4j_bolt_uri))


def _run_importer(server: Neo4jServer, args: list[str], work_dir: Path) -> None:
    java, _ = find_java()
    log = server.log_dir / "import.log"
    cmd = [
        str(java),
        "-cp",
        f"{server.lib_dir.resolve()}/*",
        "org.neo4j.cli.AdminTool",
        "database",
        "import",
        "full",
        *args,
        "--overwrite-destination=true",
        # An absent optional value is an empty cell: no property, as online.
        "--ignore-empty-strings=true",
        f"--report-file={work_dir / 'import.report'}",
        "neo4j",
    ]
    env = {
        **os.environ,
        "NEO4J_HOME": str(server.home.resolve()),
        "NEO4J_CONF": str(server.conf_dir.resolve()),
    }
    with log.open("w") as handle:
        proc = subprocess.run(cmd, env=env, stdout=handle, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        raise IngestError(f"neo4j-admin import failed (exit {proc.returncode}); see {log}")
