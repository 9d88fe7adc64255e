"""Bulk event files: JSONL, CSV and Parquet, one event family per file.

The simulator writes these files and the backfill command reads them.

- **JSONL** (``.jsonl`` / ``.ndjson``): one event per line, exactly the Kafka message value
  (``model.model_dump(mode="json", exclude_none=True)``). Any value the models accept can be
  written, line breaks inside strings included (JSON escapes them).
- **CSV** (``.csv``) and **Parquet** (``.parquet``): one flat row per event with the columns in
  `COLUMNS`. Nested objects become prefixed columns (``counterparty_kind``, ``lat``, ...) and
  identifier lists are joined with ``|``, so a ``|`` inside an identifier value cannot be written
  to these two formats (use JSONL for such data). An empty cell means "absent".

CSV is UTF-8 with a header row, written with CRLF line ends as RFC 4180 says (LF and a byte-order
mark are accepted when reading); columns may come in any order and optional ones may be left out.

Parquet files written here keep ``schema_version`` as int64, ``data_mb``, ``duration_s``, ``lat``
and ``lon`` as float64, and every other column, ``amount`` and ``occurred_at`` included, as UTF-8
strings: amounts stay exact decimals and timestamps keep the offset they were written with. When
reading, Parquet files from other tools may also use numeric, decimal, timestamp, binary or
list-of-string columns; NaN in a numeric column counts as empty, as dataframe tools write it.

`iter_records` streams a file (CSV line by line, Parquet by record batches) and yields one
`SourceRecord` per row with the line number a person sees in the file, so rejects can be reported
precisely and a resumed run can start where the last one stopped.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, Final, Literal, TypeAlias, get_args

import pyarrow as pa
import pyarrow.parquet as pq

from ringwatch.ingest.events import (
    MAX_EVENT_BYTES,
    AnyEvent,
    Call,
    DataUsage,
    DeviceSeen,
    EventFamily,
    LabelEvent,
    Payment,
    SimActivated,
    Sms,
    SubscriberClosed,
    SubscriberRegistered,
    SubscriberUpdated,
    TopUp,
    Transfer,
)
from ringwatch.ingest.exceptions import IngestError

FileFormat: TypeAlias = Literal["csv", "jsonl", "parquet"]
Cell: TypeAlias = str | float | int | None
Row: TypeAlias = dict[str, Cell]

FORMATS: Final[tuple[FileFormat, ...]] = get_args(FileFormat)
EXTENSIONS: Final[Mapping[FileFormat, str]] = MappingProxyType(
    {"csv": ".csv", "jsonl": ".jsonl", "parquet": ".parquet"}
)
_SUFFIXES: Final[Mapping[str, FileFormat]] = MappingProxyType(
    {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
)

MULTI_VALUE_SEPARATOR: Final = "|"
IDENTIFIER_KINDS: Final = ("devices", "phones", "emails", "addresses", "payment_methods", "ips")

COLUMNS: Final[Mapping[EventFamily, tuple[str, ...]]] = MappingProxyType(
    {
        EventFamily.IDENTITY: (
            "event_id",
            "schema_version",
            "type",
            "occurred_at",
            "subscriber_id",
            "source",
            "name",
            "status",
            "reason",
            *IDENTIFIER_KINDS,
        ),
        EventFamily.TRANSACTIONS: (
            "event_id",
            "schema_version",
            "type",
            "occurred_at",
            "subscriber_id",
            "source",
            "transaction_id",
            "amount",
            "currency",
            "data_mb",
            "duration_s",
            "direction",
            "counterparty_kind",
            "counterparty_id",
            "device",
            "ip",
            "lat",
            "lon",
            "country",
        ),
        EventFamily.LABELS: (
            "event_id",
            "schema_version",
            "occurred_at",
            "subscriber_id",
            "source",
            "label",
            "analyst",
            "reason",
            "ring_id",
            "transaction_id",
        ),
    }
)
# Columns every event of the family needs: a file without them is refused as a whole instead of
# rejecting each of its rows for the same reason.
REQUIRED_COLUMNS: Final[Mapping[EventFamily, frozenset[str]]] = MappingProxyType(
    {
        EventFamily.IDENTITY: frozenset(
            {"event_id", "schema_version", "type", "occurred_at", "subscriber_id"}
        ),
        EventFamily.TRANSACTIONS: frozenset(
            {"event_id", "schema_version", "type", "occurred_at", "subscriber_id", "transaction_id"}
        ),
        EventFamily.LABELS: frozenset(
            {"event_id", "schema_version", "occurred_at", "subscriber_id", "source", "label"}
        ),
    }
)
_INT_COLUMNS: Final = frozenset({"schema_version"})
_FLOAT_COLUMNS: Final = frozenset({"data_mb", "duration_s", "lat", "lon"})
_DECIMAL_COLUMNS: Final = frozenset({"amount"})
_LIST_COLUMNS: Final = frozenset(IDENTIFIER_KINDS)

_IDENTITY_MODELS: Final = (
    SubscriberRegistered,
    SubscriberUpdated,
    SubscriberClosed,
    SimActivated,
    DeviceSeen,
)
_TRANSACTION_MODELS: Final = (DataUsage, Call, Sms, TopUp, Payment, Transfer)
_FAMILY_OF: Final[Mapping[type[Any], EventFamily]] = MappingProxyType(
    {
        **dict.fromkeys(_IDENTITY_MODELS, EventFamily.IDENTITY),
        **dict.fromkeys(_TRANSACTION_MODELS, EventFamily.TRANSACTIONS),
        LabelEvent: EventFamily.LABELS,
    }
)

PARQUET_BATCH_ROWS: Final = 65_536
# A JSONL line may end in CRLF; anything longer than an event may be is refused unread.
_MAX_LINE_BYTES: Final = MAX_EVENT_BYTES + 2
_MAX_REPORTED_NAME: Final = 64
# ASCII only: Python's int() and float() also take "1_000" and non-Latin digits.
_INTEGER: Final = re.compile(r"[+-]?[0-9]+")
_DECIMAL_NUMBER: Final = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One row or line of an event file.

    ``raw`` is the JSON message to hand to `ringwatch.ingest.events.parse_event`; ``payload`` is
    the same message as a dict. When the row cannot be read at all, both are None and ``error``
    says why.
    """

    file: str
    line: int
    raw: bytes | None
    payload: dict[str, Any] | None
    error: str | None = None


