"""A seeded subscriber population with injected fraud, for demos, tests and benchmarks.

`simulate` builds identity, transaction and label events (validated event models, sorted by
time) plus the ground truth of every subscriber: its fraud pattern, or ``legitimate``, and the
ring it belongs to. The same configuration and seed always give the same events, ids included.

The legitimate population shares identifiers the way real customers do, so a naive
"subscribers sharing an identifier" rule has false positives: households at one address (often
one card, one home IP), offices behind one IP with a shared handset, carrier-NAT IPs seen by
hundreds of subscribers and a dormitory address. Fraud patterns:

- ``multi_sim_ring``: one person opens 4-12 accounts on their own device, card, address, email
  and phone, each written a little differently (case, abbreviations, plus-tags, Gmail dots,
  phone and IMEI formats); normalisation brings them together.
- ``synthetic_identity``: 3-8 accounts assembled from pieces of real customers (one's address,
  another's name, phone numbers next to a third's), fresh devices, a few shared cards.
- ``device_farm``: 10-30 accounts created within hours on 2-3 devices and one or two IPs.
- ``sim_box``: 3-8 prepaid SIMs in one gateway making 80-200 short (mostly under 30 s) outbound
  calls a day each to ever new numbers, half of them at night.
- ``bill_shock``: after weeks of normal use, one day of roaming data charged $500 or more.
- ``account_takeover``: SIM swap, new device and foreign IP, an email change, then a burst of
  payments and transfers from far away within hours of the owner's last local call.
- ``bust_out``: months of normal use, then days of large payments and transfers, then closing.
- ``camouflaged_ring``: 4-10 accounts opened over weeks, each one unremarkable on its own: a
  fresh name, phone, email, handset and card, the address (and often the home IP) of a real
  household. Days after signup each account moves to one of the ring's 2-3 working handsets
  (mostly 2-4 accounts on each, like an office phone; 1-5 in all), behind the ring's own IP,
  and later sends a few modest transfers to one collecting account. Off by default (rate 0) so
  that the populations behind earlier figures stay the same for a seed; `bench/quality.py`
  turns it on.

Months are 30 days. Amounts are USD. Phone numbers are valid US numbers (the only region the
simulator knows); national-format numbers need the default region ``US`` to normalise.

Volume: ``transactions_per_day`` (default 3) is the mean for a typical legitimate subscriber, so
10,000 subscribers over 3 months make about 2.8 million transactions; building each one as a
validated model is what costs time (roughly 13 microseconds a transaction). Memory grows with the
transaction count (about 1.5 KB per model), so `simulate` suits populations up to a few thousand
subscribers; `simulate_to_directory` streams transactions day by day to files and keeps only one
day in memory.
"""

from __future__ import annotations

import csv
import gc
import math
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from functools import cache, partial
from operator import itemgetter
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal, TypeAlias, get_args

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ringwatch.exceptions import ConfigurationError
from ringwatch.ingest.events import (
    Call,
    Counterparty,
    DataUsage,
    DeviceSeen,
    Direction,
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
)
from ringwatch.ingest.exceptions import IngestError
from ringwatch.ingest.formats import EXTENSIONS, FileFormat, write_events
from ringwatch.ingest.normalize import luhn_check_digit, normalize_email

Pattern: TypeAlias = Literal[
    "legitimate",
    "multi_sim_ring",
    "synthetic_identity",
    "device_farm",
    "sim_box",
    "bill_shock",
    "account_takeover",
    "bust_out",
    "camouflaged_ring",
]
LEGITIMATE: Final[Pattern] = "legitimate"
FRAUD_PATTERNS: Final[tuple[Pattern, ...]] = get_args(Pattern)[1:]
RING_PATTERNS: Final[frozenset[Pattern]] = frozenset(
    {"multi_sim_ring", "synthetic_identity", "device_farm", "sim_box", "camouflaged_ring"}
)
DAYS_PER_MONTH: Final = 30
CURRENCY: Final = "USD"
GROUND_TRUTH_FILE: Final = "ground_truth.csv"

IdentityModel: TypeAlias = (
    SubscriberRegistered | SubscriberUpdated | SubscriberClosed | SimActivated | DeviceSeen
)
TransactionModel: TypeAlias = DataUsage | Call | Sms | TopUp | Payment | Transfer

_DAY: Final = 86_400
_HOUR: Final = 3_600

# ------------------------------------------------------------------------------ configuration


class FraudRates(BaseModel):
    """Share of all subscribers that belong to each fraud pattern.

    Ring patterns come in whole groups (at least one when the rate is above zero), so small
    populations get slightly more fraud than the rate says.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    multi_sim_ring: float = Field(default=0.02, ge=0, le=0.5)
    synthetic_identity: float = Field(default=0.01, ge=0, le=0.5)
    device_farm: float = Field(default=0.015, ge=0, le=0.5)
    sim_box: float = Field(default=0.005, ge=0, le=0.5)
    bill_shock: float = Field(default=0.005, ge=0, le=0.5)
    account_takeover: float = Field(default=0.005, ge=0, le=0.5)
    bust_out: float = Field(default=0.005, ge=0, le=0.5)
    # Zero by default: a new pattern would change every default population's accounts.
    camouflaged_ring: float = Field(default=0.0, ge=0, le=0.5)


class SharingRates(BaseModel):
    """How much legitimate subscribers share identifiers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    family: float = Field(default=0.3, ge=0, le=1, description="Living in households of 2-5.")
    family_shared_payment: float = Field(
        default=0.35, ge=0, le=1, description="Households paying with one card."
    )
    family_shared_ip: float = Field(
        default=0.6, ge=0, le=1, description="Households registering from one home IP."
    )
    office: float = Field(default=0.05, ge=0, le=1, description="Seen behind an office IP.")
    office_shared_device: float = Field(
        default=0.3, ge=0, le=1, description="Offices with a handset shared by 2-4 people."
    )
    carrier_nat: float = Field(default=0.3, ge=0, le=1, description="Seen on a carrier-NAT IP.")
    subscribers_per_carrier_nat_ip: int = Field(default=300, ge=10)
    dormitory: float = Field(default=0.01, ge=0, le=0.2, description="Living in a dormitory.")


class SimulationConfig(BaseModel):
    """What to simulate. Everything is derived from ``seed``; equal configs give equal output."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subscribers: int = Field(default=2000, ge=100, le=10_000_000)
    months: int = Field(default=3, ge=1, le=60, description="Months of 30 days.")
    start: date = Field(default=date(2024, 1, 1), description="First day of the history (UTC).")
    seed: int = 0
    region: Literal["US"] = "US"
    transactions_per_day: float = Field(
        default=3.0, gt=0, le=100, description="Mean for a typical legitimate subscriber."
    )
    fraud: FraudRates = Field(default_factory=FraudRates)
    sharing: SharingRates = Field(default_factory=SharingRates)
    fraud_label_rate: float = Field(default=0.3, ge=0, le=1)
    legitimate_label_rate: float = Field(default=0.02, ge=0, le=1)

    @model_validator(mode="after")
    def _fraud_is_a_minority(self) -> SimulationConfig:
        total = sum(getattr(self.fraud, name) for name in FRAUD_PATTERNS)
        if total > 0.5:
            raise ValueError(f"fraud rates add up to {total:.2f}; at most 0.5 is allowed")
        return self

    @property
    def days(self) -> int:
        """Length of the simulated history in days."""
        return self.months * DAYS_PER_MONTH


# ------------------------------------------------------------------------------------ results


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """What a subscriber really is."""

    subscriber_id: str
    pattern: Pattern
    ring_id: str | None
    is_fraud: bool


@dataclass(frozen=True, slots=True)
class Simulation:
    """A simulated history: events of each family sorted by time, and the ground truth."""

    config: SimulationConfig
    identity: list[IdentityModel]
    transactions: list[TransactionModel]
    labels: list[LabelEvent]
    ground_truth: list[GroundTruth]


def simulate(config: SimulationConfig | None = None) -> Simulation:
    """Simulate a population; see the module documentation for what it contains."""
    config = config or SimulationConfig()
    with _collection_paused():
        population = _Population(config)
        identity = population.identity_events()
        transactions = list(population.transaction_events())
        labels = population.label_events()
    return Simulation(config, identity, transactions, labels, population.ground_truth())


@contextmanager
def _collection_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while millions of acyclic models are made.

    Each collection walks every live object, and there are millions; the events hold no
    reference cycles, so nothing is lost by collecting once at the end instead.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def write_simulation(
    simulation: Simulation, directory: str | Path, fmt: FileFormat = "jsonl"
) -> dict[str, Path]:
    """Write ``identity``, ``transactions`` and ``labels`` files and ``ground_truth.csv``."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    paths = _paths(target, fmt)
    write_events(paths[EventFamily.IDENTITY], EventFamily.IDENTITY, simulation.identity)
    write_events(paths[EventFamily.TRANSACTIONS], EventFamily.TRANSACTIONS, simulation.transactions)
    write_events(paths[EventFamily.LABELS], EventFamily.LABELS, simulation.labels)
    write_ground_truth(target / GROUND_TRUTH_FILE, simulation.ground_truth)
    return {
        **{str(family): path for family, path in paths.items()},
        "ground_truth": target / GROUND_TRUTH_FILE,
    }


