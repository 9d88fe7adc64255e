from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringwatch.ingest import formats
from ringwatch.ingest.events import (
    AnyEvent,
    Call,
    Counterparty,
    DataUsage,
    DeviceSeen,
    EventFamily,
    Identifiers,
    LabelEvent,
    Location,
    Payment,
    SimActivated,
    Sms,
    SubscriberClosed,
    SubscriberRegistered,
    SubscriberUpdated,
    TopUp,
    Transfer,
    parse_event,
)
from ringwatch.ingest.exceptions import IngestError
from ringwatch.ingest.formats import (
    COLUMNS,
    FileFormat,
    SourceRecord,
    detect_format,
    event_to_row,
    iter_records,
    row_to_payload,
    write_events,
)

T0 = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)
FORMATS: tuple[FileFormat, ...] = ("jsonl", "csv", "parquet")
FIRST_DATA_LINE = {"jsonl": 1, "csv": 2, "parquet": 1}


def _at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


IDENTITY: list[AnyEvent] = [
    SubscriberRegistered(
        event_id="i-1",
        schema_version=1,
        type="subscriber.registered",
        occurred_at=_at(0),
        subscriber_id="sub-1",
        source="crm",
        name='Zoë "Z" O\'Connor, Jr.',
        status="active",
        identifiers=Identifiers(
            devices=("352099001761481", "35-209900-176148-1"),
            phones=("+14155552671", "(415) 555-2671"),
            emails=("Zoe.OConnor+sim@gmail.com",),
            # Commas, quotes and a line break: CSV must quote them, JSONL escape them.
            addresses=('12 "Old" Main Street, Apt 4\nBoston, MA 02118',),
            payment_methods=("4111 1111 1111 1111",),
            ips=("73.12.4.9", "2601:645:c000::1"),
        ),
    ),
    SubscriberRegistered(
        event_id="i-2",
        schema_version=1,
        type="subscriber.registered",
        occurred_at=_at(1),
        subscriber_id="sub-2",
    ),
    SubscriberUpdated(
        event_id="i-3",
        schema_version=1,
        type="subscriber.updated",
        occurred_at=_at(2).astimezone(timezone(timedelta(hours=-5))),
        subscriber_id="sub-1",
        status="suspended",
        identifiers=Identifiers(emails=("new@example.com",)),
    ),
    SubscriberClosed(
        event_id="i-4",
        schema_version=1,
        type="subscriber.closed",
        occurred_at=_at(3),
        subscriber_id="sub-2",
        reason="ported out\nto another carrier",
    ),
    SimActivated(
        event_id="i-5",
        schema_version=1,
        type="sim.activated",
        occurred_at=_at(4),
        subscriber_id="sub-1",
        identifiers=Identifiers(phones=("+16175550100",)),
    ),
    DeviceSeen(
        event_id="i-6",
        schema_version=1,
        type="device.seen",
        occurred_at=_at(5),
        subscriber_id="sub-1",
        source="network",
        identifiers=Identifiers(devices=("fp:abc123",), ips=("10.0.0.1",)),
    ),
]
NUMBER = Counterparty(kind="number", id="+14155550123")
SHOP = Counterparty(kind="merchant", id="m-coffee")
HOME = Location(lat=42.3601, lon=-71.0589, country="US")
TRANSACTIONS: list[AnyEvent] = [
    DataUsage(
        event_id="t-1",
        schema_version=1,
        type="data_usage",
        occurred_at=_at(0),
        subscriber_id="sub-1",
        source="mediation",
        transaction_id="tx-1",
        data_mb=0.1,
        amount=Decimal("0.0012"),
        currency="USD",
        device="352099001761481",
        ip="73.12.4.9",
        location=HOME,
    ),
    DataUsage(
        event_id="t-2",
        schema_version=1,
        type="data_usage",
        occurred_at=_at(1),
        subscriber_id="sub-1",
        transaction_id="tx-2",
        data_mb=1234.5,
        location=Location(lat=-33.9, lon=151.2),
    ),
    Call(
        event_id="t-3",
        schema_version=1,
        type="call",
        occurred_at=_at(2),
        subscriber_id="sub-1",
        transaction_id="tx-3",
        counterparty=NUMBER,
        duration_s=7.5,
        direction="incoming",
    ),
    Sms(
        event_id="t-4",
        schema_version=1,
        type="sms",
        occurred_at=_at(3),
        subscriber_id="sub-1",
        transaction_id="tx-4",
        counterparty=NUMBER,
    ),
    TopUp(
        event_id="t-5",
        schema_version=1,
        type="topup",
        occurred_at=_at(4),
        subscriber_id="sub-1",
        transaction_id="tx-5",
        amount=Decimal("20.00"),
        currency="USD",
    ),
    Payment(
        event_id="t-6",
        schema_version=1,
        type="payment",
        occurred_at=_at(5),
        subscriber_id="sub-1",
        transaction_id="tx-6",
        amount=Decimal("640.99"),
        currency="EUR",
        counterparty=SHOP,
        ip="73.12.4.9",
    ),
    Transfer(
        event_id="t-7",
        schema_version=1,
        type="transfer",
        occurred_at=_at(6),
        subscriber_id="sub-1",
        transaction_id="tx-7",
        amount=Decimal("100"),
        currency="USD",
        counterparty=Counterparty(kind="subscriber", id="sub-2"),
    ),
]
LABELS: list[AnyEvent] = [
    LabelEvent(
        event_id="l-1",
        schema_version=1,
        occurred_at=_at(0),
        subscriber_id="sub-1",
        source="chargeback",
        label="fraud",
        transaction_id="tx-6",
    ),
    LabelEvent(
        event_id="l-2",
        schema_version=1,
        occurred_at=_at(1),
        subscriber_id="sub-2",
        source="analyst",
        label="legitimate",
        analyst="Ana",
        reason="household, verified by phone",
        ring_id="R-12",
    ),
]
SAMPLES: dict[EventFamily, list[AnyEvent]] = {
    EventFamily.IDENTITY: IDENTITY,
    EventFamily.TRANSACTIONS: TRANSACTIONS,
    EventFamily.LABELS: LABELS,
}


