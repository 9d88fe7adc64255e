"""Loading history into an EMPTY database with Neo4j's offline importer.

`neo4j-admin database import` writes the store files directly, with no transactions, so it is
much faster than any online load; the price is that the database must be empty and stopped.
This module builds the same graph the online graph writer would from identity and (optionally)
transaction files: subscribers, identifiers and their links with first/last seen and counts, hub
flags, one `IngestedEvent` per identity event, transactions with their counterparties, devices
and IPs, and the daily usage buckets. It writes them as the importer's CSV files, stops the local
stack's Neo4j, imports, starts it again and applies the schema. Labels, and anything later, are
then loaded online (`ringwatch backfill labels ...`): the claims already in the graph keep
everything exact.

Rows are streamed to the CSV files as they are read; what must be aggregated before it can be
written (links, identifiers, usage buckets) is kept, the buckets in compact arrays.

Only the local stack is supported: the importer needs the server's own store directory.
"""

from __future__ import annotations

import csv
import os
import subprocess
import time
from array import array
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ringwatch.config import Neo4jConfig, StackConfig
from ringwatch.graph.db import Driver, Neo4jRunner, create_driver
from ringwatch.graph.schema import migrate
from ringwatch.graph.writer import IDENTIFIER_SCHEMA
from ringwatch.ingest.backfill import reject_line
from ringwatch.ingest.events import EventFamily, parse_event
from ringwatch.ingest.exceptions import IngestError
from ringwatch.ingest.formats import iter_records
from ringwatch.ingest.normalize import IdentifierKind
from ringwatch.ingest.prepare import (
    IdentifierLink,
    PreparedIdentity,
    PreparedTransaction,
    Preparer,
    usage_day_id,
)
from ringwatch.stack import manager
from ringwatch.stack.servers import Neo4jServer
from ringwatch.stack.toolchain import find_java


def _iso(ts: datetime) -> str:
    # Millisecond precision, as the online writer stores it (epoch milliseconds).
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _opt(value: datetime | None) -> str:
    return _iso(value) if value is not None else ""


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

    def seen(self, ts: datetime) -> None:
        self.first_seen = min(self.first_seen, ts)
        self.last_seen = max(self.last_seen, ts)

    def apply(self, event: PreparedIdentity) -> None:
        """The online writer's rules: min/max, earliest registration, newest status and name."""
        ts = event.ts
        self.seen(ts)
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
    transactions: int = 0
    usage_buckets: int = 0
    seconds: float = 0.0
    import_seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


class _CsvFiles:
    """The importer's input files, each opened once and written row by row."""

    def __init__(self, directory: Path, stack: ExitStack) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._stack = stack
        self._writers: dict[str, Any] = {}
        self.args: list[str] = []

    def open(self, name: str, header: Sequence[str], arg: str) -> Any:
        """A csv writer for `name`; `arg` is its importer option, e.g. `--nodes=Subscriber`."""
        path = self.directory / name
        handle = self._stack.enter_context(path.open("w", newline="", encoding="utf-8"))
        writer = csv.writer(handle)
        writer.writerow(header)
        self._writers[name] = writer
        self.args.append(f"{arg}={path}")
        return writer

    def write(
        self, name: str, header: Sequence[str], arg: str, rows: Iterable[Sequence[object]]
    ) -> None:
        self.open(name, header, arg).writerows(rows)


_TRANSACTION_HEADER = (
    "id:ID(Transaction)",
    "event_id",
    "ts:datetime",
    "kind",
    "amount:double",
    "currency",
    "data_mb:double",
    "duration_s:double",
    "direction",
    "lat:double",
    "lon:double",
    "country",
    "subscriber_id",
)

# Counterparty kind -> the label of the node a transaction goes TO (as the online writer).
_COUNTERPARTY_LABELS = {"merchant": "Merchant", "number": "Phone", "subscriber": "Subscriber"}

# Bits of a transaction's call/SMS flags in the bucket arrays.
_CALL, _SHORT_CALL, _NIGHT_CALL, _SMS = 1, 2, 4, 8


def _cell(value: object) -> object:
    return "" if value is None else value