def simulate_to_directory(
    config: SimulationConfig, directory: str | Path, fmt: FileFormat = "jsonl"
) -> dict[str, int]:
    """Like `write_simulation(simulate(config), ...)` but streamed: memory stays flat.

    Returns the number of rows written per file stem. The files are identical to the ones
    `write_simulation` writes for the same config.
    """
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    paths = _paths(target, fmt)
    with _collection_paused():
        population = _Population(config)
        identity = population.identity_events()
        counts = {
            "identity": write_events(paths[EventFamily.IDENTITY], EventFamily.IDENTITY, identity)
        }
        counts["transactions"] = write_events(
            paths[EventFamily.TRANSACTIONS],
            EventFamily.TRANSACTIONS,
            population.transaction_events(),
        )
        counts["labels"] = write_events(
            paths[EventFamily.LABELS], EventFamily.LABELS, population.label_events()
        )
    truth = population.ground_truth()
    write_ground_truth(target / GROUND_TRUTH_FILE, truth)
    counts["ground_truth"] = len(truth)
    return counts


def write_ground_truth(path: str | Path, rows: Sequence[GroundTruth]) -> None:
    """CSV with subscriber_id, pattern, ring_id (empty when none), is_fraud (true/false)."""
    with Path(path).open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(("subscriber_id", "pattern", "ring_id", "is_fraud"))
        for row in rows:
            writer.writerow(
                (row.subscriber_id, row.pattern, row.ring_id or "", str(row.is_fraud).lower())
            )


def read_ground_truth(path: str | Path) -> list[GroundTruth]:
    """Read a file written by `write_ground_truth`."""
    patterns: dict[str, Pattern] = {name: name for name in get_args(Pattern)}
    rows: list[GroundTruth] = []
    with Path(path).open(encoding="utf-8", newline="") as source:
        for number, line in enumerate(csv.DictReader(source), start=2):
            pattern = patterns.get(line["pattern"])
            if pattern is None:
                raise IngestError(f"{path}: line {number}: unknown pattern")
            rows.append(
                GroundTruth(
                    subscriber_id=line["subscriber_id"],
                    pattern=pattern,
                    ring_id=line["ring_id"] or None,
                    is_fraud=line["is_fraud"] == "true",
                )
            )
    return rows


def _paths(directory: Path, fmt: FileFormat) -> dict[EventFamily, Path]:
    extension = EXTENSIONS[fmt]
    return {family: directory / f"{family}{extension}" for family in EventFamily}


# ---------------------------------------------------------------------------- reference data


@dataclass(frozen=True, slots=True)
class _City:
    name: str
    state: str
    zip_prefix: str
    lat: float
    lon: float
    area_codes: tuple[str, ...]
    weight: float


_CITIES: Final = (
    _City("New York", "NY", "100", 40.7128, -74.0060, ("212", "646", "917"), 8.3),
    _City("Los Angeles", "CA", "900", 34.0522, -118.2437, ("213", "323"), 3.9),
    _City("Chicago", "IL", "606", 41.8781, -87.6298, ("312", "773"), 2.7),
    _City("Houston", "TX", "770", 29.7604, -95.3698, ("713", "832"), 2.3),
    _City("Jersey City", "NJ", "073", 40.7178, -74.0431, ("201",), 0.3),
    _City("Boston", "MA", "021", 42.3601, -71.0589, ("617",), 0.7),
    _City("San Francisco", "CA", "941", 37.7749, -122.4194, ("415",), 0.8),
    _City("Seattle", "WA", "981", 47.6062, -122.3321, ("206",), 0.7),
    _City("Miami", "FL", "331", 25.7617, -80.1918, ("305", "786"), 0.5),
    _City("Atlanta", "GA", "303", 33.7490, -84.3880, ("404", "678"), 0.5),
    _City("Denver", "CO", "802", 39.7392, -104.9903, ("303", "720"), 0.7),
    _City("Austin", "TX", "787", 30.2672, -97.7431, ("512", "737"), 1.0),
)
_CITY_WEIGHTS: Final = tuple(city.weight for city in _CITIES)


@dataclass(frozen=True, slots=True)
class _Abroad:
    name: str
    country: str
    lat: float
    lon: float
    ip_prefix: str


_ROAMING: Final = (
    _Abroad("Cancun", "MX", 21.1619, -86.8515, "187.190"),
    _Abroad("Paris", "FR", 48.8566, 2.3522, "90.84"),
    _Abroad("London", "GB", 51.5072, -0.1276, "81.97"),
    _Abroad("Rome", "IT", 41.9028, 12.4964, "93.45"),
    _Abroad("Tokyo", "JP", 35.6762, 139.6503, "126.75"),
)
_FAR_AWAY: Final = (
    _Abroad("Lagos", "NG", 6.5244, 3.3792, "105.112"),
    _Abroad("Bucharest", "RO", 44.4268, 26.1025, "86.121"),
    _Abroad("Jakarta", "ID", -6.2088, 106.8456, "114.124"),
    _Abroad("Sao Paulo", "BR", -23.5558, -46.6396, "177.54"),
    _Abroad("Manila", "PH", 14.5995, 120.9842, "112.198"),
)

_FIRST_NAMES: Final = (
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David",
    "Elizabeth", "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah",
    "Carlos", "Karen", "Daniel", "Lisa", "Matthew", "Nancy", "Anthony", "Sandra", "Mark",
    "Ashley", "Wei", "Emily", "Luis", "Priya", "Kevin", "Aisha", "Brian", "Maria", "Jorge",
    "Olivia", "Omar", "Grace",
)  # fmt: skip
_LAST_NAMES: Final = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor",
    "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez",
    "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young", "Allen", "King", "Wright",
    "Nguyen", "Patel", "Chen", "Kim", "Okafor",
)  # fmt: skip
_STREETS: Final = (
    "Main", "Oak", "Maple", "Cedar", "Pine", "Elm", "Washington", "Lake", "Hill", "Park",
    "Sunset", "Lincoln", "Jackson", "Church", "Highland", "River", "Spring", "Chestnut",
    "Walnut", "Franklin", "Madison", "Adams", "Jefferson", "Prospect", "Union", "Broad",
    "Market", "Water", "Mill", "Willow",
)  # fmt: skip
# Full street suffixes with the abbreviation people also write.
_SUFFIXES: Final = (
    ("Street", "St"), ("Avenue", "Ave"), ("Road", "Rd"), ("Boulevard", "Blvd"), ("Drive", "Dr"),
    ("Lane", "Ln"), ("Court", "Ct"), ("Place", "Pl"), ("Terrace", "Ter"),
)  # fmt: skip
_DIRECTIONS: Final = (("North", "N"), ("South", "S"), ("East", "E"), ("West", "W"))
_MAIL_DOMAINS: Final = (
    "gmail.com", "gmail.com", "gmail.com", "yahoo.com", "outlook.com", "icloud.com",
    "hotmail.com", "aol.com", "proton.me", "comcast.net",
)  # fmt: skip
_DISPOSABLE_DOMAINS: Final = ("yopmail.com", "guerrillamail.com", "sharklasers.com", "mail.tm")
# Type Allocation Codes (first 8 IMEI digits) of common handsets, and of GSM gateways.
_TACS: Final = ("35332011", "35391110", "35209900", "35875311", "35699510", "35467211")
_GATEWAY_TACS: Final = ("86217903", "86445302")
_CARD_BINS: Final = ("411111", "424242", "401288", "555555", "510510", "222300")
_RESIDENTIAL_V4: Final = (24, 50, 67, 68, 69, 71, 73, 75, 76, 96, 98, 99, 107, 108, 174)
_MERCHANTS: Final = tuple(
    Counterparty(kind="merchant", id=f"m-{name}")
    for name in (
        "app-store", "play-store", "video-streaming", "music-streaming", "ride-hailing",
        "food-delivery", "grocery", "coffee", "fuel", "utilities", "transit", "games",
        "pharmacy", "bookstore", "cinema", "parking",
    )
)  # fmt: skip
_RISKY_MERCHANTS: Final = tuple(
    Counterparty(kind="merchant", id=f"m-{name}")
    for name in ("electronics-outlet", "gift-cards", "crypto-exchange", "luxury-goods", "prepaid")
)
_OTP_SENDER: Final = Counterparty(kind="number", id="32665")
_ANALYSTS: Final = ("analyst-ana", "analyst-ben", "analyst-chen", "analyst-dara")
_FRAUD_REASONS: Final[dict[str, str]] = {
    "multi_sim_ring": "one person behind several accounts on a shared device and card",
    "synthetic_identity": "synthetic identity assembled from details of several people",
    "device_farm": "accounts created in bulk from a device farm",
    "sim_box": "SIM-box bypass: bulk short outbound calls to many numbers",
    "bill_shock": "unauthorised premium data and roaming charges over $500 in a day",
    "account_takeover": "account takeover after a SIM swap; payments disputed",
    "bust_out": "bust-out: payments spiked before the account was closed",
    "camouflaged_ring": "accounts hidden behind real households, then moved to shared handsets",
}
_FRAUD_REASONS_VIEW: Final = MappingProxyType(_FRAUD_REASONS)
_GROUP_SIZES: Final[dict[Pattern, tuple[int, int]]] = {
    "multi_sim_ring": (4, 12),
    "synthetic_identity": (3, 8),
    "device_farm": (10, 30),
    "sim_box": (3, 8),
    "camouflaged_ring": (4, 10),
}
# Share of each transaction kind in a typical subscriber's day, per unit of density.
_DATA_SHARE: Final = 0.30
_CALL_SHARE: Final = 0.38
_SMS_SHARE: Final = 0.27
_PAYMENT_SHARE: Final = 0.03
_TRANSFER_SHARE: Final = 0.008
# Monday first.
_DATA_BY_WEEKDAY: Final = (0.95, 0.95, 0.97, 1.0, 1.08, 1.22, 1.18)
_CALLS_BY_WEEKDAY: Final = (1.08, 1.05, 1.05, 1.05, 1.1, 0.85, 0.75)
# Relative activity by hour of day (UTC is treated as local time: the mix matters, not the zone).
_VOICE_HOURS: Final = (
    0.6, 0.3, 0.2, 0.15, 0.15, 0.3, 1.0, 2.5, 4.0, 5.0, 5.5, 5.5,
    6.0, 5.5, 5.5, 5.5, 6.0, 6.5, 7.0, 7.0, 6.5, 5.5, 3.5, 1.5,
)  # fmt: skip
_DATA_HOURS: Final = (
    1.5, 0.8, 0.5, 0.3, 0.3, 0.5, 1.5, 3.0, 4.0, 4.0, 4.0, 4.5,
    5.0, 4.5, 4.5, 4.5, 5.0, 5.5, 6.5, 7.5, 8.0, 8.0, 6.5, 3.5,
)  # fmt: skip
# Half of a SIM box's traffic is at night (22:00-05:59), when bypass routes are cheapest.
_SIM_BOX_HOURS: Final = tuple(6.25 if hour >= 22 or hour < 6 else 3.125 for hour in range(24))
_TABLE_SIZE: Final = 1024

