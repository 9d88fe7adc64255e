"""Versioned event models for the ``identity``, ``transactions`` and ``labels`` topics.

Models are frozen, refuse unknown fields and bound every string and list, so a hostile message
fails validation before it costs memory or reaches the graph. Identifier values are kept as the
producer sent them; `ringwatch.ingest.normalize` brings them to their canonical form.

The JSON Schemas in ``docs/events`` are generated from these models::

    python -m ringwatch.ingest.events --write docs/events   # after changing a model
    python -m ringwatch.ingest.events --check docs/events   # in CI: exit 1 when out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Final, Literal, TypeAlias, overload

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.json_schema import JsonSchemaValue, WithJsonSchema
from pydantic_core import PydanticCustomError, core_schema

from ringwatch.ingest.exceptions import EventValidationError
from ringwatch.ingest.normalize import contains_control_characters

SCHEMA_VERSION: Final = 1
MAX_EVENT_BYTES: Final = 256 * 1024
MAX_IDENTIFIERS_PER_KIND: Final = 32
MAX_REPORTED_PROBLEMS: Final = 20
JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"


@dataclass(frozen=True, slots=True)
class _NoControlCharacters:
    """Refuses control characters in a string and states the rule in the JSON Schema."""

    allow_line_breaks: bool = False

    def __get_pydantic_core_schema__(
        self, source: type[Any], handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        allowed_breaks = r"\u0009\u000a\u000d\u2028\u2029" if self.allow_line_breaks else ""
        forbidden = r"\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069"
        if allowed_breaks:
            forbidden = (
                r"\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069"
            )
        json_schema["pattern"] = f"^[^{forbidden}]*$"
        return json_schema

    def _check(self, value: str) -> str:
        if contains_control_characters(value, allow_line_breaks=self.allow_line_breaks):
            raise PydanticCustomError("control_characters", "must not contain control characters")
        return value


Id = Annotated[str, StringConstraints(min_length=1, max_length=128), _NoControlCharacters()]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=256), _NoControlCharacters()]
LongText = Annotated[
    str,
    StringConstraints(min_length=1, max_length=2000),
    _NoControlCharacters(allow_line_breaks=True),
]
RawIdentifier = Annotated[
    str, StringConstraints(min_length=1, max_length=512), _NoControlCharacters()
]
RawAddress = Annotated[
    str,
    StringConstraints(min_length=1, max_length=512),
    _NoControlCharacters(allow_line_breaks=True),
]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.-]{0,63}$")]
CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
# Twelve integer digits is far beyond any single charge; the bound stops absurd values early.
Money = Annotated[
    Decimal,
    Field(ge=0, max_digits=18, decimal_places=6),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": 999_999_999_999},
                {"type": "string", "pattern": r"^[0-9]{1,12}(\.[0-9]{1,6})?$"},
            ]
        }
    ),
]
Megabytes = Annotated[float, Field(ge=0, le=10_000_000, allow_inf_nan=False)]
Seconds = Annotated[float, Field(ge=0, le=7 * 86_400, allow_inf_nan=False)]

SubscriberStatus: TypeAlias = Literal["active", "suspended", "closed"]
Direction: TypeAlias = Literal["outgoing", "incoming"]
Label: TypeAlias = Literal["fraud", "legitimate"]
CounterpartyKind: TypeAlias = Literal["merchant", "number", "subscriber"]


def _identifier_list(description: str) -> Any:
    return Field(default=(), max_length=MAX_IDENTIFIERS_PER_KIND, description=description)


class _Model(BaseModel):
    # Strict: a string is not a number, a number is not a timestamp. Inputs never appear in
    # error text, which ends up in logs and the dead-letter topic.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, hide_input_in_errors=True)


class Identifiers(_Model):
    """Identifiers involved in an identity event, as the producer has them."""

    devices: tuple[RawIdentifier, ...] = _identifier_list("IMEI / IMEISV or device fingerprint.")
    phones: tuple[RawIdentifier, ...] = _identifier_list("MSISDN, E.164 or national format.")
    emails: tuple[RawIdentifier, ...] = _identifier_list("Email addresses.")
    addresses: tuple[RawAddress, ...] = _identifier_list("Postal addresses, free text.")
    payment_methods: tuple[RawIdentifier, ...] = Field(
        default=(),
        max_length=MAX_IDENTIFIERS_PER_KIND,
        repr=False,  # may hold card numbers until they are fingerprinted
        description="Card numbers, IBANs or payment tokens; stored only as fingerprints.",
    )
    ips: tuple[RawIdentifier, ...] = _identifier_list("IPv4 or IPv6 addresses.")


class _Envelope(_Model):
    event_id: Id = Field(description="Unique per event; redelivery repeats it.")
    schema_version: Literal[1] = Field(description="Version of this event schema.")
    occurred_at: AwareDatetime = Field(description="When it happened, with a UTC offset.")
    subscriber_id: Id = Field(description="The subscriber (account) the event is about.")
    source: ShortText | None = Field(default=None, description="Producing system.")

    @field_validator("schema_version", mode="before")
    @classmethod
    def _integer_version(cls, value: object) -> object:
        # Literal matching alone would take JSON true or 1.0 for 1.
        if type(value) is not int:
            raise PydanticCustomError("int_type", "Input should be a valid integer")
        return value


# ------------------------------------------------------------------------------------ identity


class _IdentityBase(_Envelope):
    identifiers: Identifiers = Field(default_factory=Identifiers)


class SubscriberRegistered(_IdentityBase):
    """A new subscriber account with the identifiers given at signup."""

    type: Literal["subscriber.registered"]
    name: ShortText | None = None
    status: SubscriberStatus | None = None


class SubscriberUpdated(_IdentityBase):
    """Account details changed; identifiers listed are added or seen again."""

    type: Literal["subscriber.updated"]
    name: ShortText | None = None
    status: SubscriberStatus | None = None


class SubscriberClosed(_IdentityBase):
    """The account was closed."""

    type: Literal["subscriber.closed"]
    reason: LongText | None = None


class SimActivated(_IdentityBase):
    """A SIM (phone number) was activated for the subscriber."""

    type: Literal["sim.activated"]
    identifiers: Identifiers

    @field_validator("identifiers")
    @classmethod
    def _has_phone(cls, value: Identifiers) -> Identifiers:
        if not value.phones:
            raise PydanticCustomError("missing_identifier", "sim.activated needs a phone")
        return value


class DeviceSeen(_IdentityBase):
    """The subscriber was seen on a device."""

    type: Literal["device.seen"]
    identifiers: Identifiers

    @field_validator("identifiers")
    @classmethod
    def _has_device(cls, value: Identifiers) -> Identifiers:
        if not value.devices:
            raise PydanticCustomError("missing_identifier", "device.seen needs a device")
        return value


IdentityEvent: TypeAlias = Annotated[
    SubscriberRegistered | SubscriberUpdated | SubscriberClosed | SimActivated | DeviceSeen,
    Field(discriminator="type"),
]

# -------------------------------------------------------------------------------- transactions


class Counterparty(_Model):
    """The other side: a merchant, a phone number, or another subscriber."""

    kind: CounterpartyKind
    id: Id


class Location(_Model):
    """Where the transaction happened, when known."""

    lat: Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
    lon: Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]
    country: CountryCode | None = Field(default=None, description="ISO 3166-1 alpha-2.")


class _TransactionBase(_Envelope):
    transaction_id: Id
    amount: Money | None = Field(
        default=None, description="Non-negative; send a string for exact decimals."
    )
    currency: CurrencyCode | None = Field(
        default=None, validate_default=True, description="ISO 4217; required with amount."
    )
    data_mb: Megabytes | None = None
    counterparty: Counterparty | None = None
    device: RawIdentifier | None = None
    ip: RawIdentifier | None = None
    location: Location | None = None

    @field_validator("currency")
    @classmethod
    def _currency_with_amount(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("amount") is not None:
            raise PydanticCustomError("missing_currency", "required when amount is set")
        return value


class DataUsage(_TransactionBase):
    """Mobile data consumed in a session or billing interval."""

    type: Literal["data_usage"]
    data_mb: Megabytes


class Call(_TransactionBase):
    """A voice call."""

    type: Literal["call"]
    counterparty: Counterparty
    duration_s: Seconds
    direction: Direction = "outgoing"


class Sms(_TransactionBase):
    """A text message."""

    type: Literal["sms"]
    counterparty: Counterparty
    direction: Direction = "outgoing"


class TopUp(_TransactionBase):
    """Prepaid credit added to the account."""

    type: Literal["topup"]
    amount: Money
    currency: CurrencyCode


class Payment(_TransactionBase):
    """A purchase charged to the subscriber."""

    type: Literal["payment"]
    amount: Money
    currency: CurrencyCode
    counterparty: Counterparty


class Transfer(_TransactionBase):
    """Money sent to another party."""

    type: Literal["transfer"]
    amount: Money
    currency: CurrencyCode
    counterparty: Counterparty


TransactionEvent: TypeAlias = Annotated[
    DataUsage | Call | Sms | TopUp | Payment | Transfer, Field(discriminator="type")
]

# -------------------------------------------------------------------------------------- labels


class LabelEvent(_Envelope):
    """A confirmed outcome for a subscriber: fraud or legitimate. The latest label wins."""

    label: Label
    source: Slug = Field(description="Where the label comes from: chargeback, analyst, ...")
    analyst: ShortText | None = None
    reason: LongText | None = None
    ring_id: Id | None = None
    transaction_id: Id | None = None


AnyEvent: TypeAlias = IdentityEvent | TransactionEvent | LabelEvent

# ------------------------------------------------------------------------------------- parsing


class EventFamily(StrEnum):
    """The input topics; each carries one family of events."""

    IDENTITY = "identity"
    TRANSACTIONS = "transactions"
    LABELS = "labels"


_ADAPTERS: Final[Mapping[EventFamily, TypeAdapter[Any]]] = MappingProxyType(
    {
        EventFamily.IDENTITY: TypeAdapter(IdentityEvent),
        EventFamily.TRANSACTIONS: TypeAdapter(TransactionEvent),
        EventFamily.LABELS: TypeAdapter(LabelEvent),
    }
)
_TAGS: Final[Mapping[EventFamily, tuple[str, ...]]] = MappingProxyType(
    {
        EventFamily.IDENTITY: (
            "subscriber.registered",
            "subscriber.updated",
            "subscriber.closed",
            "sim.activated",
            "device.seen",
        ),
        EventFamily.TRANSACTIONS: ("data_usage", "call", "sms", "topup", "payment", "transfer"),
        EventFamily.LABELS: (),
    }
)

RawMessage: TypeAlias = bytes | bytearray | str | None


@overload
def parse_event(
    family: Literal[EventFamily.IDENTITY], raw: RawMessage, *, max_bytes: int = ...
) -> IdentityEvent: ...
@overload
def parse_event(
    family: Literal[EventFamily.TRANSACTIONS], raw: RawMessage, *, max_bytes: int = ...
) -> TransactionEvent: ...
@overload
def parse_event(
    family: Literal[EventFamily.LABELS], raw: RawMessage, *, max_bytes: int = ...
) -> LabelEvent: ...
@overload
def parse_event(
    family: EventFamily | str, raw: RawMessage, *, max_bytes: int = ...
) -> AnyEvent: ...
def parse_event(
    family: EventFamily | str, raw: RawMessage, *, max_bytes: int = MAX_EVENT_BYTES
) -> AnyEvent:
    """Parse one JSON message of a topic family, or raise `EventValidationError`.

    ``raw`` is the message value as received; None (a Kafka tombstone) and payloads over
    ``max_bytes`` are rejected before parsing.
    """
    family = EventFamily(family)
    if raw is None or len(raw) == 0:
        raise EventValidationError(["event: empty message"])
    size = len(raw.encode("utf-8", "surrogatepass")) if isinstance(raw, str) else len(raw)
    if size > max_bytes:
        raise EventValidationError([f"event: {size} bytes is over the limit of {max_bytes}"])
    try:
        event: AnyEvent = _ADAPTERS[family].validate_json(raw)
    except ValidationError as exc:
        raise EventValidationError(_describe(exc, family)) from None
    return event


def _describe(error: ValidationError, family: EventFamily) -> list[str]:
    tags = _TAGS[family]
    problems: list[str] = []
    for item in error.errors(include_url=False, include_input=False, include_context=False):
        kind = item["type"]
        if kind in ("union_tag_invalid", "union_tag_not_found"):
            # pydantic's own text repeats the offending tag, which may be arbitrary input.
            problems.append(f"type: must be one of {', '.join(tags)}")
            continue
        loc = list(item["loc"])
        if tags and loc and loc[0] in tags:
            loc = loc[1:]  # the union member pydantic tried, not a field
        path = ".".join(_printable(str(part), 64) for part in loc) or "event"
        problems.append(f"{path}: {_printable(item['msg'], 200)}")
    if len(problems) > MAX_REPORTED_PROBLEMS:
        hidden = len(problems) - MAX_REPORTED_PROBLEMS
        problems = [*problems[:MAX_REPORTED_PROBLEMS], f"... and {hidden} more"]
    return problems


def _printable(text: str, limit: int) -> str:
    # Field names come from the message itself (unknown keys), so they are bounded and made
    # safe to print on one line.
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in text[: limit + 1])
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


# -------------------------------------------------------------------------------- JSON Schemas

SCHEMA_FILES: Final[Mapping[EventFamily, str]] = MappingProxyType(
    {
        EventFamily.IDENTITY: "identity.schema.json",
        EventFamily.TRANSACTIONS: "transactions.schema.json",
        EventFamily.LABELS: "labels.schema.json",
    }
)
_SCHEMA_TITLES: Final[Mapping[EventFamily, str]] = MappingProxyType(
    {
        EventFamily.IDENTITY: "ringwatch identity event",
        EventFamily.TRANSACTIONS: "ringwatch transaction event",
        EventFamily.LABELS: "ringwatch label event",
    }
)


def json_schemas() -> dict[str, str]:
    """File name -> JSON Schema text of each event family, formatted as checked in."""
    rendered: dict[str, str] = {}
    for family, file_name in SCHEMA_FILES.items():
        schema = _ADAPTERS[family].json_schema(mode="validation")
        schema = {
            **schema,
            "$schema": JSON_SCHEMA_DIALECT,
            "title": f"{_SCHEMA_TITLES[family]}, schema version {SCHEMA_VERSION}",
            "description": f"One JSON message on the {family} topic.",
        }
        rendered[file_name] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return rendered


def export_json_schemas(directory: Path | str) -> list[Path]:
    """Write one JSON Schema file per event family into ``directory``; return their paths."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for file_name, text in json_schemas().items():
        path = target / file_name
        path.write_text(text, encoding="utf-8", newline="\n")
        written.append(path)
    return written


def check_json_schemas(directory: Path | str) -> list[str]:
    """What differs between the schema files in ``directory`` and the models; empty if none."""
    target = Path(directory)
    problems: list[str] = []
    for file_name, text in json_schemas().items():
        path = target / file_name
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{path}: differs from the event models")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ringwatch.ingest.events",
        description="Write or check the JSON Schemas generated from the event models.",
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", metavar="DIR", type=Path, help="write the schema files")
    action.add_argument("--check", metavar="DIR", type=Path, help="exit 1 if they are stale")
    args = parser.parse_args(argv)
    if args.write is not None:
        for path in export_json_schemas(args.write):
            print(f"wrote {path}")
        return 0
    problems = check_json_schemas(args.check)
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        print(
            f"event schemas are out of date; run: python -m ringwatch.ingest.events "
            f"--write {args.check}",
            file=sys.stderr,
        )
        return 1
    print(f"{args.check}: event schemas are up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