# ------------------------------------------------------------------------------------ helpers


def family_of(event: AnyEvent) -> EventFamily:
    """The topic family an event model belongs to."""
    try:
        return _FAMILY_OF[type(event)]
    except KeyError:
        raise IngestError(f"not an event model: {type(event).__name__}") from None


def detect_format(path: str | Path) -> FileFormat:
    """The file format named by the extension: .csv, .jsonl / .ndjson or .parquet."""
    suffix = Path(path).suffix.lower()
    try:
        return _SUFFIXES[suffix]
    except KeyError:
        shown = f"'{suffix}'" if suffix else "no extension"
        raise IngestError(
            f"{path}: cannot tell the file format from {shown}; "
            "expected .csv, .jsonl, .ndjson or .parquet"
        ) from None


def event_payload(event: AnyEvent) -> dict[str, Any]:
    """The Kafka message of an event as a JSON-ready dict."""
    payload: dict[str, Any] = event.model_dump(mode="json", exclude_none=True)
    return payload


# ---------------------------------------------------------------------------------- flat rows


def event_to_row(event: AnyEvent) -> Row:
    """One flat CSV/Parquet row (every column of the event's family, absent values None).

    Values are the ones of the JSON message: timestamps as ISO 8601 text, amounts as decimal
    text, other numbers as numbers. Raises `IngestError` when an identifier value contains
    ``|``, which the flat formats use to join lists.
    """
    family = family_of(event)
    payload = event_payload(event)
    # Nested objects are never column names, so every plain column is a plain JSON value.
    row: Row = {column: payload.get(column) for column in COLUMNS[family]}
    if family is EventFamily.IDENTITY:
        identifiers: dict[str, list[str]] = payload["identifiers"]
        for kind in IDENTIFIER_KINDS:
            values = identifiers[kind]
            if any(MULTI_VALUE_SEPARATOR in value for value in values):
                raise IngestError(
                    f"event {event.event_id}: identifiers.{kind} contains '|', which CSV and "
                    "Parquet use to separate values; write this event as JSONL"
                )
            row[kind] = MULTI_VALUE_SEPARATOR.join(values) if values else None
    elif family is EventFamily.TRANSACTIONS:
        counterparty: dict[str, str] | None = payload.get("counterparty")
        if counterparty is not None:
            row["counterparty_kind"] = counterparty["kind"]
            row["counterparty_id"] = counterparty["id"]
        location: dict[str, Any] | None = payload.get("location")
        if location is not None:
            row["lat"] = location["lat"]
            row["lon"] = location["lon"]
            row["country"] = location.get("country")
    return row