# Transaction kinds in a day's plan.
_DATA, _CALL, _SMS, _TOPUP, _PAYMENT, _TRANSFER = range(6)

_SOURCES: Final = MappingProxyType(
    {
        "subscriber.registered": "crm",
        "subscriber.updated": "crm",
        "subscriber.closed": "crm",
        "sim.activated": "provisioning",
        "device.seen": "network",
    }
)


def _hour_table(weights: Sequence[float]) -> tuple[int, ...]:
    # A lookup table turns one random() into an hour without a weighted draw per event.
    total = sum(weights)
    table: list[int] = []
    for hour, weight in enumerate(weights):
        table.extend([hour] * round(weight / total * _TABLE_SIZE))
    return tuple(table)


_VOICE_TABLE: Final = _hour_table(_VOICE_HOURS)
_DATA_TABLE: Final = _hour_table(_DATA_HOURS)
_SIM_BOX_TABLE: Final = _hour_table(_SIM_BOX_HOURS)


def _carrier_nat_block(index: int) -> str:
    """The /24 of the `index`-th carrier-NAT address: 172.58.10.x upwards, carrying into the
    second octet past 255 (a million subscribers need about a thousand NAT addresses)."""
    block = 58 * 256 + 10 + index
    return f"172.{block // 256}.{block % 256}"


@cache
def _exchanges(area_code: str) -> tuple[str, ...]:
    """Central-office codes used for generated numbers of an area code."""
    probe = phonenumbers.parse(f"+1{area_code}2345678")
    if not phonenumbers.is_valid_number(probe):
        raise ConfigurationError(f"area code {area_code} gives invalid numbers")
    # N11 codes are service numbers, 555 is reserved for fiction, 950/958/959/976 are special.
    special = {"555", "950", "958", "959", "976"}
    return tuple(
        f"{code}" for code in range(200, 1000) if code % 100 != 11 and f"{code}" not in special
    )


def _poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    if mean > 30:  # normal approximation; Knuth's loop gets slow and underflows
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit = math.exp(-mean)
    count = 0
    product = rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def _cents(amount_cents: int) -> Decimal:
    return Decimal(amount_cents).scaleb(-2)


# ------------------------------------------------------------------------------ identifiers


@dataclass(frozen=True, slots=True)
class _Address:
    number: int
    direction: int  # index into _DIRECTIONS, or -1
    street: str
    suffix: int  # index into _SUFFIXES
    unit: str
    city: _City
    zip_code: str

    def render(self, style: int) -> str:
        """The address as one person or another would type it; all styles normalise alike."""
        long_dir, short_dir = _DIRECTIONS[self.direction] if self.direction >= 0 else ("", "")
        long_suffix, short_suffix = _SUFFIXES[self.suffix]
        city, state, zip_code = self.city.name, self.city.state, self.zip_code
        unit = self.unit
        if style == 1:
            street = _join(self.number, short_dir + "." if short_dir else "", self.street)
            line = f"{street} {short_suffix}." + (f", Apt. {unit}" if unit else "")
            return f"{line}, {city}, {state} {zip_code}"
        if style == 2:
            street = _join(self.number, short_dir, self.street, short_suffix)
            line = street + (f" apt {unit}" if unit else "")
            return f"{line} {city} {state} {zip_code}".lower()
        if style == 3:
            street = _join(self.number, long_dir, self.street, short_suffix)
            line = street + (f" APT #{unit}" if unit else "")
            return f"{line} {city} {state} {zip_code}".upper()
        if style == 4:
            street = _join(self.number, long_dir, self.street, long_suffix).replace(" ", "  ", 1)
            line = street + (f" , Apt {unit}" if unit else "")
            return f"{line} ,  {city},  {state} {zip_code}"
        if style == 5:
            street = _join(self.number, short_dir, self.street, short_suffix)
            line = street + (f"\nApt {unit}" if unit else "")
            return f"{line}\n{city}, {state} {zip_code}"
        street = _join(self.number, long_dir, self.street, long_suffix)
        line = street + (f", Apartment {unit}" if unit else "")
        return f"{line}, {city}, {state} {zip_code}"


def _join(*parts: object) -> str:
    return " ".join(str(part) for part in parts if part != "")


_ADDRESS_STYLE_WEIGHTS: Final = (55, 20, 10, 5, 5, 5)
_ADDRESS_STYLES: Final = tuple(range(len(_ADDRESS_STYLE_WEIGHTS)))


def _phone_variant(e164: str, style: int) -> str:
    """A US number in E.164 written the ways people write it; all normalise to ``e164``."""
    area, exchange, line = e164[2:5], e164[5:8], e164[8:]
    variants = (
        e164,
        f"({area}) {exchange}-{line}",
        f"{area}-{exchange}-{line}",
        f"+1 {area} {exchange} {line}",
        f"1-{area}-{exchange}-{line}",
        f"{area}.{exchange}.{line}",
        f"{area}{exchange}{line}",
    )
    return variants[style % len(variants)]


def _imei_variant(imei: str, style: int) -> str:
    """An IMEI with separators, or as IMEISV (software version instead of the check digit)."""
    match style % 4:
        case 1:
            return f"{imei[:2]}-{imei[2:8]}-{imei[8:14]}-{imei[14]}"
        case 2:
            return f"{imei[:8]} {imei[8:14]} {imei[14]}"
        case 3:
            return imei[:14] + "07"
        case _:
            return imei


def _card_variant(pan: str, style: int) -> str:
    groups = [pan[i : i + 4] for i in range(0, len(pan), 4)]
    return (pan, " ".join(groups), "-".join(groups))[style % 3]


def _gmail_variant(local: str, style: int, rng: random.Random) -> str:
    """A Gmail address that Gmail delivers to ``local@gmail.com`` (dots and +tags ignored)."""
    match style % 5:
        case 1:
            return f"{local.replace('.', '')}@gmail.com"
        case 2:
            tag = rng.choice(("promo", "shop", "sim2", "deals", "x"))
            return f"{local}+{tag}@gmail.com"
        case 3:
            plain = local.replace(".", "")
            cut = rng.randint(1, len(plain) - 1)
            return f"{plain[:cut]}.{plain[cut:]}@googlemail.com"
        case 4:
            return f"{local}@gmail.com".upper()
        case _:
            return f"{local}@gmail.com"


