"""From validated events to the normalised rows the graph writer stores.

Every identifier is normalised (and keyed-hashed when PII hashing is on) here, before anything
touches the graph. An event with a value that does not normalise is rejected whole, with the
path of the offending value, so it can go to the dead-letter topic and be replayed once fixed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from pydantic import SecretStr

from ringwatch.ingest.events import (
    Call,
    DataUsage,
    Identifiers,
    LabelEvent,
    Payment,
    Sms,
    SubscriberClosed,
    SubscriberRegistered,
    SubscriberUpdated,
    TopUp,
    TransactionEvent,
    Transfer,
)
from ringwatch.ingest.events import IdentityEvent as IdentityEventModel
from ringwatch.ingest.exceptions import NormalisationError
from ringwatch.ingest.normalize import (
    IdentifierKind,
    is_placeholder_imei,
    keyed_hash,
    normalize_device,
    normalize_identifier,
    normalize_phone,
)

# Which `Identifiers` field holds which kind of identifier.
IDENTIFIER_FIELDS: dict[str, IdentifierKind] = {
    "devices": IdentifierKind.DEVICE,
    "addresses": IdentifierKind.ADDRESS,
    "payment_methods": IdentifierKind.PAYMENT,
    "phones": IdentifierKind.PHONE,
    "emails": IdentifierKind.EMAIL,
    "ips": IdentifierKind.IP,
}

# Calls shorter than this count as "very short" (SIM-box traffic is dominated by them).
SHORT_CALL_S = 10.0
# UTC hours counted as night for the call-pattern features.
NIGHT_HOURS = range(0, 6)
# Transaction kinds whose amount is money the subscriber spends (top-ups are money in).
SPEND_KINDS = frozenset({"data_usage", "call", "sms", "payment", "transfer"})


_TRANSACTION_MODELS = (DataUsage, Call, Sms, TopUp, Payment, Transfer)


class PreparationError(NormalisationError):
    """An event whose values cannot be stored; the message names the value's path."""


@dataclass(frozen=True)
class IdentifierLink:
    kind: IdentifierKind
    id: str
    # Known placeholder values (an all-zero IMEI) are hubs from the start.
    placeholder: bool = False


@dataclass(frozen=True)
class PreparedIdentity:
    event_id: str
    type: str
    subscriber_id: str
    ts: datetime
    status: str | None
    name: str | None
    links: tuple[IdentifierLink, ...]


@dataclass(frozen=True)
class PreparedTransaction:
    event_id: str
    transaction_id: str
    kind: str
    subscriber_id: str
    ts: datetime
    amount: float | None
    currency: str | None
    data_mb: float | None
    duration_s: float | None
    direction: str | None
    counterparty_kind: str | None
    counterparty_id: str | None
    lat: float | None
    lon: float | None
    country: str | None
    links: tuple[IdentifierLink, ...] = field(default=())

    @property
    def spend(self) -> float:
        return float(self.amount or 0.0) if self.kind in SPEND_KINDS else 0.0

    @property
    def topup(self) -> float:
        return float(self.amount or 0.0) if self.kind == "topup" else 0.0

    # What the transaction adds to its day's usage bucket, the same for the online writer and
    # the offline import.
    @property
    def is_call(self) -> bool:
        return self.kind == "call"

    @property
    def call_s(self) -> float:
        return (self.duration_s or 0.0) if self.is_call else 0.0

    @property
    def is_short_call(self) -> bool:
        return self.is_call and self.duration_s is not None and self.duration_s < SHORT_CALL_S

    @property
    def is_night_call(self) -> bool:
        return self.is_call and self.ts.hour in NIGHT_HOURS


def usage_day_id(subscriber_id: str, day: datetime) -> str:
    """The id of a subscriber's usage bucket for the UTC day starting at `day`."""
    return f"{subscriber_id}|day|{day.isoformat()}"


@dataclass(frozen=True)
class PreparedLabel:
    event_id: str
    subscriber_id: str
    ts: datetime
    label: Literal["fraud", "legitimate"]
    source: str
    analyst: str | None
    reason: str | None
    ring_id: str | None
    transaction_id: str | None


PreparedEvent = PreparedIdentity | PreparedTransaction | PreparedLabel


def _utc(ts: datetime) -> datetime:
    return ts.astimezone(UTC)