class _Transactions:
    """Transactions streamed to CSV as they come; day buckets summed at the end with numpy.

    Per transaction only its id (to count a repeated one once) and, for its usage day, a key and
    five numbers (about 45 bytes) are kept: ten million transactions took 2.7 GB in all.
    """

    def __init__(self, files: _CsvFiles) -> None:
        self.seen: set[str] = set()
        self.merchants: set[str] = set()
        self.numbers: set[str] = set()
        self.counterparty_subscribers: set[str] = set()
        self._nodes = files.open("transactions.csv", _TRANSACTION_HEADER, "--nodes=Transaction")
        self._made = files.open(
            "MADE.csv", (":START_ID(Subscriber)", ":END_ID(Transaction)"), "--relationships=MADE"
        )
        self._to = {
            kind: files.open(
                f"TO_{label}.csv",
                (":START_ID(Transaction)", f":END_ID({label})"),
                "--relationships=TO",
            )
            for kind, label in _COUNTERPARTY_LABELS.items()
        }
        self._device = files.open(
            "ON_DEVICE.csv",
            (":START_ID(Transaction)", ":END_ID(Device)"),
            "--relationships=ON_DEVICE",
        )
        self._ip = files.open(
            "FROM_IP.csv", (":START_ID(Transaction)", ":END_ID(IP)"), "--relationships=FROM_IP"
        )
        self.buckets = 0
        self._subscriber_index: dict[str, int] = {}
        self._subscriber_ids: list[str] = []
        self._keys = array("q")
        self._spend = array("d")
        self._topup = array("d")
        self._data_mb = array("d")
        self._call_s = array("d")
        self._flags = array("B")

    def add(self, t: PreparedTransaction) -> bool:
        if t.transaction_id in self.seen:
            return False  # the same transaction twice counts once, as online
        self.seen.add(t.transaction_id)
        self._nodes.writerow(
            [
                t.transaction_id,
                t.event_id,
                _iso(t.ts),
                t.kind,
                _cell(t.amount),
                _cell(t.currency),
                _cell(t.data_mb),
                _cell(t.duration_s),
                _cell(t.direction),
                _cell(t.lat),
                _cell(t.lon),
                _cell(t.country),
                t.subscriber_id,
            ]
        )
        self._made.writerow([t.subscriber_id, t.transaction_id])
        if t.counterparty_kind in self._to and t.counterparty_id is not None:
            self._to[t.counterparty_kind].writerow([t.transaction_id, t.counterparty_id])
            if t.counterparty_kind == "merchant":
                self.merchants.add(t.counterparty_id)
            elif t.counterparty_kind == "number":
                self.numbers.add(t.counterparty_id)
            else:
                self.counterparty_subscribers.add(t.counterparty_id)
        for link in t.links:
            if link.kind is IdentifierKind.DEVICE:
                self._device.writerow([t.transaction_id, link.id])
            elif link.kind is IdentifierKind.IP:
                self._ip.writerow([t.transaction_id, link.id])
        self._add_to_bucket(t)
        return True

    def _add_to_bucket(self, t: PreparedTransaction) -> None:
        index = self._subscriber_index.get(t.subscriber_id)
        if index is None:
            index = self._subscriber_index[t.subscriber_id] = len(self._subscriber_ids)
            self._subscriber_ids.append(t.subscriber_id)
        # Day ordinals stay far below 2**22: subscriber and day fit one 64-bit key.
        self._keys.append(index << 22 | t.ts.toordinal())
        self._spend.append(t.spend)
        self._topup.append(t.topup)
        self._data_mb.append(t.data_mb or 0.0)
        self._call_s.append(t.call_s)
        self._flags.append(
            (_CALL if t.is_call else 0)
            | (_SHORT_CALL if t.is_short_call else 0)
            | (_NIGHT_CALL if t.is_night_call else 0)
            | (_SMS if t.kind == "sms" else 0)
        )

    def bucket_rows(self) -> Iterator[list[object]]:
        """One row per subscriber and day, the sums the online writer's buckets hold."""
        if not self._keys:
            return
        keys, bucket_of = np.unique(np.frombuffer(self._keys, dtype=np.int64), return_inverse=True)
        n = self.buckets = len(keys)
        flags = np.frombuffer(self._flags, dtype=np.uint8)

        def total(values: array[float]) -> list[float]:
            summed = np.bincount(
                bucket_of, weights=np.frombuffer(values, dtype=np.float64), minlength=n
            )
            return [float(v) for v in summed]

        def count(bit: int | None = None) -> list[int]:
            selected = bucket_of if bit is None else bucket_of[(flags & bit) != 0]
            return [int(v) for v in np.bincount(selected, minlength=n)]

        columns = (
            count(),
            total(self._spend),
            total(self._topup),
            total(self._data_mb),
            count(_CALL),
            count(_SHORT_CALL),
            count(_NIGHT_CALL),
            total(self._call_s),
            count(_SMS),
        )
        for position, key in enumerate(keys.tolist()):
            subscriber_id = self._subscriber_ids[key >> 22]
            start = datetime.fromordinal(key & ((1 << 22) - 1)).replace(tzinfo=UTC)
            yield [
                usage_day_id(subscriber_id, start),
                subscriber_id,
                "day",
                _iso(start),
                *(column[position] for column in columns),
            ]