class _Identifiers:
    """Generates unique identifier values from one random stream."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self._phones: set[str] = set()
        self._emails: set[str] = set()
        self._addresses: set[tuple[object, ...]] = set()
        self._imeis: set[str] = set()
        self._cards: set[str] = set()
        self._ips: set[str] = set()

    def city(self) -> _City:
        return self.rng.choices(_CITIES, weights=_CITY_WEIGHTS)[0]

    def phone(self, city: _City, *, near: str | None = None) -> str:
        """A fresh E.164 number in the city, or the next free one after ``near``."""
        rng = self.rng
        if near is not None:
            base = int(near[-4:])
            for step in range(1, 50):
                candidate = f"{near[:-4]}{(base + step) % 10_000:04d}"
                if candidate not in self._phones:
                    self._phones.add(candidate)
                    return candidate
        while True:
            area = rng.choice(city.area_codes)
            candidate = f"+1{area}{rng.choice(_exchanges(area))}{rng.randrange(10_000):04d}"
            if candidate not in self._phones:
                self._phones.add(candidate)
                return candidate

    def email(self, first: str, last: str, *, domains: Sequence[str] = _MAIL_DOMAINS) -> str:
        rng = self.rng
        while True:
            style = rng.randrange(4)
            local = (f"{first}.{last}", f"{first}{last}", f"{first[0]}{last}", f"{last}.{first}")[
                style
            ].lower()
            if rng.random() < 0.6:
                local += str(rng.randint(1, 99))
            email = f"{local}@{rng.choice(domains)}"
            key = normalize_email(email)
            if key not in self._emails:
                self._emails.add(key)
                return email

    def random_email(self, domains: Sequence[str]) -> str:
        rng = self.rng
        while True:
            local = "".join(rng.choices("abcdefghijkmnpqrstuvwxyz23456789", k=rng.randint(7, 11)))
            email = f"{local}@{rng.choice(domains)}"
            if email not in self._emails:
                self._emails.add(email)
                return email

    def address(self, city: _City, *, unit_rate: float = 0.35) -> _Address:
        rng = self.rng
        while True:
            unit = ""
            if rng.random() < unit_rate:
                unit = f"{rng.randint(1, 24)}{rng.choice('ABCD')}"
            address = _Address(
                number=rng.randint(1, 9999),
                direction=rng.randrange(len(_DIRECTIONS)) if rng.random() < 0.2 else -1,
                street=rng.choice(_STREETS),
                suffix=rng.randrange(len(_SUFFIXES)),
                unit=unit,
                city=city,
                zip_code=f"{city.zip_prefix}{rng.randrange(100):02d}",
            )
            key = (address.number, address.direction, address.street, address.suffix, unit, city)
            if key not in self._addresses:
                self._addresses.add(key)
                return address

    def imei(self, tacs: Sequence[str] = _TACS) -> str:
        rng = self.rng
        while True:
            body = f"{rng.choice(tacs)}{rng.randrange(1_000_000):06d}"
            if body not in self._imeis:
                self._imeis.add(body)
                return body + luhn_check_digit(body)

    def card(self) -> str:
        rng = self.rng
        while True:
            body = f"{rng.choice(_CARD_BINS)}{rng.randrange(10**9):09d}"
            if body not in self._cards:
                self._cards.add(body)
                return body + luhn_check_digit(body)

    def ip(self, prefix: str | None = None) -> str:
        rng = self.rng
        while True:
            if prefix is not None:
                candidate = f"{prefix}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
            elif rng.random() < 0.12:
                groups = ":".join(f"{rng.randrange(1, 0xFFFF):x}" for _ in range(3))
                candidate = f"2601:{groups}::{rng.randrange(1, 0xFFFF):x}"
            else:
                first = rng.choice(_RESIDENTIAL_V4)
                candidate = (
                    f"{first}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
                )
            if candidate not in self._ips:
                self._ips.add(candidate)
                return candidate


# ------------------------------------------------------------------------------- population


@dataclass(slots=True, eq=False)
class _Subscriber:
    """One account: who it is, how it behaves, and what is planned for it."""

    pattern: Pattern
    ring_id: str | None
    registered_s: int
    id: str = ""
    name: str = ""
    city: _City = _CITIES[0]
    sim: str = ""
    device: str = ""
    ip: str = ""
    email: str = ""
    address: _Address | None = None
    payment: str | None = None
    home: Location | None = None
    # (from, device, ip) after registration, in time order.
    changes: list[tuple[int, str, str]] = field(default_factory=list)
    contacts: list[Counterparty] = field(default_factory=list)
    merchants: list[Counterparty] = field(default_factory=list)
    household: list[Counterparty] = field(default_factory=list)
    activity: float = 1.0
    data_mb: float = 500.0
    data_sessions: float = 1.0
    call_rate: float = 1.0
    sms_rate: float = 1.0
    payment_rate: float = 0.1
    payment_boost: float = 1.0
    transfer_rate: float = 0.0
    prepaid: bool = False
    cents_per_mb: float = 0.0
    topup_every: int = 0
    topup_offset: int = 0
    end_s: int | None = None  # no own activity from here on (closed, taken over)
    fraud_s: int | None = None  # when the fraud became visible, for labels
    active_days: range = range(0)  # SIM box traffic
    quiet_days: frozenset[int] = frozenset()
    shares: bool = False  # a legitimate subscriber sharing identifiers with others


_Pending: TypeAlias = tuple[int, int, Callable[..., IdentityModel]]
# (at, kind, subscriber, counterparty, amount, data_mb, duration_s, direction, device, ip,
#  location, chargeable)
_TxPlan: TypeAlias = tuple[
    int,
    int,
    _Subscriber,
    Counterparty | None,
    Decimal | None,
    float | None,
    float | None,
    Direction | None,
    str | None,
    str | None,
    Location | None,
    bool,
]


class _Population:
    """Builds the population once; then yields events of each family."""

    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self.seed = config.seed
        self.days = config.days
        self.start_s = int(datetime.combine(config.start, time(), UTC).timestamp())
        self.end_s = self.start_s + self.days * _DAY
        self.rng = random.Random(f"{config.seed}:population")  # noqa: S311 - not for secrets
        self.ids = _Identifiers(self.rng)
        self.pending: list[_Pending] = []
        self.planned: dict[int, list[_TxPlan]] = {}
        self.number_cache: dict[str, Counterparty] = {}
        self.chargeable: dict[str, list[str]] = {}
        self.collectors: dict[str, _Subscriber] = {}
        self.hosts: set[int] = set()  # households whose address a camouflaged account took
        self.transactions_done = False
        self.subscribers = self._allocate()
        self._identities()
        self._behaviour()
        self._fraud_activity()

    # ---------------------------------------------------------------------------- allocation

    def _allocate(self) -> list[_Subscriber]:
        config, rng = self.config, self.rng
        n = config.subscribers
        subscribers: list[_Subscriber] = []
        ring_count = 0
        for pattern in FRAUD_PATTERNS:
            rate: float = getattr(config.fraud, pattern)
            if rate <= 0:
                continue
            target = max(1, round(rate * n))
            if pattern in _GROUP_SIZES:
                low, high = _GROUP_SIZES[pattern]
                members = 0
                while members < target:
                    ring_count += 1
                    size = rng.randint(low, high)
                    members += size
                    ring_id = f"ring-{ring_count:04d}"
                    subscribers.extend(self._group(pattern, ring_id, size))
            else:
                for _ in range(target):
                    subscribers.append(_Subscriber(pattern, None, self._existing_since()))
        if len(subscribers) > n // 2:
            raise ConfigurationError(
                f"{len(subscribers)} of {n} subscribers would be fraudulent; simulate more "
                "subscribers or lower the fraud rates"
            )
        for _ in range(n - len(subscribers)):
            if rng.random() < 0.1:  # joined during the simulated period
                registered = self.start_s + rng.randrange((self.days - 1) * _DAY)
            else:
                registered = self._existing_since()
            subscribers.append(_Subscriber(LEGITIMATE, None, registered))
        # Ids follow signup order, as account numbers do; ties keep allocation order.
        subscribers.sort(key=lambda sub: sub.registered_s)
        width = max(6, len(str(n)))
        for number, sub in enumerate(subscribers, start=1):
            sub.id = f"sub-{number:0{width}d}"
        return subscribers

    def _existing_since(self) -> int:
        return self.start_s - self.rng.randint(45 * _DAY, 1500 * _DAY)

    def _group(self, pattern: Pattern, ring_id: str, size: int) -> list[_Subscriber]:
        rng, days = self.rng, self.days
        if pattern == "multi_sim_ring":
            first = self.start_s + rng.randrange(int(days * 0.7) * _DAY)
            times = [first, *(first + rng.randrange(10 * _DAY) for _ in range(size - 1))]
        elif pattern == "synthetic_identity":
            first = self.start_s + rng.randrange(int(days * 0.6) * _DAY)
            times = [first, *(first + rng.randrange(21 * _DAY) for _ in range(size - 1))]
        elif pattern == "device_farm":
            first = self.start_s + rng.randrange(days - 3) * _DAY + rng.randint(1, 20) * _HOUR
            spread = rng.randint(2, 6) * _HOUR
            times = [first + rng.randrange(spread) for _ in range(size)]
        elif pattern == "camouflaged_ring":
            # Spread over weeks, as ordinary signups are, not in a burst.
            first = self.start_s + rng.randrange(int(days * 0.5) * _DAY)
            times = [first, *(first + rng.randrange(30 * _DAY) for _ in range(size - 1))]
        else:  # sim_box: a batch of prepaid SIMs activated together
            first = self.start_s + rng.randrange(days - 15) * _DAY + rng.randint(8, 18) * _HOUR
            times = [first + rng.randrange(_HOUR) for _ in range(size)]
        latest = self.end_s - 2 * _DAY
        return [_Subscriber(pattern, ring_id, min(at, latest)) for at in sorted(times)]

    # ---------------------------------------------------------------------------- identities

    def _identity(self, at: int, factory: Callable[..., IdentityModel], **fields: Any) -> None:
        self.pending.append((at, len(self.pending), partial(factory, **fields)))

    def _register(
        self,
        sub: _Subscriber,
        *,
        devices: Sequence[str] = (),
        phones: Sequence[str] = (),
        emails: Sequence[str] = (),
        addresses: Sequence[str] = (),
        payment_methods: Sequence[str] = (),
        ips: Sequence[str] = (),
    ) -> None:
        identifiers = Identifiers(
            devices=tuple(devices),
            phones=tuple(phones),
            emails=tuple(emails),
            addresses=tuple(addresses),
            payment_methods=tuple(payment_methods),
            ips=tuple(ips),
        )
        self._identity(
            sub.registered_s,
            SubscriberRegistered,
            type="subscriber.registered",
            subscriber_id=sub.id,
            name=sub.name,
            status="active",
            identifiers=identifiers,
            source=_SOURCES["subscriber.registered"],
        )
        # The carrier's provisioning system always reports the SIM in E.164.
        self._identity(
            sub.registered_s + self.rng.randint(20, 600),
            SimActivated,
            type="sim.activated",
            subscriber_id=sub.id,
            identifiers=Identifiers(phones=(sub.sim,)),
            source=_SOURCES["sim.activated"],
        )

    def _device_seen(self, sub: _Subscriber, at: int, device: str, ip: str) -> None:
        self._identity(
            at,
            DeviceSeen,
            type="device.seen",
            subscriber_id=sub.id,
            identifiers=Identifiers(devices=(device,), ips=(ip,)),
            source=_SOURCES["device.seen"],
        )
        sub.changes.append((at, device, ip))
        sub.changes.sort(key=itemgetter(0))

    def _person(self, sub: _Subscriber, city: _City | None = None, last: str | None = None) -> None:
        ids = self.ids
        sub.city = city or ids.city()
        first = self.rng.choice(_FIRST_NAMES)
        last = last or self.rng.choice(_LAST_NAMES)
        sub.name = f"{first} {last}"
        sub.sim = ids.phone(sub.city)
        sub.email = ids.email(first, last)
        sub.device = ids.imei()
        sub.ip = ids.ip()
        sub.payment = ids.card()

    def _identities(self) -> None:
        legit = [sub for sub in self.subscribers if sub.pattern == LEGITIMATE]
        by_pattern: dict[str, list[_Subscriber]] = {}
        for sub in self.subscribers:
            by_pattern.setdefault(sub.ring_id or sub.pattern, []).append(sub)
        households = self._legitimate(legit)
        for sub in self.subscribers:
            if sub.pattern in ("bill_shock", "account_takeover", "bust_out"):
                self._person(sub)
                sub.address = self.ids.address(sub.city)
                self._register_plain(sub)
        for members in by_pattern.values():
            pattern = members[0].pattern
            if pattern == "multi_sim_ring":
                self._multi_sim_ring(members)
            elif pattern == "synthetic_identity":
                self._synthetic_identity(members, legit)
            elif pattern == "device_farm":
                self._device_farm(members)
                self.collectors[members[0].ring_id or ""] = members[0]
            elif pattern == "sim_box":
                self._sim_box(members)
            elif pattern == "camouflaged_ring":
                self._camouflaged_ring(members, households)
                self.collectors[members[0].ring_id or ""] = members[0]
        self._contacts(households)

    def _register_plain(self, sub: _Subscriber, *, address_style: int | None = None) -> None:
        rng = self.rng
        assert sub.address is not None
        style = address_style
        if style is None:
            style = rng.choices(_ADDRESS_STYLES, weights=_ADDRESS_STYLE_WEIGHTS)[0]
        phone = sub.sim if rng.random() < 0.6 else _phone_variant(sub.sim, 1)
        self._register(
            sub,
            devices=(sub.device,),
            phones=(phone,),
            emails=(sub.email,),
            addresses=(sub.address.render(style),),
            payment_methods=(sub.payment,) if sub.payment else (),
            ips=(sub.ip,),
        )

    def _legitimate(self, legit: list[_Subscriber]) -> list[list[_Subscriber]]:
        """Identities of legitimate subscribers, with households, offices, NAT and a dorm."""
        rng, ids, sharing = self.rng, self.ids, self.config.sharing
        pool = legit[:]
        rng.shuffle(pool)
        households: list[list[_Subscriber]] = []
        in_family = round(len(pool) * sharing.family)
        taken = 0
        while taken < in_family and len(pool) - taken >= 2:
            size = min(rng.randint(2, 5), len(pool) - taken)
            households.append(pool[taken : taken + size])
            taken += size
        dorm_size = round(len(legit) * sharing.dormitory)
        dorm_members = pool[taken : taken + dorm_size] if dorm_size >= 3 else []
        taken += len(dorm_members)
        singles = pool[taken:]

        for household in households:
            city = ids.city()
            address = ids.address(city)
            surname = rng.choice(_LAST_NAMES)
            shared_card = ids.card() if rng.random() < sharing.family_shared_payment else None
            shared_ip = ids.ip() if rng.random() < sharing.family_shared_ip else None
            for member in household:
                # Most of a household shares the surname.
                self._person(member, city, surname if rng.random() < 0.8 else None)
                member.address = address
                member.payment = shared_card or member.payment
                member.ip = shared_ip or member.ip
                member.shares = True
                # Each member types the shared address their own way.
                self._register_plain(member, address_style=rng.randrange(len(_ADDRESS_STYLES)))
        if dorm_members:
            city = ids.city()
            dorm = _Address(
                rng.randint(100, 999), -1, "College", 1, "", city, city.zip_prefix + "00"
            )
            for member in dorm_members:
                self._person(member, city)
                member.address = dorm
                member.shares = True
                self._register_plain(member, address_style=rng.randrange(len(_ADDRESS_STYLES)))
        for sub in singles:
            self._person(sub)
            sub.address = ids.address(sub.city)
            self._register_plain(sub)

        self._offices(legit)
        self._carrier_nat(legit)
        self._everyday_changes(legit)
        return households

    def _offices(self, legit: list[_Subscriber]) -> None:
        rng, ids, sharing = self.rng, self.ids, self.config.sharing
        workers = rng.sample(legit, round(len(legit) * sharing.office))
        while len(workers) >= 3:
            size = min(rng.randint(3, 12), len(workers))
            office, workers = workers[:size], workers[size:]
            office_ip = ids.ip()
            handset = ids.imei() if rng.random() < sharing.office_shared_device else None
            handset_users = set(rng.sample(range(size), min(size, rng.randint(2, 4))))
            for position, member in enumerate(office):
                member.shares = True
                device = handset if handset and position in handset_users else member.device
                self._device_seen(member, self._sometime_after(member), device, office_ip)

    def _carrier_nat(self, legit: list[_Subscriber]) -> None:
        rng, sharing = self.rng, self.config.sharing
        behind = [sub for sub in legit if rng.random() < sharing.carrier_nat]
        if not behind:
            return
        count = max(2, round(len(behind) / sharing.subscribers_per_carrier_nat_ip))
        nat_ips = [f"{_carrier_nat_block(index)}.{rng.randint(1, 254)}" for index in range(count)]
        for sub in behind:
            sub.shares = True
            self._device_seen(sub, self._sometime_after(sub), sub.device, rng.choice(nat_ips))

    def _everyday_changes(self, legit: list[_Subscriber]) -> None:
        """New IPs, new phones, moves, email changes and churn of ordinary customers."""
        rng, ids = self.rng, self.ids
        for sub in legit:
            if rng.random() < 0.45:
                self._device_seen(sub, self._sometime_after(sub), sub.device, ids.ip())
            if rng.random() < 0.15:
                self._device_seen(sub, self._sometime_after(sub), sub.device, ids.ip())
            if rng.random() < 0.06:
                # A new handset, after every sighting of the old one so it is not seen again.
                latest = max((at for at, _, _ in sub.changes), default=None)
                self._device_seen(sub, self._sometime_after(sub, latest), ids.imei(), ids.ip())
            roll = rng.random()
            if roll < 0.03:
                first, last = sub.name.split(" ", 1)
                self._identity(
                    self._sometime_after(sub),
                    SubscriberUpdated,
                    type="subscriber.updated",
                    subscriber_id=sub.id,
                    identifiers=Identifiers(emails=(ids.email(first, last),)),
                    source=_SOURCES["subscriber.updated"],
                )
            elif roll < 0.05:
                moved = ids.address(sub.city)
                self._identity(
                    self._sometime_after(sub),
                    SubscriberUpdated,
                    type="subscriber.updated",
                    subscriber_id=sub.id,
                    identifiers=Identifiers(addresses=(moved.render(0),)),
                    source=_SOURCES["subscriber.updated"],
                )
            if rng.random() < 0.01:  # churn
                closed = self._sometime_after(sub)
                sub.end_s = closed
                self._close(sub, closed, "ported out to another carrier")

    def _close(self, sub: _Subscriber, at: int, reason: str) -> None:
        self._identity(
            at,
            SubscriberClosed,
            type="subscriber.closed",
            subscriber_id=sub.id,
            reason=reason,
            source=_SOURCES["subscriber.closed"],
        )

    def _sometime_after(self, sub: _Subscriber, after: int | None = None) -> int:
        """A moment within the simulated period, after signup (and ``after``)."""
        start = max(self.start_s, sub.registered_s + _HOUR, (after or 0) + 60)
        return start + self.rng.randrange(max(60, self.end_s - _HOUR - start))

    def _multi_sim_ring(self, members: list[_Subscriber]) -> None:
        rng, ids = self.rng, self.ids
        city = ids.city()
        first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
        local = f"{first}.{last}{rng.randint(1, 99)}".lower()
        address = ids.address(city)
        own_phone = ids.phone(city)
        devices = [ids.imei() for _ in range(rng.randint(1, 2))]
        cards = [ids.card() for _ in range(rng.randint(1, 2))]
        home_ip = ids.ip()
        names = (
            f"{first} {last}",
            f"{first[0]}. {last}",
            f"{first} {last[0]}.",
            last + " " + first,
        )
        for position, sub in enumerate(members):
            sub.city = city
            sub.name = names[position % len(names)]
            sub.sim = ids.phone(city)
            sub.address = address
            # Every account keeps at least one strong link (device or card) to the person.
            use_device = rng.random() < 0.75
            use_card = rng.random() < 0.7 or not use_device
            sub.device = rng.choice(devices) if use_device else ids.imei()
            sub.payment = rng.choice(cards) if use_card else ids.card()
            sub.ip = home_ip if rng.random() < 0.6 else ids.ip()
            sub.email = (
                _gmail_variant(local, position, rng)
                if rng.random() < 0.75
                else ids.random_email(_MAIL_DOMAINS)
            )
            phones = [sub.sim]
            if rng.random() < 0.6:
                phones.insert(0, _phone_variant(own_phone, position))
            self._register(
                sub,
                devices=(_imei_variant(sub.device, position),),
                phones=phones,
                emails=(sub.email,),
                addresses=(
                    address.render(position % len(_ADDRESS_STYLES))
                    if rng.random() < 0.8
                    else ids.address(city).render(0),
                ),
                payment_methods=(_card_variant(sub.payment, position),),
                ips=(sub.ip,),
            )
            sub.fraud_s = sub.registered_s
            sub.activity = 0.6

    def _synthetic_identity(self, members: list[_Subscriber], legit: list[_Subscriber]) -> None:
        rng, ids = self.rng, self.ids
        donors = [sub for sub in legit if sub.address is not None]
        cards = [ids.card() for _ in range(rng.randint(1, 2))]
        number_donor = rng.choice(donors)
        previous = number_donor.sim
        shared_ip = ids.ip()
        for sub in members:
            name_donor, address_donor = rng.choice(donors), rng.choice(donors)
            sub.city = address_donor.city
            first = name_donor.name.split(" ", 1)[0]
            last = rng.choice(donors).name.split(" ", 1)[-1]
            sub.name = f"{first} {last}"
            # Numbers right next to a real customer's: the same block, so they look established.
            sub.sim = previous = ids.phone(number_donor.city, near=previous)
            sub.email = ids.email(first, last)
            sub.device = ids.imei()
            sub.ip = shared_ip if rng.random() < 0.5 else ids.ip()
            sub.payment = rng.choice(cards)
            sub.address = address_donor.address
            assert address_donor.address is not None
            self._register(
                sub,
                devices=(sub.device,),
                phones=(sub.sim,),
                emails=(sub.email,),
                addresses=(address_donor.address.render(rng.randrange(len(_ADDRESS_STYLES))),),
                payment_methods=(sub.payment,),
                ips=(sub.ip,),
            )
            sub.fraud_s = sub.registered_s
            sub.payment_boost = 3.0  # building a payment history

    def _device_farm(self, members: list[_Subscriber]) -> None:
        rng, ids = self.rng, self.ids
        devices = [ids.imei() for _ in range(rng.randint(2, 3))]
        farm_ips = [ids.ip() for _ in range(rng.randint(1, 2))]
        users: dict[str, set[int]] = {device: set() for device in devices}
        for position, sub in enumerate(members):
            sub.city = ids.city()
            sub.name = f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}"
            sub.sim = ids.phone(sub.city)
            sub.email = ids.random_email(_DISPOSABLE_DOMAINS)
            sub.address = ids.address(sub.city, unit_rate=0.0)
            sub.device = devices[position % len(devices)]
            sub.ip = rng.choice(farm_ips)
            sub.payment = ids.card() if rng.random() < 0.5 else None
            users[sub.device].add(position)
            self._register_plain(sub, address_style=0)
            sub.fraud_s = sub.registered_s
            sub.activity = 0.15
        # Farms rotate accounts across their handsets: each one ends up used by many accounts.
        wanted = min(10, len(members))
        for device, positions in users.items():
            others = [index for index in range(len(members)) if index not in positions]
            rng.shuffle(others)
            for index in others[: max(0, wanted - len(positions))] + [
                index for index in others[wanted:] if rng.random() < 0.5
            ]:
                sub = members[index]
                at = sub.registered_s + rng.randint(5 * 60, 3 * _HOUR)
                self._device_seen(sub, at, device, rng.choice(farm_ips))

    def _camouflaged_ring(
        self, members: list[_Subscriber], households: list[list[_Subscriber]]
    ) -> None:
        """Accounts that each look like an ordinary customer until they share a handset."""
        rng, ids = self.rng, self.ids
        handsets = [ids.imei() for _ in range(rng.randint(2, 3))]
        ring_ip = ids.ip()
        for position, sub in enumerate(members):
            # A real household's address (and often its home IP) ties the account to
            # legitimate customers; the family's own identifiers are left alone. One ring
            # account per household, so accounts never meet at an address.
            household = self._unhosted(households)
            host = rng.choice(household) if household else None
            self._person(sub, host.city if host else None)
            sub.address = host.address if host and host.address else ids.address(sub.city)
            if host and rng.random() < 0.5:
                sub.ip = host.ip
            self._register_plain(sub, address_style=rng.randrange(len(_ADDRESS_STYLES)))
            sub.activity = rng.uniform(0.7, 1.1)
            # The move to a working handset: consecutive accounts share one (mostly 2-4 on a
            # handset; 1 or 5 in some rings of 4 or 10).
            handset = handsets[position * len(handsets) // len(members)]
            moved = min(sub.registered_s + rng.randint(2 * _DAY, 10 * _DAY), self.end_s - 2 * _DAY)
            self._device_seen(sub, max(moved, sub.registered_s + _HOUR), handset, ring_ip)
            sub.fraud_s = sub.changes[-1][0]

    def _sim_box(self, members: list[_Subscriber]) -> None:
        rng, ids = self.rng, self.ids
        gateway = ids.imei(_GATEWAY_TACS)
        gateway_ip = ids.ip()
        card = ids.card()
        city = ids.city()
        site = Location(
            lat=round(city.lat + rng.uniform(-0.05, 0.05), 4),
            lon=round(city.lon + rng.uniform(-0.05, 0.05), 4),
            country="US",
        )
        first_day = (members[0].registered_s - self.start_s) // _DAY + 1
        last_day = min(self.days, first_day + rng.randint(10, 30))
        for sub in members:
            sub.city = city
            sub.name = f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}"
            sub.sim = ids.phone(city)
            sub.email = ids.random_email(_DISPOSABLE_DOMAINS)
            sub.address = ids.address(ids.city(), unit_rate=0.0)
            sub.device, sub.ip, sub.payment = gateway, gateway_ip, card
            sub.home = site
            sub.active_days = range(first_day, last_day)
            sub.fraud_s = self.start_s + first_day * _DAY
            self._register_plain(sub, address_style=0)

    # ----------------------------------------------------------------------------- behaviour

    def _number(self, number: str) -> Counterparty:
        counterparty = self.number_cache.get(number)
        if counterparty is None:
            counterparty = self.number_cache[number] = Counterparty(kind="number", id=number)
        return counterparty

    def _contacts(self, households: list[list[_Subscriber]]) -> None:
        rng, ids = self.rng, self.ids
        sims = [sub.sim for sub in self.subscribers if sub.pattern != "sim_box"]
        for household in households:
            for member in household:
                member.household = [
                    Counterparty(kind="subscriber", id=other.id)
                    for other in household
                    if other is not member
                ]
                member.contacts = [self._number(o.sim) for o in household if o is not member]
        # Numbers outside the population (shops, doctors, friends on other networks), shared
        # the way real contact lists overlap.
        outside = [ids.phone(ids.city()) for _ in range(max(500, len(self.subscribers)))]
        for sub in self.subscribers:
            known = rng.sample(sims, min(len(sims), rng.randint(2, 8)))
            strangers = rng.sample(outside, rng.randint(3, 12))
            sub.contacts.extend(self._number(number) for number in known + strangers)
            if sub.pattern == "sim_box":
                sub.contacts = sub.contacts[:4]
            sub.merchants = rng.sample(_MERCHANTS, rng.randint(3, 6))

    def _behaviour(self) -> None:
        """Per-subscriber baselines: volume, mix, plan, home location."""
        rng, density = self.rng, self.config.transactions_per_day
        for sub in self.subscribers:
            activity = sub.activity * min(4.0, rng.lognormvariate(-0.1, 0.45))
            sub.data_mb = min(8000.0, max(20.0, rng.lognormvariate(math.log(600), 0.8)))
            sub.data_sessions = max(0.0, _DATA_SHARE * density * activity - 1.0)
            sub.call_rate = _CALL_SHARE * density * activity
            sub.sms_rate = _SMS_SHARE * density * activity
            sub.payment_rate = _PAYMENT_SHARE * density * activity * sub.payment_boost
            sub.transfer_rate = _TRANSFER_SHARE * density * activity
            sub.prepaid = sub.pattern in ("sim_box", "device_farm") or rng.random() < 0.3
            if sub.prepaid:
                # Pay-as-you-go data at $5-$12 per GB.
                sub.cents_per_mb = rng.uniform(0.5, 1.2)
                sub.topup_every = rng.randint(7, 30)  # SIM boxes top up on their own rhythm
                sub.topup_offset = rng.randrange(sub.topup_every)
            if sub.home is None:
                sub.home = Location(
                    lat=round(sub.city.lat + rng.uniform(-0.08, 0.08), 4),
                    lon=round(sub.city.lon + rng.uniform(-0.08, 0.08), 4),
                    country="US",
                )

    def _fraud_activity(self) -> None:
        """Plan the transactions that make each fraud pattern visible."""
        for sub in self.subscribers:
            if sub.pattern == "bill_shock":
                self._bill_shock(sub)
            elif sub.pattern == "account_takeover":
                self._account_takeover(sub)
            elif sub.pattern == "bust_out":
                self._bust_out(sub)
            elif sub.pattern == "device_farm":
                self._farm_transfers(sub)
            elif sub.pattern == "camouflaged_ring":
                self._ring_cash_out(sub)

    def _plan(self, plan: _TxPlan) -> None:
        day = (plan[0] - self.start_s) // _DAY
        if 0 <= day < self.days:
            self.planned.setdefault(day, []).append(plan)

    def _late_day(self) -> int:
        # Late enough for weeks of normal history (z-scores need a baseline) before the fraud.
        return self.rng.randint(min(14, self.days - 2), self.days - 2)

    def _bill_shock(self, sub: _Subscriber) -> None:
        rng = self.rng
        day = self._late_day()
        sub.quiet_days = frozenset({day})  # abroad: none of the usual home traffic that day
        abroad = rng.choice(_ROAMING)
        where = Location(lat=abroad.lat, lon=abroad.lon, country=abroad.country)
        total_cents = rng.randint(52_000, 240_000)
        # Far above the subscriber's own volume too, so a z-score on data sees it as well.
        total_mb = min(40_000.0, max(2_000.0, sub.data_mb * rng.uniform(6, 15)))
        sessions = rng.randint(4, 12)
        weights = [rng.uniform(0.5, 1.5) for _ in range(sessions)]
        scale = sum(weights)
        cents = [int(total_cents * weight / scale) for weight in weights]
        cents[-1] += total_cents - sum(cents)
        day_start = self.start_s + day * _DAY
        times = sorted(day_start + rng.randint(7 * _HOUR, 23 * _HOUR) for _ in range(sessions))
        for at, amount in zip(times, cents, strict=True):
            data_mb = round(total_mb * amount / total_cents, 3)
            self._plan(
                (at, _DATA, sub, None, _cents(amount), data_mb, None, None, sub.device,
                 sub.ip, where, False)
            )  # fmt: skip
        sub.fraud_s = times[0]

    def _account_takeover(self, sub: _Subscriber) -> None:
        rng, ids = self.rng, self.ids
        takeover = self.start_s + self._late_day() * _DAY + rng.randint(9 * _HOUR, 20 * _HOUR)
        attacker = rng.choice(_FAR_AWAY)
        where = Location(
            lat=round(attacker.lat + rng.uniform(-0.05, 0.05), 4),
            lon=round(attacker.lon + rng.uniform(-0.05, 0.05), 4),
            country=attacker.country,
        )
        device, ip = ids.imei(), ids.ip(attacker.ip_prefix)
        # The owner's last call at home, shortly before: the next event is a continent away.
        assert sub.home is not None and sub.contacts
        self._plan(
            (takeover - rng.randint(20 * 60, 90 * 60), _CALL, sub, sub.contacts[0], None, None,
             float(rng.randint(30, 300)), "outgoing", None, None, sub.home, False)
        )  # fmt: skip
        self._identity(
            takeover - 300,
            SimActivated,
            type="sim.activated",
            subscriber_id=sub.id,
            identifiers=Identifiers(phones=(sub.sim,)),
            source=_SOURCES["sim.activated"],
        )
        self._identity(
            takeover,
            DeviceSeen,
            type="device.seen",
            subscriber_id=sub.id,
            identifiers=Identifiers(devices=(device,), ips=(ip,)),
            source=_SOURCES["device.seen"],
        )
        self._identity(
            takeover + 600,
            SubscriberUpdated,
            type="subscriber.updated",
            subscriber_id=sub.id,
            identifiers=Identifiers(emails=(ids.random_email(_DISPOSABLE_DOMAINS),)),
            source=_SOURCES["subscriber.updated"],
        )
        sub.end_s = takeover - 300  # the owner's SIM stops working at the swap
        sub.fraud_s = takeover
        window = rng.randint(1, 6) * _HOUR
        for _ in range(rng.randint(5, 15)):
            at = takeover + 900 + rng.randrange(window)
            amount = _cents(rng.randint(15_000, 95_000))
            if rng.random() < 0.6:
                kind, counterparty = _PAYMENT, rng.choice(_RISKY_MERCHANTS)
            else:
                kind, counterparty = _TRANSFER, self._number(ids.phone(ids.city()))
            self._plan(
                (at, kind, sub, counterparty, amount, None, None, None, device, ip, where, True)
            )

    def _bust_out(self, sub: _Subscriber) -> None:
        rng, ids = self.rng, self.ids
        day = rng.randint(max(min(21, self.days - 2), int(self.days * 0.6)), self.days - 1)
        closed = self.start_s + day * _DAY + rng.randint(9 * _HOUR, 22 * _HOUR)
        begins = closed - rng.randint(3, 7) * _DAY
        sub.end_s = closed
        sub.fraud_s = begins
        self._close(sub, closed, "closed at the subscriber's request")
        for _ in range(rng.randint(10, 40)):
            at = begins + rng.randrange(closed - _HOUR - begins)
            amount = _cents(rng.randint(20_000, 150_000))
            if rng.random() < 0.65:
                kind, counterparty = _PAYMENT, rng.choice(_RISKY_MERCHANTS)
            else:
                kind, counterparty = _TRANSFER, self._number(ids.phone(ids.city()))
            self._plan(
                (at, kind, sub, counterparty, amount, None, None, None, sub.device, sub.ip,
                 sub.home, True)
            )  # fmt: skip

    def _farm_transfers(self, sub: _Subscriber) -> None:
        rng = self.rng
        assert sub.ring_id is not None
        # Sign-up codes arrive by SMS, then promotional credit is moved to one account.
        self._plan(
            (sub.registered_s + rng.randint(30, 300), _SMS, sub, _OTP_SENDER, None, None, None,
             "incoming", None, None, sub.home, False)
        )  # fmt: skip
        collector = self.collectors[sub.ring_id]
        if collector is sub:
            return
        to_collector = Counterparty(kind="subscriber", id=collector.id)
        for _ in range(rng.randint(1, 3)):
            at = sub.registered_s + rng.randint(_DAY, 6 * _DAY)
            self._plan(
                (at, _TRANSFER, sub, to_collector, _cents(rng.randint(500, 2500)), None, None,
                 None, sub.device, sub.ip, sub.home, False)
            )  # fmt: skip

    def _unhosted(self, households: list[list[_Subscriber]]) -> list[_Subscriber] | None:
        """A household no camouflaged account has used yet, or None after a few tries."""
        if not households:
            return None
        for _ in range(20):
            household = self.rng.choice(households)
            if id(household) not in self.hosts:
                self.hosts.add(id(household))
                return household
        return None

    def _ring_cash_out(self, sub: _Subscriber) -> None:
        """A few modest transfers to the ring's collecting account, after the handset move."""
        rng = self.rng
        assert sub.ring_id is not None and sub.fraud_s is not None
        collector = self.collectors[sub.ring_id]
        if collector is sub:
            return
        to_collector = Counterparty(kind="subscriber", id=collector.id)
        _, handset, ring_ip = sub.changes[-1]
        for _ in range(rng.randint(2, 4)):
            at = self._sometime_after(sub, sub.fraud_s)
            self._plan(
                (at, _TRANSFER, sub, to_collector, _cents(rng.randint(4_000, 30_000)), None,
                 None, None, handset, ring_ip, sub.home, False)
            )  # fmt: skip

    # -------------------------------------------------------------------------------- events

    def identity_events(self) -> list[IdentityModel]:
        """All identity events in time order."""
        ordered = sorted(self.pending, key=itemgetter(0, 1))
        events: list[IdentityModel] = []
        for number, (at, _, build) in enumerate(ordered, start=1):
            occurred = datetime.fromtimestamp(at, UTC)
            events.append(
                build(event_id=f"idn-{number:08d}", schema_version=1, occurred_at=occurred)
            )
        return events

    def transaction_events(self) -> Iterator[TransactionModel]:
        """All transactions in time order, generated one day at a time."""
        self.chargeable = {}
        number = 0
        for day in range(self.days):
            for plan in self._day(day):
                number += 1
                yield self._transaction(plan, number)
        self.transactions_done = True

    def _day(self, day: int) -> list[_TxPlan]:
        # One random stream per day: a day's traffic does not depend on how others were drawn.
        rng = random.Random(f"{self.seed}:transactions:{day}")  # noqa: S311
        day_start = self.start_s + day * _DAY
        day_end = day_start + _DAY
        weekday = datetime.fromtimestamp(day_start, UTC).weekday()
        plans = list(self.planned.get(day, ()))
        for sub in self.subscribers:
            if sub.registered_s >= day_end or (sub.end_s is not None and sub.end_s <= day_start):
                continue
            if sub.pattern == "sim_box":
                self._sim_box_day(rng, sub, day, day_start, plans)
            elif day not in sub.quiet_days:
                self._ordinary_day(rng, sub, day, day_start, weekday, plans)
        plans.sort(key=itemgetter(0))
        return plans

    def _ordinary_day(
        self,
        rng: random.Random,
        sub: _Subscriber,
        day: int,
        day_start: int,
        weekday: int,
        plans: list[_TxPlan],
    ) -> None:
        low = max(day_start, sub.registered_s)
        high = day_start + _DAY if sub.end_s is None else min(day_start + _DAY, sub.end_s)
        device, ip = sub.device, sub.ip
        for at, new_device, new_ip in sub.changes:
            if at > day_start:
                break
            device, ip = new_device, new_ip
        home, random_ = sub.home, rng.random
        data_table, voice_table = _DATA_TABLE, _VOICE_TABLE
        size = len(data_table)

        sessions = 1 + _poisson(rng, sub.data_sessions)
        total_mb = sub.data_mb * _DATA_BY_WEEKDAY[weekday] * rng.lognormvariate(0, 0.3)
        for _ in range(sessions):
            at = day_start + data_table[int(random_() * size)] * _HOUR + int(random_() * _HOUR)
            if low <= at < high:
                data_mb = round(total_mb / sessions * (0.5 + random_()), 3)
                amount = None
                if sub.prepaid:
                    amount = _cents(max(1, round(data_mb * sub.cents_per_mb)))
                plans.append(
                    (at, _DATA, sub, None, amount, data_mb, None, None, device, ip, home, False)
                )

        contacts = sub.contacts
        count = len(contacts)
        voice_size = len(voice_table)
        calls = _poisson(rng, sub.call_rate * _CALLS_BY_WEEKDAY[weekday])
        for _ in range(calls):
            at = day_start + voice_table[int(random_() * voice_size)] * _HOUR
            at += int(random_() * _HOUR)
            if low <= at < high:
                # Favourites get most calls: squaring skews the index towards the front.
                contact = contacts[int(count * random_() ** 2)]
                duration = float(min(5400, max(2, round(rng.lognormvariate(4.3, 1.0)))))
                direction: Direction = "outgoing" if random_() < 0.55 else "incoming"
                plans.append(
                    (at, _CALL, sub, contact, None, None, duration, direction, None, None, home,
                     False)
                )  # fmt: skip
        for _ in range(_poisson(rng, sub.sms_rate)):
            at = day_start + voice_table[int(random_() * voice_size)] * _HOUR
            at += int(random_() * _HOUR)
            if low <= at < high:
                contact = contacts[int(count * random_() ** 2)]
                direction = "outgoing" if random_() < 0.5 else "incoming"
                plans.append(
                    (at, _SMS, sub, contact, None, None, None, direction, None, None, home, False)
                )
        for _ in range(_poisson(rng, sub.payment_rate)):
            at = day_start + voice_table[int(random_() * voice_size)] * _HOUR
            at += int(random_() * _HOUR)
            if low <= at < high:
                merchant = rng.choice(sub.merchants) if random_() < 0.85 else rng.choice(_MERCHANTS)
                cents = min(40_000, max(99, round(rng.lognormvariate(math.log(1200), 0.9))))
                plans.append(
                    (at, _PAYMENT, sub, merchant, _cents(cents), None, None, None, device, ip,
                     home, False)
                )  # fmt: skip
        for _ in range(_poisson(rng, sub.transfer_rate)):
            at = day_start + voice_table[int(random_() * voice_size)] * _HOUR
            at += int(random_() * _HOUR)
            if low <= at < high:
                target = rng.choice(sub.household) if sub.household else rng.choice(contacts)
                cents = rng.randint(10, 200) * 100
                plans.append(
                    (at, _TRANSFER, sub, target, _cents(cents), None, None, None, device, ip,
                     home, False)
                )  # fmt: skip
        if sub.topup_every and day % sub.topup_every == sub.topup_offset:
            at = day_start + rng.randint(8 * _HOUR, 22 * _HOUR)
            if low <= at < high:
                cents = rng.choice((10, 15, 20, 25, 30, 40, 50)) * 100
                plans.append(
                    (at, _TOPUP, sub, None, _cents(cents), None, None, None, device, ip, home,
                     False)
                )  # fmt: skip

    def _sim_box_day(
        self, rng: random.Random, sub: _Subscriber, day: int, day_start: int, plans: list[_TxPlan]
    ) -> None:
        if day >= sub.active_days.stop:
            return  # the box was switched off
        if day % 3 == 0 and day_start >= sub.registered_s:
            plans.append(
                (day_start + rng.randint(6 * _HOUR, 10 * _HOUR), _TOPUP, sub, None,
                 _cents(rng.choice((25, 40, 50)) * 100), None, None, None, sub.device, sub.ip,
                 sub.home, False)
            )  # fmt: skip
        if day not in sub.active_days:
            return
        table, random_ = _SIM_BOX_TABLE, rng.random
        size = len(table)
        for _ in range(rng.randint(80, 200)):
            at = day_start + table[int(random_() * size)] * _HOUR + int(random_() * _HOUR)
            # Terminated calls to ever new numbers; only a few repeat.
            if random_() < 0.9:
                city = _CITIES[int(random_() * len(_CITIES))]
                area = city.area_codes[int(random_() * len(city.area_codes))]
                exchanges = _exchanges(area)
                number = (
                    f"+1{area}{exchanges[int(random_() * len(exchanges))]}"
                    f"{int(random_() * 10_000):04d}"
                )
                contact = Counterparty(kind="number", id=number)
            else:
                contact = rng.choice(sub.contacts)
            duration = round(min(45.0, max(2.0, rng.expovariate(1 / 11))), 1)
            plans.append(
                (at, _CALL, sub, contact, None, None, duration, "outgoing", sub.device, None,
                 sub.home, False)
            )  # fmt: skip

    def _transaction(self, plan: _TxPlan, number: int) -> TransactionModel:
        (
            at,
            kind,
            sub,
            counterparty,
            amount,
            data_mb,
            duration,
            direction,
            device,
            ip,
            where,
            mark,
        ) = plan
        event_id, transaction_id = f"txn-{number:010d}", f"tx-{number:010d}"
        occurred = datetime.fromtimestamp(at, UTC)
        if mark:
            self.chargeable.setdefault(sub.id, []).append(transaction_id)
        # Keywords spelled out per kind: this runs millions of times, and building a shared
        # dict to unpack costs as much as a third of the validation itself.
        if kind == _CALL:
            assert counterparty is not None and duration is not None and direction is not None
            return Call(
                event_id=event_id,
                schema_version=1,
                occurred_at=occurred,
                subscriber_id=sub.id,
                source="mediation",
                transaction_id=transaction_id,
                type="call",
                counterparty=counterparty,
                duration_s=duration,
                direction=direction,
                device=device,
                location=where,
            )
        if kind == _DATA:
            assert data_mb is not None
            return DataUsage(
                event_id=event_id,
                schema_version=1,
                occurred_at=occurred,
                subscriber_id=sub.id,
                source="mediation",
                transaction_id=transaction_id,
                type="data_usage",
                data_mb=data_mb,
                amount=amount,
                currency=None if amount is None else CURRENCY,
                device=device,
                ip=ip,
                location=where,
            )
        if kind == _SMS:
            assert counterparty is not None and direction is not None
            return Sms(
                event_id=event_id,
                schema_version=1,
                occurred_at=occurred,
                subscriber_id=sub.id,
                source="mediation",
                transaction_id=transaction_id,
                type="sms",
                counterparty=counterparty,
                direction=direction,
                location=where,
            )
        assert amount is not None
        if kind == _TOPUP:
            return TopUp(
                event_id=event_id,
                schema_version=1,
                occurred_at=occurred,
                subscriber_id=sub.id,
                source="billing",
                transaction_id=transaction_id,
                type="topup",
                amount=amount,
                currency=CURRENCY,
                device=device,
                ip=ip,
                location=where,
            )
        assert counterparty is not None
        if kind == _PAYMENT:
            return Payment(
                event_id=event_id,
                schema_version=1,
                occurred_at=occurred,
                subscriber_id=sub.id,
                source="wallet",
                transaction_id=transaction_id,
                type="payment",
                amount=amount,
                currency=CURRENCY,
                counterparty=counterparty,
                device=device,
                ip=ip,
                location=where,
            )
        return Transfer(
            event_id=event_id,
            schema_version=1,
            occurred_at=occurred,
            subscriber_id=sub.id,
            source="wallet",
            transaction_id=transaction_id,
            type="transfer",
            amount=amount,
            currency=CURRENCY,
            counterparty=counterparty,
            device=device,
            ip=ip,
            location=where,
        )

    def label_events(self) -> list[LabelEvent]:
        """Confirmed outcomes for some subscribers; needs the transactions generated first."""
        if not self.transactions_done:
            raise RuntimeError("generate the transactions before the labels")
        rng = random.Random(f"{self.seed}:labels")  # noqa: S311
        config = self.config
        pending: list[tuple[int, dict[str, Any]]] = []
        last = self.end_s - 60
        for sub in self.subscribers:
            if sub.pattern == LEGITIMATE:
                if rng.random() >= config.legitimate_label_rate:
                    continue
                at = self._label_time(rng, max(self.start_s, sub.registered_s), last)
                reason = (
                    "verified customer; shares identifiers with household, office or network"
                    if sub.shares
                    else "verified customer"
                )
                pending.append(
                    (at, {"subscriber_id": sub.id, "label": "legitimate", "source": "analyst",
                          "analyst": rng.choice(_ANALYSTS), "reason": reason})
                )  # fmt: skip
                continue
            if rng.random() >= config.fraud_label_rate:
                continue
            seen = sub.fraud_s if sub.fraud_s is not None else max(self.start_s, sub.registered_s)
            at = min(last, seen + rng.randint(2 * _HOUR, 21 * _DAY))
            at = max(at, min(seen + 60, last))
            disputed = self.chargeable.get(sub.id)
            fields: dict[str, Any] = {
                "subscriber_id": sub.id,
                "label": "fraud",
                "reason": _FRAUD_REASONS_VIEW[sub.pattern],
            }
            if disputed and rng.random() < 0.7:
                fields.update(source="chargeback", transaction_id=rng.choice(disputed))
            else:
                fields.update(source="analyst", analyst=rng.choice(_ANALYSTS))
            pending.append((at, fields))
        pending.sort(key=itemgetter(0))
        return [
            LabelEvent(
                event_id=f"lbl-{number:07d}",
                schema_version=1,
                occurred_at=datetime.fromtimestamp(at, UTC),
                **fields,
            )
            for number, (at, fields) in enumerate(pending, start=1)
        ]

    @staticmethod
    def _label_time(rng: random.Random, earliest: int, latest: int) -> int:
        return earliest + rng.randrange(max(1, latest - earliest))

    def ground_truth(self) -> list[GroundTruth]:
        """One row per subscriber, in id order."""
        return [
            GroundTruth(sub.id, sub.pattern, sub.ring_id, sub.pattern != LEGITIMATE)
            for sub in self.subscribers
        ]
