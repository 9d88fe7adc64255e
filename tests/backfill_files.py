"""Event files for backfill tests: valid events in every format, with bad rows placed in between."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ringwatch.ingest.events import AnyEvent, EventFamily, parse_event
from ringwatch.ingest.formats import COLUMNS, event_to_row, parquet_schema, write_events
from tests.factories import identity, label, transaction

# Values that must never show up in a rejects file.
BAD_EMAIL = "no-at-sign.example.com"
BAD_DATE = "yesterday-ish"


def imei(n: int) -> str:
    """A valid 15-digit IMEI (Luhn check digit) for a small number."""
    body = f"35{n:012d}"
    total = 0
    for index, char in enumerate(body):
        digit = int(char)
        if index % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return body + str((10 - total % 10) % 10)


def identity_payloads(count: int, *, start: int = 0) -> list[dict[str, Any]]:
    """Registrations with five kinds of identifier; households of three share an address and
    a payment card, and every fifth subscriber is seen again later on a second device."""
    payloads: list[dict[str, Any]] = []
    for n in range(start, start + count):
        household = n // 3
        payloads.append(
            identity(
                f"reg-{n}",
                f"sub-{n}",
                hours=n * 0.1,
                devices=[imei(n)],
                phones=[f"+1201555{n % 10_000:04d}"],
                emails=[f"User.{n}+news@Example.com"],
                addresses=[f"{household} Main Street, Springfield"],
                payment_methods=[f"tok_household_{household:06d}"],
                ips=[f"10.0.{n // 250}.{n % 250 + 1}"],
            )
        )
        if n % 5 == 0:
            payloads.append(
                identity(
                    f"seen-{n}",
                    f"sub-{n}",
                    type="device.seen",
                    hours=n * 0.1 + 1,
                    devices=[imei(n + 100_000)],
                )
            )
    return payloads


def transaction_payloads(count: int) -> list[dict[str, Any]]:
    kinds = ("payment", "call", "sms", "topup", "data_usage", "transfer")
    return [
        transaction(f"tx-{n}", f"sub-{n % 7}", type=kinds[n % len(kinds)], hours=n * 0.5)
        for n in range(count)
    ]


def label_payloads(count: int) -> list[dict[str, Any]]:
    return [
        label(f"lab-{n}", f"sub-{n}", "fraud" if n % 2 else "legitimate", hours=n)
        for n in range(count)
    ]


def parse_all(family: EventFamily, payloads: Sequence[Mapping[str, Any]]) -> list[AnyEvent]:
    return [parse_event(family, json.dumps(payload).encode()) for payload in payloads]


def write_file(
    path: Path,
    family: EventFamily,
    events: Sequence[AnyEvent],
    bad: Mapping[int, str | Mapping[str, Any]] | None = None,
) -> dict[str, int]:
    """Write ``events`` to ``path`` (format from the extension) with ``bad`` rows inserted.

    ``bad`` maps an index in the final sequence of data rows to a raw text line (CSV, JSONL) or
    a flat row (Parquet). Returns each event id's line number, as a person sees it.
    """
    bad = dict(bad or {})
    if path.suffix == ".parquet":
        return _write_parquet(path, family, events, bad)
    staging = path.with_name("staging-" + path.name)
    write_events(staging, family, events)
    lines = staging.read_text(encoding="utf-8").splitlines()
    staging.unlink()
    header = lines[:1] if path.suffix == ".csv" else []
    good = iter(lines[len(header) :])
    ids = iter(event.event_id for event in events)
    body: list[str] = []
    where: dict[str, int] = {}
    first_line = len(header) + 1
    for index in range(len(events) + len(bad)):
        if index in bad:
            row = bad[index]
            assert isinstance(row, str)
            body.append(row)
        else:
            body.append(next(good))
            where[next(ids)] = first_line + index
    path.write_text("\n".join([*header, *body]) + "\n", encoding="utf-8")
    return where


def _write_parquet(
    path: Path,
    family: EventFamily,
    events: Sequence[AnyEvent],
    bad: Mapping[int, str | Mapping[str, Any]],
) -> dict[str, int]:
    columns = COLUMNS[family]
    good = iter(events)
    rows: list[Mapping[str, Any]] = []
    where: dict[str, int] = {}
    for index in range(len(events) + len(bad)):
        if index in bad:
            row = bad[index]
            assert not isinstance(row, str)
            rows.append({column: row.get(column) for column in columns})
        else:
            event = next(good)
            rows.append(event_to_row(event))
            where[event.event_id] = index + 1
    table = pa.Table.from_pylist([dict(row) for row in rows], schema=parquet_schema(family))
    # Small row groups, so resuming inside the file skips whole groups too.
    pq.write_table(table, path, row_group_size=16)
    return where


def bad_identity_rows(fmt: str) -> dict[str, str | dict[str, Any]]:
    """One bad identity row per stage a format can produce, keyed by stage."""
    ok_time = "2026-11-01T12:00:00+00:00"
    if fmt == "jsonl":
        return {
            "read": '{"event_id": "broken", ',
            "parse": json.dumps(
                identity("bad-date", "sub-x") | {"occurred_at": BAD_DATE}, sort_keys=True
            ),
            "normalise": json.dumps(identity("bad-email", "sub-x", emails=[BAD_EMAIL])),
        }
    if fmt == "csv":
        width = len(COLUMNS[EventFamily.IDENTITY])

        def csv_row(**cells: str) -> str:
            return ",".join(cells.get(column, "") for column in COLUMNS[EventFamily.IDENTITY])

        assert width > 3
        return {
            "read": "only,three,cells",
            "parse": csv_row(
                event_id="bad-date",
                schema_version="1",
                type="subscriber.registered",
                occurred_at=BAD_DATE,
                subscriber_id="sub-x",
            ),
            "normalise": csv_row(
                event_id="bad-email",
                schema_version="1",
                type="subscriber.registered",
                occurred_at=ok_time,
                subscriber_id="sub-x",
                emails=BAD_EMAIL,
            ),
        }
    return {
        "parse": {
            "event_id": "bad-date",
            "schema_version": 1,
            "type": "subscriber.registered",
            "occurred_at": BAD_DATE,
            "subscriber_id": "sub-x",
        },
        "normalise": {
            "event_id": "bad-email",
            "schema_version": 1,
            "type": "subscriber.registered",
            "occurred_at": ok_time,
            "subscriber_id": "sub-x",
            "emails": BAD_EMAIL,
        },
    }


def read_rejects(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
