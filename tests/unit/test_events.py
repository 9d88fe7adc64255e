from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from ringwatch.ingest.events import (
    MAX_IDENTIFIERS_PER_KIND,
    MAX_REPORTED_PROBLEMS,
    SCHEMA_FILES,
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
    check_json_schemas,
    export_json_schemas,
    main,
    parse_event,
)
from ringwatch.ingest.exceptions import EventValidationError

REPO_ROOT = Path(__file__).resolve().parents[2]
CARD_NUMBER = "4111111111111111"

ENVELOPE: dict[str, Any] = {
    "event_id": "evt-0001",
    "schema_version": 1,
    "occurred_at": "2024-05-01T10:15:00+02:00",
    "subscriber_id": "sub-42",
}
MERCHANT = {"kind": "merchant", "id": "m-123"}
NUMBER = {"kind": "number", "id": "+14155550123"}

IDENTITY_EVENTS: list[tuple[dict[str, Any], type[BaseModel]]] = [
    (
        {
            "type": "subscriber.registered",
            "name": "Ada Lovelace",
            "status": "active",
            "source": "onboarding",
            "identifiers": {
                "emails": ["Ada.Lovelace+x@gmail.com"],
                "phones": ["+14155550123"],
                "addresses": ["12 Main Street\nApt 4"],
                "payment_methods": [CARD_NUMBER],
                "devices": ["490154203237518"],
                "ips": ["192.0.2.1"],
            },
        },
        SubscriberRegistered,
    ),
    ({"type": "subscriber.updated", "status": "suspended"}, SubscriberUpdated),
    ({"type": "subscriber.closed", "reason": "customer request"}, SubscriberClosed),
    ({"type": "sim.activated", "identifiers": {"phones": ["+14155550123"]}}, SimActivated),
    ({"type": "device.seen", "identifiers": {"devices": ["fp:abc"]}}, DeviceSeen),
]
TRANSACTION_EVENTS: list[tuple[dict[str, Any], type[BaseModel]]] = [
    ({"type": "data_usage", "data_mb": 512.5}, DataUsage),
    ({"type": "call", "counterparty": NUMBER, "duration_s": 42}, Call),
    ({"type": "sms", "counterparty": NUMBER, "direction": "incoming"}, Sms),
    ({"type": "topup", "amount": "20.00", "currency": "EUR"}, TopUp),
    (
        {
            "type": "payment",
            "amount": 19.99,
            "currency": "USD",
            "counterparty": MERCHANT,
            "device": "490154203237518",
            "ip": "2001:db8::1",
            "location": {"lat": 51.5, "lon": -0.12, "country": "GB"},
        },
        Payment,
    ),
    (
        {
            "type": "transfer",
            "amount": 250,
            "currency": "GBP",
            "counterparty": {"kind": "subscriber", "id": "sub-7"},
        },
        Transfer,
    ),
]