def _file(directory: Path, family: EventFamily, fmt: FileFormat) -> Path:
    return directory / f"{family}{formats.EXTENSIONS[fmt]}"


def _parse_all(family: EventFamily, records: Sequence[SourceRecord]) -> list[AnyEvent]:
    events: list[AnyEvent] = []
    for record in records:
        assert record.error is None, (record.line, record.error)
        assert record.raw is not None
        events.append(parse_event(family, record.raw))
    return events


# ---------------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("family", list(EventFamily))
def test_rows_turn_back_into_the_same_event(family: EventFamily) -> None:
    for event in SAMPLES[family]:
        row = event_to_row(event)
        assert list(row) == list(COLUMNS[family])
        payload = row_to_payload(family, row)
        assert parse_event(family, json.dumps(payload)) == event


@pytest.mark.parametrize("family", list(EventFamily))
def test_rows_hold_the_values_of_the_json_message(family: EventFamily) -> None:
    for event in SAMPLES[family]:
        payload = event.model_dump(mode="json", exclude_none=True)
        identifiers = payload.pop("identifiers", {})
        flat = {**payload, **identifiers}
        flat.update({f"counterparty_{k}": v for k, v in flat.pop("counterparty", {}).items()})
        flat.update(flat.pop("location", {}))
        expected = {
            column: ("|".join(value) or None) if isinstance(value, list) else value
            for column, value in flat.items()
        }
        row = event_to_row(event)
        assert {column: value for column, value in row.items() if value is not None} == {
            column: value for column, value in expected.items() if value is not None
        }


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("family", list(EventFamily))
def test_every_event_type_survives_a_file_round_trip(
    tmp_path: Path, family: EventFamily, fmt: FileFormat
) -> None:
    path = _file(tmp_path, family, fmt)
    assert write_events(path, family, SAMPLES[family]) == len(SAMPLES[family])

    records = list(iter_records(path, family))

    assert _parse_all(family, records) == SAMPLES[family]
    assert all(record.file == str(path) for record in records)
    assert all(record.payload is not None for record in records)