_BUCKET_HEADER = (
    "id:ID(UsageBucket)",
    "subscriber_id",
    "grain",
    "start:datetime",
    "count:long",
    "spend:double",
    "topup:double",
    "data_mb:double",
    "calls:long",
    "short_calls:long",
    "night_calls:long",
    "call_s:double",
    "sms:long",
)


class _Graph:
    """Subscribers, identifiers and links, aggregated as the online writer's MERGEs would."""

    def __init__(self, hub_cap: int, files: _CsvFiles) -> None:
        self.hub_cap = hub_cap
        self.files = files
        self.event_ids: set[str] = set()
        self.subscribers: dict[str, _Subscriber] = {}
        self.identifiers: dict[tuple[IdentifierKind, str], _Identifier] = {}
        self.links: dict[tuple[IdentifierKind, str, str], _Link] = {}
        self._events = files.open(
            "ingested_events.csv",
            ("id:ID(IngestedEvent)", "type", "ts:datetime", "subscriber_id"),
            "--nodes=IngestedEvent",
        )

    def add_identity(self, event: PreparedIdentity) -> bool:
        if event.event_id in self.event_ids:
            return False  # the same event twice counts once, as online
        self.event_ids.add(event.event_id)
        self._events.writerow([event.event_id, event.type, _iso(event.ts), event.subscriber_id])
        self._subscriber(event.subscriber_id, event.ts).apply(event)
        self._link(event.subscriber_id, event.ts, event.links)
        return True

    def add_transaction(self, t: PreparedTransaction) -> None:
        """A stored transaction's part of the identity graph: its subscriber, device and IP."""
        self._subscriber(t.subscriber_id, t.ts).seen(t.ts)
        self._link(t.subscriber_id, t.ts, t.links)

    def _subscriber(self, subscriber_id: str, ts: datetime) -> _Subscriber:
        subscriber = self.subscribers.get(subscriber_id)
        if subscriber is None:
            subscriber = self.subscribers[subscriber_id] = _Subscriber(ts, ts)
        return subscriber

    def _link(self, subscriber_id: str, ts: datetime, links: Sequence[IdentifierLink]) -> None:
        for link in links:
            identifier = self.identifiers.get((link.kind, link.id))
            if identifier is None:
                identifier = self.identifiers[(link.kind, link.id)] = _Identifier(
                    ts, link.placeholder
                )
            identifier.first_seen = min(identifier.first_seen, ts)
            identifier.subscribers.add(subscriber_id)
            edge = self.links.get((link.kind, subscriber_id, link.id))
            if edge is None:
                edge = self.links[(link.kind, subscriber_id, link.id)] = _Link(ts, ts)
            edge.first_seen = min(edge.first_seen, ts)
            edge.last_seen = max(edge.last_seen, ts)
            edge.count += 1

    def write_csv(self, transactions: _Transactions | None) -> None:
        """The aggregated nodes and relationships (the streamed ones are already written)."""
        files = self.files
        now = _iso(datetime.now(UTC))
        subscriber_rows: Iterator[Sequence[object]] = (
            [
                sid,
                _iso(s.first_seen),
                _iso(s.last_seen),
                _opt(s.created_at),
                _opt(s.closed_at),
                s.status,
                _opt(s.status_at),
                s.name or "",
                _opt(s.name_at),
            ]
            for sid, s in self.subscribers.items()
        )
        # A counterparty never seen as a subscriber itself is created bare, as online.
        counterparties: Iterable[str] = (
            sorted(transactions.counterparty_subscribers - self.subscribers.keys())
            if transactions
            else ()
        )
        files.write(
            "subscribers.csv",
            (
                "id:ID(Subscriber)",
                "first_seen:datetime",
                "last_seen:datetime",
                "created_at:datetime",
                "closed_at:datetime",
                "status",
                "status_at:datetime",
                "name",
                "name_at:datetime",
            ),
            "--nodes=Subscriber",
            [
                *subscriber_rows,
                *([sid, "", "", "", "", "active", "", "", ""] for sid in counterparties),
            ],
        )
        for kind, schema in IDENTIFIER_SCHEMA.items():
            label = schema.label
            rows: list[list[object]] = []
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
            if kind is IdentifierKind.PHONE and transactions:
                # Numbers only ever called or texted: a Phone no subscriber is linked to.
                known = {
                    ident_id for ident_kind, ident_id in self.identifiers if ident_kind is kind
                }
                rows.extend([n, "", 0, "false", ""] for n in sorted(transactions.numbers - known))
            files.write(
                f"{label}.csv",
                (
                    f"id:ID({label})",
                    "first_seen:datetime",
                    "subscribers:long",
                    "hub:boolean",
                    "hub_since:datetime",
                ),
                f"--nodes={label}",
                rows,
            )
            files.write(
                f"{schema.relationship}.csv",
                (
                    ":START_ID(Subscriber)",
                    f":END_ID({label})",
                    "first_seen:datetime",
                    "last_seen:datetime",
                    "count:long",
                ),
                f"--relationships={schema.relationship}",
                (
                    [sid, ident_id, _iso(e.first_seen), _iso(e.last_seen), e.count]
                    for (link_kind, sid, ident_id), e in self.links.items()
                    if link_kind is kind
                ),
            )
        if transactions is None:
            return
        files.write(
            "merchants.csv",
            ("id:ID(Merchant)",),
            "--nodes=Merchant",
            ([m] for m in sorted(transactions.merchants)),
        )
        buckets = files.open("usage_buckets.csv", _BUCKET_HEADER, "--nodes=UsageBucket")
        has_usage = files.open(
            "HAS_USAGE.csv",
            (":START_ID(Subscriber)", ":END_ID(UsageBucket)"),
            "--relationships=HAS_USAGE",
        )
        for row in transactions.bucket_rows():
            buckets.writerow(row)
            has_usage.writerow([row[1], row[0]])