def _raw(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def _identity(**fields: Any) -> dict[str, Any]:
    return {**ENVELOPE, "type": "subscriber.registered", **fields}


def _payment(**fields: Any) -> dict[str, Any]:
    payment = {
        **ENVELOPE,
        "type": "payment",
        "transaction_id": "tx-1",
        "amount": "10.00",
        "currency": "USD",
        "counterparty": MERCHANT,
    }
    return {**payment, **fields}


def _label(**fields: Any) -> dict[str, Any]:
    return {**ENVELOPE, "label": "fraud", "source": "chargeback", **fields}


def _problems(family: EventFamily, payload: Any) -> str:
    raw = payload if isinstance(payload, bytes) else _raw(payload)
    with pytest.raises(EventValidationError) as caught:
        parse_event(family, raw)
    return str(caught.value)


# ------------------------------------------------------------------------------ valid events


@pytest.mark.parametrize(("fields", "model"), IDENTITY_EVENTS)
def test_every_identity_event_type_parses(fields: dict[str, Any], model: type[BaseModel]) -> None:
    event = parse_event(EventFamily.IDENTITY, _raw({**ENVELOPE, **fields}))
    assert type(event) is model
    assert event.subscriber_id == "sub-42"
    assert event.occurred_at.utcoffset() == timedelta(hours=2)


@pytest.mark.parametrize(("fields", "model"), TRANSACTION_EVENTS)
def test_every_transaction_event_type_parses(
    fields: dict[str, Any], model: type[BaseModel]
) -> None:
    event = parse_event(
        EventFamily.TRANSACTIONS, _raw({**ENVELOPE, "transaction_id": "tx-1", **fields})
    )
    assert type(event) is model
    assert event.transaction_id == "tx-1"


def test_amounts_are_exact_decimals() -> None:
    event = parse_event(EventFamily.TRANSACTIONS, _raw(_payment(amount="0.10")))
    assert event.amount == Decimal("0.10")
    number = parse_event(EventFamily.TRANSACTIONS, _raw(_payment(amount=19.99)))
    assert number.amount == Decimal("19.99")


def test_label_event_parses() -> None:
    event = parse_event(
        EventFamily.LABELS,
        _raw(_label(analyst="j.doe", reason="confirmed by bank", ring_id="R-12")),
    )
    assert isinstance(event, LabelEvent)
    assert (event.label, event.source, event.ring_id) == ("fraud", "chargeback", "R-12")


def test_family_may_be_given_as_the_topic_kind_string() -> None:
    assert isinstance(parse_event("labels", _raw(_label()).decode()), LabelEvent)


def test_identifiers_default_to_empty() -> None:
    event = parse_event(EventFamily.IDENTITY, _raw(_identity()))
    assert isinstance(event, SubscriberRegistered)
    assert event.identifiers.emails == ()


def test_payment_methods_stay_out_of_repr() -> None:
    event = parse_event(
        EventFamily.IDENTITY, _raw(_identity(identifiers={"payment_methods": [CARD_NUMBER]}))
    )
    assert isinstance(event, SubscriberRegistered)
    assert event.identifiers.payment_methods == (CARD_NUMBER,)
    assert CARD_NUMBER not in repr(event)


def test_events_are_frozen() -> None:
    event = parse_event(EventFamily.LABELS, _raw(_label()))
    with pytest.raises(ValidationError):
        event.label = "legitimate"  # type: ignore[misc]


# ----------------------------------------------------------------------------- invalid events


@pytest.mark.parametrize(
    ("family", "payload", "expected"),
    [
        (
            EventFamily.IDENTITY,
            {k: v for k, v in _identity().items() if k != "subscriber_id"},
            "subscriber_id: Field required",
        ),
        (EventFamily.IDENTITY, _identity(nickname="x"), "nickname: Extra inputs are not permitted"),
        (
            EventFamily.IDENTITY,
            _identity(identifiers={"emails": ["a@b.com"], "fax": ["1"]}),
            "identifiers.fax: Extra inputs are not permitted",
        ),
        (
            EventFamily.IDENTITY,
            _identity(occurred_at="2024-05-01T10:15:00"),
            "occurred_at: Input should have timezone info",
        ),
        (EventFamily.IDENTITY, _identity(occurred_at=1714551300), "occurred_at: "),
        (EventFamily.IDENTITY, _identity(schema_version=2), "schema_version: Input should be 1"),
        (EventFamily.IDENTITY, _identity(schema_version=True), "schema_version: "),
        (EventFamily.IDENTITY, _identity(schema_version="1"), "schema_version: "),
        (EventFamily.IDENTITY, _identity(type="subscriber.deleted"), "type: must be one of"),
        (
            EventFamily.IDENTITY,
            _identity(event_id="e" * 129),
            "event_id: String should have at most",
        ),
        (
            EventFamily.IDENTITY,
            _identity(subscriber_id="sub\u0000 42"),
            "subscriber_id: must not contain control characters",
        ),
        (
            EventFamily.IDENTITY,
            _identity(name="Ada\u202eecalevoL"),
            "name: must not contain control characters",
        ),
        (
            EventFamily.IDENTITY,
            _identity(identifiers={"emails": ["a" * 513]}),
            "identifiers.emails.0: String should have at most 512",
        ),
        (
            EventFamily.IDENTITY,
            _identity(identifiers={"ips": ["10.0.0.1"] * (MAX_IDENTIFIERS_PER_KIND + 1)}),
            "identifiers.ips: Tuple should have at most",
        ),
        (
            EventFamily.IDENTITY,
            {**ENVELOPE, "type": "sim.activated", "identifiers": {"emails": ["a@b.com"]}},
            "identifiers: sim.activated needs a phone",
        ),
        (
            EventFamily.IDENTITY,
            {**ENVELOPE, "type": "device.seen"},
            "identifiers: Field required",
        ),
        (EventFamily.TRANSACTIONS, _payment(currency="usd"), "currency: String should match"),
        (EventFamily.TRANSACTIONS, _payment(currency="USDT"), "currency: String should match"),
        (EventFamily.TRANSACTIONS, _payment(amount=-5), "amount: Input should be greater than"),
        (EventFamily.TRANSACTIONS, _payment(amount="12.5.1"), "amount: "),
        (
            EventFamily.TRANSACTIONS,
            {k: v for k, v in _payment(type="call", duration_s=1).items() if k != "currency"},
            "currency: required when amount is set",
        ),
        (
            EventFamily.TRANSACTIONS,
            _payment(location={"lat": 91, "lon": 0}),
            "location.lat: Input should be less than or equal to 90",
        ),
        (
            EventFamily.TRANSACTIONS,
            _payment(counterparty={"kind": "bank", "id": "x"}),
            "counterparty.kind: ",
        ),
        (
            EventFamily.TRANSACTIONS,
            {**_payment(type="call"), "duration_s": -1},
            "duration_s: Input should be greater than or equal to 0",
        ),
        (
            EventFamily.TRANSACTIONS,
            _payment(data_mb="12"),
            "data_mb: Input should be a valid number",
        ),
        (EventFamily.LABELS, _label(label="maybe"), "label: "),
        (EventFamily.LABELS, _label(source="Analyst Desk"), "source: String should match"),
        (EventFamily.LABELS, [_label()], "event: Input should be an object"),
        (EventFamily.LABELS, b'{"event_id": "e1",', "event: Invalid JSON"),
        (EventFamily.LABELS, b"\xff\xfe{}", "event: Invalid JSON"),
    ],
)
def test_invalid_events_name_the_field_path(
    family: EventFamily, payload: Any, expected: str
) -> None:
    assert expected in _problems(family, payload)


def test_every_problem_is_listed() -> None:
    message = _problems(EventFamily.TRANSACTIONS, _payment(amount=-1, currency="usd"))
    assert "amount: " in message
    assert "currency: " in message


def test_huge_hostile_values_are_not_echoed() -> None:
    huge = "X" * 100_000
    for payload in (_identity(type=huge), _identity(**{huge: 1}), _identity(event_id=huge)):
        message = _problems(EventFamily.IDENTITY, payload)
        assert huge[:300] not in message
        assert len(message) < 1_000


def test_values_never_appear_in_error_messages() -> None:
    message = _problems(EventFamily.IDENTITY, _identity(subscriber_id=CARD_NUMBER + "\u0000"))
    assert CARD_NUMBER not in message


def test_oversize_payload_is_refused_before_parsing() -> None:
    payload = _raw(_identity(name="x" * 200))
    with pytest.raises(EventValidationError, match="bytes is over the limit of 100"):
        parse_event(EventFamily.IDENTITY, payload, max_bytes=100)


@pytest.mark.parametrize("raw", [None, b""])
def test_empty_messages_are_refused(raw: bytes | None) -> None:
    with pytest.raises(EventValidationError, match="event: empty message"):
        parse_event(EventFamily.LABELS, raw)


def test_long_problem_lists_are_cut_short() -> None:
    emails = ["bad\u0000"] * MAX_IDENTIFIERS_PER_KIND
    with pytest.raises(EventValidationError) as caught:
        parse_event(EventFamily.IDENTITY, _raw(_identity(identifiers={"emails": emails})))
    problems = caught.value.problems
    assert len(problems) == MAX_REPORTED_PROBLEMS + 1
    assert problems[-1] == f"... and {MAX_IDENTIFIERS_PER_KIND - MAX_REPORTED_PROBLEMS} more"


# ------------------------------------------------------------------------------ JSON Schemas


def test_checked_in_json_schemas_match_the_models() -> None:
    assert check_json_schemas(REPO_ROOT / "docs" / "events") == []


def test_exported_schemas_are_stable_and_valid_json(tmp_path: Path) -> None:
    written = export_json_schemas(tmp_path)
    assert sorted(p.name for p in written) == sorted(SCHEMA_FILES.values())
    assert check_json_schemas(tmp_path) == []
    for path in written:
        text = path.read_text(encoding="utf-8")
        assert text.endswith("}\n")
        assert json.loads(text)["$schema"].startswith("https://json-schema.org/")


def test_schema_check_reports_stale_and_missing_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export_json_schemas(tmp_path)
    (tmp_path / "labels.schema.json").write_text("{}\n", encoding="utf-8")
    (tmp_path / "identity.schema.json").unlink()

    assert main(["--check", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "labels.schema.json: differs from the event models" in err
    assert "identity.schema.json: missing" in err
    assert f"--write {tmp_path}" in err

    assert main(["--write", str(tmp_path)]) == 0
    assert main(["--check", str(tmp_path)]) == 0