def test_jsonl_lines_are_exactly_the_kafka_payload(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    write_events(path, EventFamily.TRANSACTIONS, TRANSACTIONS)
    lines = path.read_bytes().splitlines()
    assert [json.loads(line) for line in lines] == [
        event.model_dump(mode="json", exclude_none=True) for event in TRANSACTIONS
    ]


@pytest.mark.parametrize("fmt", FORMATS)
def test_line_numbers_are_the_ones_a_person_sees(tmp_path: Path, fmt: FileFormat) -> None:
    path = _file(tmp_path, EventFamily.TRANSACTIONS, fmt)
    write_events(path, EventFamily.TRANSACTIONS, TRANSACTIONS)
    first = FIRST_DATA_LINE[fmt]
    lines = [record.line for record in iter_records(path, EventFamily.TRANSACTIONS)]
    assert lines == list(range(first, first + len(TRANSACTIONS)))


def test_csv_rows_spanning_lines_are_numbered_by_their_first_line(tmp_path: Path) -> None:
    path = tmp_path / "identity.csv"
    write_events(path, EventFamily.IDENTITY, IDENTITY)
    records = list(iter_records(path, EventFamily.IDENTITY))
    # Row 1 holds an address with a line break; row 3 (closed) a reason with one.
    assert [record.line for record in records] == [2, 4, 5, 6, 8, 9]
    assert path.read_text(encoding="utf-8").count("\n") == 9


def test_parquet_keeps_numbers_numeric_and_amounts_exact(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    write_events(path, EventFamily.TRANSACTIONS, TRANSACTIONS)
    table = pq.read_table(path)
    assert table.schema.field("schema_version").type == pa.int64()
    assert table.schema.field("data_mb").type == pa.float64()
    assert table.schema.field("amount").type == pa.string()
    assert table.column("amount").to_pylist()[0] == "0.0012"


def test_parquet_from_other_tools_with_other_column_types(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    table = pa.table(
        {
            "event_id": ["t-1"],
            "schema_version": pa.array([1.0]),  # widened to float by a dataframe with gaps
            "type": ["payment"],
            "occurred_at": pa.array([T0], type=pa.timestamp("us", tz="UTC")),
            "subscriber_id": pa.array([42]),
            "transaction_id": ["tx-1"],
            "amount": pa.array([Decimal("12.50")], type=pa.decimal128(10, 2)),
            "currency": ["USD"],
            "counterparty_kind": ["merchant"],
            "counterparty_id": ["m-1"],
            "lat": pa.array([float("nan")]),
        }
    )
    pq.write_table(table, path)
    (record,) = iter_records(path, EventFamily.TRANSACTIONS)
    assert record.raw is not None
    event = parse_event(EventFamily.TRANSACTIONS, record.raw)
    assert isinstance(event, Payment)
    assert event.amount == Decimal("12.50")
    assert event.subscriber_id == "42"
    assert event.occurred_at == T0
    assert event.location is None


def test_an_empty_event_list_writes_a_readable_file(tmp_path: Path) -> None:
    for fmt in FORMATS:
        path = _file(tmp_path, EventFamily.LABELS, fmt)
        assert write_events(path, EventFamily.LABELS, []) == 0
        assert list(iter_records(path, EventFamily.LABELS)) == []


@settings(max_examples=50, deadline=None)
@given(
    # Everything the models accept: no controls or bidi overrides; addresses may break lines.
    name=st.text(
        st.characters(codec="utf-8", exclude_categories=("Cc", "Cf", "Zl", "Zp")), min_size=1
    ),
    address=st.text(
        st.characters(
            codec="utf-8",
            exclude_categories=("Cc", "Cf"),
            include_characters="\n\r\t\u2028",
            exclude_characters="|",
        ),
        min_size=1,
    ),
)
def test_any_printable_text_round_trips_through_csv_and_parquet(name: str, address: str) -> None:
    event = SubscriberRegistered(
        event_id="i-1",
        schema_version=1,
        type="subscriber.registered",
        occurred_at=T0,
        subscriber_id="sub-1",
        name=name[:256],
        identifiers=Identifiers(addresses=(address[:512],)),
    )
    with tempfile.TemporaryDirectory() as directory:
        for fmt in ("csv", "parquet"):
            path = Path(directory) / f"identity.{fmt}"
            write_events(path, EventFamily.IDENTITY, [event])
            records = list(iter_records(path, EventFamily.IDENTITY))
            assert _parse_all(EventFamily.IDENTITY, records) == [event]


# ------------------------------------------------------------------------- unreadable rows


def test_a_malformed_jsonl_line_is_reported_with_its_line(tmp_path: Path) -> None:
    good = [event.model_dump_json(exclude_none=True) for event in LABELS]
    path = tmp_path / "labels.jsonl"
    path.write_text(f"{good[0]}\n\n{{not json\n[1, 2]\n{good[1]}\n", encoding="utf-8")

    records = list(iter_records(path, EventFamily.LABELS))

    assert [(record.line, record.error is None) for record in records] == [
        (1, True),
        (3, False),
        (4, False),
        (5, True),
    ]
    assert records[1].error is not None and records[1].error.startswith("not valid JSON")
    assert records[1].raw is None and records[1].payload is None
    assert records[2].error == "not a JSON object"
    assert _parse_all(EventFamily.LABELS, [records[0], records[3]]) == LABELS


def test_jsonl_bytes_that_are_not_utf8_and_crlf_endings(tmp_path: Path) -> None:
    good = LABELS[0].model_dump_json(exclude_none=True).encode()
    path = tmp_path / "labels.jsonl"
    path.write_bytes(b'{"event_id": "\xff"}\r\n' + good + b"\r\n")
    records = list(iter_records(path, EventFamily.LABELS))
    assert records[0].error == "not valid UTF-8"
    assert records[1].raw == good


def test_an_overlong_jsonl_line_is_refused_unread(tmp_path: Path) -> None:
    good = LABELS[0].model_dump_json(exclude_none=True).encode()
    path = tmp_path / "labels.jsonl"
    path.write_bytes(b'{"x": "' + b"a" * (300 * 1024) + b'"}\n' + good + b"\n")
    records = list(iter_records(path, EventFamily.LABELS))
    assert records[0].line == 1
    assert records[0].error is not None and "longer than" in records[0].error
    assert (records[1].line, records[1].raw) == (2, good)


def test_a_csv_row_with_the_wrong_column_count_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    write_events(path, EventFamily.LABELS, LABELS)
    lines = path.read_text(encoding="utf-8").splitlines()
    lines.insert(2, "only,three,cells")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    records = list(iter_records(path, EventFamily.LABELS))

    assert [record.line for record in records] == [2, 3, 4]
    assert records[1].error == f"expected {len(COLUMNS[EventFamily.LABELS])} columns, found 3"
    assert _parse_all(EventFamily.LABELS, [records[0], records[2]]) == LABELS


def test_csv_bytes_that_are_not_utf8_fail_only_their_row(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    write_events(path, EventFamily.LABELS, LABELS)
    data = path.read_bytes().replace(b"Ana", b"An\xe9")
    path.write_bytes(data)
    records = list(iter_records(path, EventFamily.LABELS))
    assert records[0].error is None
    assert records[1].error == "not valid UTF-8"


def test_a_bad_value_reaches_validation_with_its_field(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    write_events(path, EventFamily.TRANSACTIONS, TRANSACTIONS[:1])
    text = path.read_text(encoding="utf-8").replace(",0.1,", ",lots,")
    path.write_text(text, encoding="utf-8")
    (record,) = iter_records(path, EventFamily.TRANSACTIONS)
    assert record.error is None and record.raw is not None
    with pytest.raises(IngestError, match="data_mb"):
        parse_event(EventFamily.TRANSACTIONS, record.raw)


# ---------------------------------------------------------------------------------- resuming


@pytest.mark.parametrize("fmt", FORMATS)
def test_start_line_skips_rows_already_done(
    tmp_path: Path, fmt: FileFormat, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(formats, "PARQUET_BATCH_ROWS", 2)  # several row groups to skip over
    path = _file(tmp_path, EventFamily.TRANSACTIONS, fmt)
    write_events(path, EventFamily.TRANSACTIONS, TRANSACTIONS)
    first = FIRST_DATA_LINE[fmt]

    records = list(iter_records(path, EventFamily.TRANSACTIONS, start_line=first + 3))

    assert [record.line for record in records] == list(range(first + 3, first + len(TRANSACTIONS)))
    assert _parse_all(EventFamily.TRANSACTIONS, records) == TRANSACTIONS[3:]
    assert list(iter_records(path, EventFamily.TRANSACTIONS, start_line=10_000)) == []


def test_start_line_does_not_decode_skipped_jsonl_lines(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    good = LABELS[1].model_dump_json(exclude_none=True)
    path.write_text(f"{{broken\n{good}\n", encoding="utf-8")
    records = list(iter_records(path, EventFamily.LABELS, start_line=2))
    assert [(record.line, record.error) for record in records] == [(2, None)]


def test_start_line_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="start_line"):
        iter_records(tmp_path / "x.csv", EventFamily.LABELS, start_line=0)


# -------------------------------------------------------------------------- whole-file errors


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.csv", "csv"),
        ("a.CSV", "csv"),
        ("a.jsonl", "jsonl"),
        ("a.ndjson", "jsonl"),
        ("dir.v2/a.parquet", "parquet"),
    ],
)
def test_detect_format_by_extension(name: str, expected: FileFormat) -> None:
    assert detect_format(name) == expected


@pytest.mark.parametrize("name", ["a.json", "a", "a.csv.gz"])
def test_unknown_extensions_are_refused(name: str) -> None:
    with pytest.raises(IngestError, match=r"expected \.csv, \.jsonl, \.ndjson or \.parquet"):
        detect_format(name)


def test_unknown_and_missing_columns_refuse_the_file(tmp_path: Path) -> None:
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("event_id,schema_version,type,occurred_at,subscriber_id,colour\n")
    with pytest.raises(IngestError, match=r"unknown column.*'colour'"):
        list(iter_records(unknown, EventFamily.IDENTITY))
    missing = tmp_path / "missing.csv"
    missing.write_text("event_id,type,occurred_at\n")
    with pytest.raises(IngestError, match=r"missing column.*schema_version, subscriber_id"):
        list(iter_records(missing, EventFamily.IDENTITY))


def test_optional_csv_columns_may_be_left_out_in_any_order(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(
        "label,source,subscriber_id,occurred_at,schema_version,event_id\n"
        "fraud,analyst,sub-9,2024-03-01T09:30:00Z,1,l-9\n",
        encoding="utf-8",
    )
    (record,) = iter_records(path, EventFamily.LABELS)
    assert record.raw is not None
    event = parse_event(EventFamily.LABELS, record.raw)
    assert (event.subscriber_id, event.label, event.ring_id) == ("sub-9", "fraud", None)


def test_a_missing_file_and_a_file_that_is_not_parquet(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="cannot read"):
        list(iter_records(tmp_path / "absent.jsonl", EventFamily.LABELS))
    fake = tmp_path / "fake.parquet"
    fake.write_text("not parquet")
    with pytest.raises(IngestError, match="not a readable Parquet file"):
        list(iter_records(fake, EventFamily.LABELS))


def test_a_separator_inside_an_identifier_cannot_be_flattened(tmp_path: Path) -> None:
    event = DeviceSeen(
        event_id="i-9",
        schema_version=1,
        type="device.seen",
        occurred_at=T0,
        subscriber_id="sub-1",
        identifiers=Identifiers(devices=("fp:a|b",)),
    )
    with pytest.raises(IngestError, match="write this event as JSONL"):
        write_events(tmp_path / "identity.csv", EventFamily.IDENTITY, [event])
    assert not list(tmp_path.iterdir()), "no partial file is left behind"
    write_events(tmp_path / "identity.jsonl", EventFamily.IDENTITY, [event])
    (record,) = iter_records(tmp_path / "identity.jsonl", EventFamily.IDENTITY)
    assert record.raw is not None
    assert parse_event(EventFamily.IDENTITY, record.raw) == event


def test_events_of_another_family_are_refused(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="belongs to the transactions family"):
        write_events(tmp_path / "identity.jsonl", EventFamily.IDENTITY, TRANSACTIONS)
    assert not (tmp_path / "identity.jsonl").exists()


def test_row_to_payload_refuses_unknown_columns() -> None:
    with pytest.raises(IngestError, match="unknown column"):
        row_to_payload(EventFamily.LABELS, {"event_id": "l-1", "amount": "3"})