def row_to_payload(family: EventFamily | str, row: Mapping[str, object]) -> dict[str, Any]:
    """The nested JSON message of one flat row.

    Empty strings and None are absent values; numeric columns given as text are parsed. Values
    that do not parse are passed on unchanged, so event validation rejects them with the field
    name. Raises `IngestError` for columns the family does not have.
    """
    family = EventFamily(family)
    columns = COLUMNS[family]
    unknown = [name for name in row if name not in columns]
    if unknown:
        raise IngestError(f"unknown column(s) for {family} events: {_names(unknown)}")
    cells: dict[str, Any] = {}
    for name, value in row.items():
        cell = _cell_value(name, value)
        if cell is not None:
            cells[name] = cell

    payload: dict[str, Any] = {}
    if family is EventFamily.IDENTITY:
        identifiers = {kind: cells.pop(kind) for kind in IDENTIFIER_KINDS if kind in cells}
        payload.update(cells)
        # Always present, so an activation without a phone is reported as exactly that.
        payload["identifiers"] = identifiers
    elif family is EventFamily.TRANSACTIONS:
        counterparty = {
            key: cells.pop(column)
            for key, column in (("kind", "counterparty_kind"), ("id", "counterparty_id"))
            if column in cells
        }
        location = {key: cells.pop(key) for key in ("lat", "lon", "country") if key in cells}
        payload.update(cells)
        if counterparty:
            payload["counterparty"] = counterparty
        if location:
            payload["location"] = location
    else:
        payload.update(cells)
    return payload


def _cell_value(name: str, value: object) -> Any:
    """A cell as the JSON value its field expects, or None when it is empty."""
    if value is None:
        return None
    if isinstance(value, str):
        if value == "":
            return None
        if name in _LIST_COLUMNS:
            return value.split(MULTI_VALUE_SEPARATOR)
        if name in _INT_COLUMNS:
            return _parse_int(value)
        if name in _FLOAT_COLUMNS:
            return _parse_float(value)
        return value
    if isinstance(value, bool):
        return value  # no column is boolean: validation says so with the field name
    if isinstance(value, float) and math.isnan(value):
        return None  # how dataframe tools write a missing number
    if isinstance(value, int | float):
        if name in _INT_COLUMNS and isinstance(value, float) and value.is_integer():
            return int(value)  # an integer column widened to float because it had gaps
        if name in _DECIMAL_COLUMNS and isinstance(value, float):
            return repr(value)  # the shortest text that reads back as this float, kept exact
        if name in _INT_COLUMNS | _FLOAT_COLUMNS | _DECIMAL_COLUMNS:
            return value if math.isfinite(value) else repr(value)
        return str(value) if isinstance(value, int) else value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        # Some writers store text as plain binary; anything that is not UTF-8 fails the row.
        return _cell_value(name, value.decode("utf-8"))
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, list | tuple) and name in _LIST_COLUMNS:
        return [item for item in value if item is not None] or None
    return value