def offline_import(
    identity_paths: Sequence[str | Path],
    *,
    transaction_paths: Sequence[str | Path] = (),
    stack: StackConfig,
    preparer: Preparer,
    hub_cap: int,
    work_dir: Path,
    rejects_path: Path,
) -> ImportSummary:
    """Import identity (and transaction) files into the local stack's empty Neo4j.

    Bad rows are written to `rejects_path` with their file, line and reason, and the rest is
    imported; see the module docstring for what is built.
    """
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

    rejects_path.parent.mkdir(parents=True, exist_ok=True)
    with ExitStack() as open_files, rejects_path.open("wb") as rejects:
        files = _CsvFiles(work_dir, open_files)
        graph = _Graph(hub_cap, files)
        transactions = _Transactions(files) if transaction_paths else None
        families = [(EventFamily.IDENTITY, p) for p in identity_paths] + [
            (EventFamily.TRANSACTIONS, p) for p in transaction_paths
        ]
        for family, path in families:
            for record in iter_records(path, family):
                summary.rows_read += 1
                if record.raw is None:
                    rejects.write(reject_line(record.file, record.line, str(record.error), "read"))
                    summary.rejected += 1
                    continue
                try:
                    event = parse_event(family, record.raw)
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
                if isinstance(prepared, PreparedIdentity):
                    added = graph.add_identity(prepared)
                else:
                    assert isinstance(prepared, PreparedTransaction) and transactions is not None
                    added = transactions.add(prepared)
                    if added:
                        graph.add_transaction(prepared)
                        summary.transactions += 1
                if added:
                    summary.events += 1
                else:
                    summary.duplicates += 1
        graph.write_csv(transactions)
        import_args = files.args
    summary.subscribers = len(graph.subscribers)
    summary.identifiers = len(graph.identifiers)
    summary.links = len(graph.links)
    summary.usage_buckets = transactions.buckets if transactions else 0

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