class Preparer:
    """Normalises events with the configured keys (one per process, reused for every event)."""

    def __init__(
        self,
        *,
        pii_hmac_key: SecretStr | None = None,
        payment_key: SecretStr | None = None,
        default_region: str = "US",
    ) -> None:
        self._hmac_key = pii_hmac_key.get_secret_value() if pii_hmac_key else None
        # Payment fingerprints are always keyed; the PII key serves when no dedicated key is set.
        payment = payment_key or pii_hmac_key
        self._payment_key = payment.get_secret_value() if payment else None
        self._region = default_region

    def identifier(self, kind: IdentifierKind, raw: str, path: str = "value") -> IdentifierLink:
        """One identifier normalised (and hashed) exactly as ingest stores it; the API's
        lookups and real-time scoring use this so they find what ingest wrote."""
        return self._identifier(kind, raw, path)

    def links(self, identifiers: Identifiers) -> tuple[IdentifierLink, ...]:
        """All identifiers of an event-shaped `Identifiers`, normalised and de-duplicated."""
        return self._links(identifiers)

    def _identifier(self, kind: IdentifierKind, raw: str, path: str) -> IdentifierLink:
        try:
            if kind is IdentifierKind.DEVICE:
                # Placeholder IMEIs are recognised on the canonical value, before any hashing.
                canonical = normalize_device(raw)
                placeholder = canonical.isdigit() and is_placeholder_imei(canonical)
                node_id = (
                    keyed_hash(canonical, self._hmac_key, kind) if self._hmac_key else canonical
                )
                return IdentifierLink(kind, node_id, placeholder)
            node_id = normalize_identifier(
                kind,
                raw,
                hmac_key=self._hmac_key,
                payment_key=self._payment_key,
                default_region=self._region,
            )
        except NormalisationError as exc:
            raise PreparationError(path, exc.reason) from None
        return IdentifierLink(kind, node_id)

    def _links(self, identifiers: Identifiers) -> tuple[IdentifierLink, ...]:
        links: dict[tuple[IdentifierKind, str], IdentifierLink] = {}
        for field_name, kind in IDENTIFIER_FIELDS.items():
            for index, raw in enumerate(getattr(identifiers, field_name)):
                link = self._identifier(kind, raw, f"identifiers.{field_name}[{index}]")
                links.setdefault((link.kind, link.id), link)
        return tuple(links.values())

    def prepare(self, event: IdentityEventModel | TransactionEvent | LabelEvent) -> PreparedEvent:
        """Raises `PreparationError` naming the value that could not be normalised."""
        if isinstance(event, LabelEvent):
            return PreparedLabel(
                event_id=event.event_id,
                subscriber_id=event.subscriber_id,
                ts=_utc(event.occurred_at),
                label=event.label,
                source=event.source,
                analyst=event.analyst,
                reason=event.reason,
                ring_id=event.ring_id,
                transaction_id=event.transaction_id,
            )
        if isinstance(event, _TRANSACTION_MODELS):
            return self._transaction(event)
        return self._identity(event)

    def _identity(self, event: IdentityEventModel) -> PreparedIdentity:
        status: str | None = None
        name: str | None = None
        if isinstance(event, SubscriberRegistered):
            status = event.status or "active"
            name = event.name
        elif isinstance(event, SubscriberUpdated):
            status, name = event.status, event.name
        elif isinstance(event, SubscriberClosed):
            status = "closed"
        if name is not None and self._hmac_key is not None:
            name = keyed_hash(name, self._hmac_key, "name")
        return PreparedIdentity(
            event_id=event.event_id,
            type=event.type,
            subscriber_id=event.subscriber_id,
            ts=_utc(event.occurred_at),
            status=status,
            name=name,
            links=self._links(event.identifiers),
        )

    def _counterparty_id(self, kind: str, raw: str) -> str:
        if kind != "number":
            return raw
        try:
            number = normalize_phone(raw, self._region)
        except NormalisationError:
            # Short codes and odd international formats are still counterparties: keep digits.
            digits = "".join(ch for ch in raw if ch.isdigit())
            if not digits:
                raise PreparationError("counterparty.id", "not a phone number") from None
            number = "tel:" + digits
        return keyed_hash(number, self._hmac_key, "phone") if self._hmac_key else number

    def _transaction(self, event: TransactionEvent) -> PreparedTransaction:
        links: list[IdentifierLink] = []
        if event.device is not None:
            links.append(self._identifier(IdentifierKind.DEVICE, event.device, "device"))
        if event.ip is not None:
            links.append(self._identifier(IdentifierKind.IP, event.ip, "ip"))
        counterparty = event.counterparty
        location = event.location
        return PreparedTransaction(
            event_id=event.event_id,
            transaction_id=event.transaction_id,
            kind=event.type,
            subscriber_id=event.subscriber_id,
            ts=_utc(event.occurred_at),
            amount=float(event.amount) if event.amount is not None else None,
            currency=event.currency,
            data_mb=event.data_mb,
            duration_s=event.duration_s if isinstance(event, Call) else None,
            direction=getattr(event, "direction", None),
            counterparty_kind=counterparty.kind if counterparty else None,
            counterparty_id=(
                self._counterparty_id(counterparty.kind, counterparty.id) if counterparty else None
            ),
            lat=location.lat if location else None,
            lon=location.lon if location else None,
            country=location.country if location else None,
            links=tuple(links),
        )