def _parse_int(text: str) -> int | str:
    stripped = text.strip()
    return int(stripped) if _INTEGER.fullmatch(stripped) else text


def _parse_float(text: str) -> float | str:
    stripped = text.strip()
    if not _DECIMAL_NUMBER.fullmatch(stripped):
        return text
    number = float(stripped)
    return number if math.isfinite(number) else text


def _names(names: Iterable[object]) -> str:
    # Column names come from the file; keep them short and printable on one line.
    shown = []
    for name in names:
        text = "".join(ch if ch.isprintable() else "?" for ch in str(name))
        if len(text) > _MAX_REPORTED_NAME:
            text = text[: _MAX_REPORTED_NAME - 1] + "…"
        shown.append(repr(text))
    return ", ".join(shown)


def _to_json_bytes(payload: Mapping[str, Any]) -> bytes:
    # Lone surrogates (bytes that were not UTF-8) fail here, so the row is rejected as unreadable.
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode(
        "utf-8"
    )


# ------------------------------------------------------------------------------------- writing


def write_events(
    path: str | Path,
    family: EventFamily | str,
    events: Iterable[AnyEvent],
    *,
    fmt: FileFormat | None = None,
) -> int:
    """Write events of one family to ``path`` in ``fmt`` (default: from the extension).

    Events are streamed, so ``events`` may be a generator over millions of them. The file appears
    only once complete: it is written next to its final name and renamed at the end. Returns the
    number of events written.
    """
    target = Path(path)
    family = EventFamily(family)
    fmt = fmt if fmt is not None else detect_format(target)
    if fmt not in FORMATS:
        raise IngestError(f"unknown file format {fmt!r}; expected one of {', '.join(FORMATS)}")
    checked = _checked_family(family, events)
    partial = target.with_name(target.name + ".partial")
    try:
        if fmt == "jsonl":
            count = _write_jsonl(partial, checked)
        elif fmt == "csv":
            count = _write_csv(partial, family, checked)
        else:
            count = _write_parquet(partial, family, checked)
        partial.replace(target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return count


def _checked_family(family: EventFamily, events: Iterable[AnyEvent]) -> Iterator[AnyEvent]:
    for event in events:
        if family_of(event) is not family:
            raise IngestError(
                f"event {event.event_id} belongs to the {family_of(event)} family, not {family}"
            )
        yield event


def _write_jsonl(path: Path, events: Iterable[AnyEvent]) -> int:
    count = 0
    with path.open("wb") as out:
        for event in events:
            out.write(event.model_dump_json(exclude_none=True).encode("utf-8"))
            out.write(b"\n")
            count += 1
    return count


def _write_csv(path: Path, family: EventFamily, events: Iterable[AnyEvent]) -> int:
    columns = COLUMNS[family]
    count = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        # CRLF as RFC 4180 says; it also makes the writer quote values holding a lone CR.
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(columns)
        for event in events:
            row = event_to_row(event)
            writer.writerow([row[column] for column in columns])
            count += 1
    return count


def parquet_schema(family: EventFamily | str) -> pa.Schema:
    """The Arrow schema of Parquet files written for a family."""

    def arrow_type(column: str) -> pa.DataType:
        if column in _INT_COLUMNS:
            return pa.int64()
        if column in _FLOAT_COLUMNS:
            return pa.float64()
        return pa.string()

    return pa.schema([(column, arrow_type(column)) for column in COLUMNS[EventFamily(family)]])


def _write_parquet(path: Path, family: EventFamily, events: Iterable[AnyEvent]) -> int:
    schema = parquet_schema(family)
    columns = COLUMNS[family]
    count = 0
    with pq.ParquetWriter(path, schema) as writer:
        batch: dict[str, list[Cell]] = {column: [] for column in columns}
        pending = 0
        for event in events:
            row = event_to_row(event)
            for column in columns:
                batch[column].append(row[column])
            pending += 1
            if pending == PARQUET_BATCH_ROWS:
                writer.write_batch(pa.RecordBatch.from_pydict(batch, schema=schema))
                count += pending
                batch = {column: [] for column in columns}
                pending = 0
        if pending:
            writer.write_batch(pa.RecordBatch.from_pydict(batch, schema=schema))
            count += pending
    return count


# ------------------------------------------------------------------------------------- reading


def iter_records(
    path: str | Path, family: EventFamily | str, start_line: int = 1
) -> Iterator[SourceRecord]:
    """One `SourceRecord` per data row of an event file, streamed, in file order.

    Line numbers are 1-based as a person sees them: the physical line a JSONL event or a CSV row
    starts on (the CSV header is line 1), or the row number in a Parquet file. Rows before
    ``start_line`` are skipped without being decoded, so a resumed run passes the line after the
    last one it finished. Blank lines are not records. A row that cannot be read (bad JSON, wrong
    number of CSV columns, bytes that are not UTF-8) yields a record with ``error`` set.

    Raises `IngestError` at once for an unknown extension or a bad ``start_line``, and while
    iterating when the file cannot be read at all (missing, unknown or missing columns, not
    Parquet).
    """
    family = EventFamily(family)
    source = Path(path)
    fmt = detect_format(source)
    if start_line < 1:
        raise IngestError(f"start_line must be 1 or more, got {start_line}")
    return _records(source, family, fmt, start_line)


def _records(
    source: Path, family: EventFamily, fmt: FileFormat, start_line: int
) -> Iterator[SourceRecord]:
    try:
        if fmt == "jsonl":
            yield from _iter_jsonl(source, start_line)
        elif fmt == "csv":
            yield from _iter_csv(source, family, start_line)
        else:
            yield from _iter_parquet(source, family, start_line)
    except OSError as exc:
        raise IngestError(f"{source}: cannot read: {exc.strerror or exc}") from None


def _iter_jsonl(path: Path, start_line: int) -> Iterator[SourceRecord]:
    name = str(path)
    with path.open("rb") as stream:
        line_no = 0
        while True:
            line = stream.readline(_MAX_LINE_BYTES)
            if not line:
                return
            line_no += 1
            if len(line) == _MAX_LINE_BYTES and not line.endswith(b"\n"):
                _skip_rest_of_line(stream)
                if line_no >= start_line:
                    yield SourceRecord(
                        name, line_no, None, None, f"line longer than {MAX_EVENT_BYTES} bytes"
                    )
                continue
            if line_no < start_line:
                continue
            if line_no == 1:
                line = line.removeprefix(b"\xef\xbb\xbf")
            content = line.rstrip(b"\r\n")
            if not content.strip():
                continue
            yield _jsonl_record(name, line_no, content)


def _skip_rest_of_line(stream: IO[bytes]) -> None:
    while chunk := stream.readline(1 << 16):
        if chunk.endswith(b"\n"):
            return


def _jsonl_record(name: str, line_no: int, content: bytes) -> SourceRecord:
    try:
        payload = json.loads(content)
    except UnicodeDecodeError:
        return SourceRecord(name, line_no, None, None, "not valid UTF-8")
    except json.JSONDecodeError as exc:
        return SourceRecord(
            name, line_no, None, None, f"not valid JSON: {exc.msg} at column {exc.colno}"
        )
    except RecursionError:
        return SourceRecord(name, line_no, None, None, "not valid JSON: nested too deeply")
    if not isinstance(payload, dict):
        return SourceRecord(name, line_no, None, None, "not a JSON object")
    return SourceRecord(name, line_no, content, payload)


def _iter_csv(path: Path, family: EventFamily, start_line: int) -> Iterator[SourceRecord]:
    name = str(path)
    # surrogateescape: bytes that are not UTF-8 fail one row, not the whole file.
    with path.open("r", encoding="utf-8-sig", errors="surrogateescape", newline="") as stream:
        reader = csv.reader(stream, strict=True)
        header: list[str] | None = None
        last_line = 0
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                line_no, last_line = last_line + 1, reader.line_num
                if header is None:
                    raise IngestError(f"{name}: cannot read the header: {exc}") from None
                if line_no >= start_line:
                    yield SourceRecord(name, line_no, None, None, f"malformed CSV: {exc}")
                continue
            line_no, last_line = last_line + 1, reader.line_num
            if not cells:
                continue  # a blank line
            if header is None:
                header = _csv_header(name, family, cells)
                continue
            if line_no < start_line:
                continue
            yield _csv_record(name, line_no, family, header, cells)


def _csv_header(name: str, family: EventFamily, cells: Sequence[str]) -> list[str]:
    header = [cell.strip() for cell in cells]
    _check_columns(name, family, header)
    return header


def _check_columns(name: str, family: EventFamily, header: Sequence[str]) -> None:
    known = COLUMNS[family]
    duplicates = sorted({column for column in header if header.count(column) > 1})
    if duplicates:
        raise IngestError(f"{name}: duplicate column(s): {_names(duplicates)}")
    unknown = [column for column in header if column not in known]
    if unknown:
        raise IngestError(
            f"{name}: unknown column(s) for {family} files: {_names(unknown)}; "
            f"expected some of {', '.join(known)}"
        )
    missing = [column for column in known if column in REQUIRED_COLUMNS[family]]
    missing = [column for column in missing if column not in header]
    if missing:
        raise IngestError(f"{name}: missing column(s) for {family} files: {', '.join(missing)}")


def _csv_record(
    name: str, line_no: int, family: EventFamily, header: Sequence[str], cells: Sequence[str]
) -> SourceRecord:
    if len(cells) != len(header):
        return SourceRecord(
            name, line_no, None, None, f"expected {len(header)} columns, found {len(cells)}"
        )
    return _flat_record(name, line_no, family, dict(zip(header, cells, strict=True)))


def _flat_record(
    name: str, line_no: int, family: EventFamily, row: Mapping[str, object]
) -> SourceRecord:
    try:
        payload = row_to_payload(family, row)
        raw = _to_json_bytes(payload)
    except IngestError as exc:
        return SourceRecord(name, line_no, None, None, str(exc))
    except UnicodeError:
        return SourceRecord(name, line_no, None, None, "not valid UTF-8")
    except (TypeError, ValueError):
        return SourceRecord(name, line_no, None, None, "a cell has a type JSON cannot carry")
    return SourceRecord(name, line_no, raw, payload)


def _iter_parquet(path: Path, family: EventFamily, start_line: int) -> Iterator[SourceRecord]:
    name = str(path)
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, ValueError) as exc:
        raise IngestError(f"{name}: not a readable Parquet file ({exc})") from None
    with parquet:
        header = list(parquet.schema_arrow.names)
        _check_columns(name, family, header)
        # Skip whole row groups before start_line without decoding them.
        metadata = parquet.metadata
        first_row = 1
        groups: list[int] = []
        for index in range(metadata.num_row_groups):
            rows = metadata.row_group(index).num_rows
            if groups or first_row + rows > start_line:
                groups.append(index)
            else:
                first_row += rows
        if not groups:
            return
        line_no = first_row - 1
        try:
            for batch in parquet.iter_batches(batch_size=8_192, row_groups=groups):
                if line_no + batch.num_rows < start_line:
                    line_no += batch.num_rows
                    continue
                for row in batch.to_pylist():
                    line_no += 1
                    if line_no >= start_line:
                        yield _flat_record(name, line_no, family, row)
        except (pa.ArrowException, ValueError) as exc:
            raise IngestError(f"{name}: unreadable after row {line_no} ({exc})") from None
