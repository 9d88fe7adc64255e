"""Canonical forms of identifiers, applied before any MERGE.

Two spellings of the same email, phone, IMEI, address, payment instrument or IP must land on the
same graph node, or rings fall apart into singletons. Every function here is pure: it returns the
canonical string (or a fingerprint) or raises `NormalisationError`, whose message names the rule
that failed and never the value.

With a key, `normalize_identifier` stores keyed hashes instead of the canonical values, so the
graph can run without raw personal data. Payment instruments are always fingerprinted.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import itertools
import re
import unicodedata
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final, TypeAlias

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat
from pydantic import SecretStr

from ringwatch.exceptions import ConfigurationError
from ringwatch.ingest.exceptions import NormalisationError

MAX_INPUT_LENGTH: Final = 512
MAX_EMAIL_LENGTH: Final = 254  # RFC 5321 path limit
MAX_EMAIL_LOCAL_LENGTH: Final = 64
MAX_FINGERPRINT_LENGTH: Final = 256
DEVICE_FINGERPRINT_PREFIX: Final = "fp:"
PAYMENT_ID_PREFIX: Final = "pm_"
HASH_PREFIX: Final = "h:"

HmacKey: TypeAlias = str | bytes | SecretStr
"""A key for identifier hashing: text (UTF-8 encoded), raw bytes, or a pydantic secret."""


class IdentifierKind(StrEnum):
    """The identifier node types of the graph."""

    DEVICE = "device"
    ADDRESS = "address"
    PAYMENT = "payment"
    PHONE = "phone"
    EMAIL = "email"
    IP = "ip"


class PaymentKind(StrEnum):
    CARD = "card"
    BANK_ACCOUNT = "bank_account"
    TOKEN = "token"  # noqa: S105 - a category name, not a secret


@dataclass(frozen=True, slots=True)
class PaymentFingerprint:
    """What the graph keeps of a payment instrument: a keyed digest, its kind, and last 4."""

    id: str
    kind: PaymentKind
    last4: str | None


class WeakFingerprintWarning(UserWarning):
    """Payment fingerprints were computed without a key."""


# C0/C1 controls, lone surrogates (they cannot be encoded for Neo4j or hashing), Unicode line and
# paragraph separators, and bidirectional overrides (they make a value display as something else).
_FORBIDDEN: Final = re.compile(
    "[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
# Postal addresses and free-text notes are often multi-line; there line breaks are separators.
_FORBIDDEN_MULTILINE: Final = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]"
)
_ASCII_DIGITS: Final = re.compile("[0-9]+")


def contains_control_characters(text: str, *, allow_line_breaks: bool = False) -> bool:
    """Whether ``text`` holds control, bidi-override or lone-surrogate characters.

    With ``allow_line_breaks``, tabs, CR/LF and Unicode line/paragraph separators are allowed.
    """
    pattern = _FORBIDDEN_MULTILINE if allow_line_breaks else _FORBIDDEN
    return pattern.search(text) is not None


def _guard(
    field: str,
    raw: object,
    *,
    max_length: int = MAX_INPUT_LENGTH,
    forbidden: re.Pattern[str] = _FORBIDDEN,
) -> str:
    """The checks every normaliser shares: text, bounded length, no control characters."""
    if not isinstance(raw, str):
        raise NormalisationError(field, "expected text")
    if len(raw) > max_length:
        raise NormalisationError(field, f"longer than {max_length} characters")
    if forbidden.search(raw):
        raise NormalisationError(field, "contains control characters")
    return raw


def _non_empty(field: str, value: str) -> str:
    if not value:
        raise NormalisationError(field, "empty")
    return value


# --------------------------------------------------------------------------------------- email


@dataclass(frozen=True, slots=True)
class MailProvider:
    canonical_domain: str
    ignores_dots: bool


# Mail providers whose rules merge addresses that look different. Plus tags need no entry: they
# are removed for every domain (see `normalize_email`).
MAIL_PROVIDERS: Final[Mapping[str, MailProvider]] = MappingProxyType(
    {
        # Gmail ignores dots in the mailbox name and answers for googlemail.com too.
        "gmail.com": MailProvider("gmail.com", ignores_dots=True),
        "googlemail.com": MailProvider("gmail.com", ignores_dots=True),
    }
)

# Whitespace and the RFC 5322 specials that only appear in quoted or display-name forms.
_EMAIL_FORBIDDEN: Final = re.compile(r'[\s<>()\[\],;:\\"]')


def normalize_email(raw: str) -> str:
    """Lower-case an email address, drop its ``+tag`` and apply provider rules.

    Sub-addressing (``name+tag@``) is on by default at most large providers and is the usual way
    one person makes many accounts, so the tag is removed for every domain.
    """
    value = _non_empty("email", _guard("email", raw).strip().lower())
    if len(value) > MAX_EMAIL_LENGTH:
        raise NormalisationError("email", f"longer than {MAX_EMAIL_LENGTH} characters")
    if _EMAIL_FORBIDDEN.search(value):
        raise NormalisationError("email", "contains whitespace or characters not allowed here")
    if value.count("@") != 1:
        raise NormalisationError("email", "must contain exactly one @")
    local, domain = value.split("@")
    if not local:
        raise NormalisationError("email", "local part is empty")
    if len(local) > MAX_EMAIL_LOCAL_LENGTH:
        raise NormalisationError(
            "email", f"local part longer than {MAX_EMAIL_LOCAL_LENGTH} characters"
        )
    domain = domain.removesuffix(".")  # a fully qualified "example.com." is the same domain
    _check_domain(domain)

    local = local.split("+", 1)[0]
    if not local:
        raise NormalisationError("email", "local part is empty once the +tag is removed")
    provider = MAIL_PROVIDERS.get(domain)
    if provider is not None:
        domain = provider.canonical_domain
        if provider.ignores_dots:
            local = local.replace(".", "")
            if not local:
                raise NormalisationError("email", "local part has nothing but dots")
    return f"{local}@{domain}"


def _check_domain(domain: str) -> None:
    labels = domain.split(".")
    if len(labels) < 2:
        raise NormalisationError("email", "domain has no dot")
    for label in labels:
        if not label:
            raise NormalisationError("email", "domain has an empty label")
        if len(label) > 63:
            raise NormalisationError("email", "domain label longer than 63 characters")
        if label.startswith("-") or label.endswith("-"):
            raise NormalisationError("email", "domain label starts or ends with a hyphen")
        if not all(ch.isalnum() or ch == "-" for ch in label):
            raise NormalisationError("email", "domain has characters not allowed in a host name")
    if labels[-1].isdigit():
        raise NormalisationError("email", "domain ends in a number")


# --------------------------------------------------------------------------------------- phone

_PHONE_PARSE_REASONS: Final[Mapping[int, str]] = MappingProxyType(
    {
        NumberParseException.INVALID_COUNTRY_CODE: "missing or unknown country code",
        NumberParseException.NOT_A_NUMBER: "not a phone number",
        NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
        NumberParseException.TOO_SHORT_NSN: "too short",
        NumberParseException.TOO_LONG: "too long",
    }
)


def normalize_phone(raw: str, default_region: str | None = "US") -> str:
    """A phone number in E.164 (``+14155550123``); numbers without ``+`` use ``default_region``."""
    value = _non_empty("phone", _guard("phone", raw, max_length=64).strip())
    try:
        number = phonenumbers.parse(value, default_region)
    except NumberParseException as exc:
        reason = _PHONE_PARSE_REASONS.get(exc.error_type, "not a phone number")
        if exc.error_type == NumberParseException.INVALID_COUNTRY_CODE:
            reason = f"{reason} (default region {default_region})"
        raise NormalisationError("phone", reason) from None
    if not phonenumbers.is_valid_number(number):
        region = phonenumbers.region_code_for_number(number)
        raise NormalisationError("phone", f"not a valid number for region {region}")
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


# ---------------------------------------------------------------------------------------- IMEI

_IMEI_SEPARATORS: Final = re.compile(r"[ \-/]")
_IMEI_LIKE: Final = re.compile(r"[0-9 \-/]+")


def luhn_check_digit(body: str) -> str:
    """The Luhn check digit that completes ``body`` (ASCII digits)."""
    total = 0
    for position, ch in enumerate(reversed(body)):
        digit = ord(ch) - 48
        if position % 2 == 0:  # doubled: the check digit itself will sit at odd position 0
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return str((10 - total % 10) % 10)


def luhn_valid(digits: str) -> bool:
    """Whether the last digit of ``digits`` is the Luhn check digit of the rest."""
    return len(digits) >= 2 and luhn_check_digit(digits[:-1]) == digits[-1]


def normalize_imei(raw: str) -> str:
    """A 15-digit IMEI with a valid Luhn check digit.

    Accepts 15 digits (the check digit must match), 14 digits (TAC + serial; the check digit is
    computed) and 16-digit IMEISV (the two software-version digits are dropped). Placeholder
    values such as ``123456789012345`` are accepted even with a wrong check digit, which is then
    corrected: emulators and cheap devices report them, and the graph must see them to mark them
    as hubs.
    """
    value = _non_empty("imei", _guard("imei", raw, max_length=64).strip())
    digits = _non_empty("imei", _IMEI_SEPARATORS.sub("", value))
    if not _ASCII_DIGITS.fullmatch(digits):
        raise NormalisationError("imei", "must contain only digits, spaces, dashes or slashes")
    body = digits[:14]
    if len(digits) == 15:
        if digits[14] != luhn_check_digit(body) and not _is_placeholder_body(body):
            raise NormalisationError("imei", "check digit does not match (Luhn)")
    elif len(digits) not in (14, 16):
        raise NormalisationError("imei", f"expected 14, 15 or 16 digits, got {len(digits)}")
    return body + luhn_check_digit(body)


def is_placeholder_imei(imei: str) -> bool:
    """Whether an IMEI is an obviously fake value (zeros, one repeated digit, a counting run).

    Such values are valid input, but many unrelated subscribers share them, so callers should
    mark their nodes as hubs.
    """
    digits = "".join(ch for ch in imei if "0" <= ch <= "9")
    return len(digits) >= 14 and _is_placeholder_body(digits[:14])


def _is_placeholder_body(body: str) -> bool:
    # A repeating pattern of up to four digits: 000..., 111..., 1212..., 12341234...
    for period in range(1, 5):
        if body == (body[:period] * 14)[:14]:
            return True
    # A counting run, wrapping at 9: 12345678901234, 98765432109876.
    steps = {(int(b) - int(a)) % 10 for a, b in itertools.pairwise(body)}
    return steps in ({1}, {9})


def normalize_device(raw: str) -> str:
    """A device id: a 15-digit IMEI when the value looks like one, else ``fp:<fingerprint>``.

    Values of 14 to 16 digits (with optional separators) are treated as IMEIs and must be valid.
    Anything else is an opaque device fingerprint from a device-intelligence SDK, kept
    case-sensitive and prefixed so it can never collide with an IMEI.
    """
    value = _non_empty("device", _guard("device", raw).strip())
    if _IMEI_LIKE.fullmatch(value) and 14 <= len(_IMEI_SEPARATORS.sub("", value)) <= 16:
        return normalize_imei(value)
    fingerprint = value.removeprefix(DEVICE_FINGERPRINT_PREFIX)
    if not fingerprint:
        raise NormalisationError("device", "empty fingerprint")
    if len(fingerprint) > MAX_FINGERPRINT_LENGTH:
        raise NormalisationError(
            "device", f"fingerprint longer than {MAX_FINGERPRINT_LENGTH} characters"
        )
    if any(ch.isspace() for ch in fingerprint):
        raise NormalisationError("device", "fingerprint contains whitespace")
    return DEVICE_FINGERPRINT_PREFIX + fingerprint


# ------------------------------------------------------------------------------------- address

# One canonical spelling per word: the USPS (Publication 28) abbreviation. Values map to
# themselves, which keeps normalisation idempotent.
_ADDRESS_WORDS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "st": ("street", "saint"),
        "ave": ("avenue", "av", "avenu", "avn"),
        "rd": ("road",),
        "blvd": ("boulevard", "boul"),
        "dr": ("drive", "drv"),
        "ln": ("lane",),
        "ct": ("court",),
        "pl": ("place",),
        "sq": ("square",),
        "ter": ("terrace",),
        "cir": ("circle",),
        "cres": ("crescent",),
        "hwy": ("highway",),
        "pkwy": ("parkway",),
        "expy": ("expressway",),
        "fwy": ("freeway",),
        "trl": ("trail",),
        "mt": ("mount",),
        "ft": ("fort",),
        "apt": ("apartment",),
        "ste": ("suite",),
        "bldg": ("building",),
        "fl": ("floor",),
        "rm": ("room",),
        "dept": ("department",),
        "unit": (),
        "n": ("north",),
        "s": ("south",),
        "e": ("east",),
        "w": ("west",),
        "ne": ("northeast",),
        "nw": ("northwest",),
        "se": ("southeast",),
        "sw": ("southwest",),
    }
)
ADDRESS_ABBREVIATIONS: Final[Mapping[str, str]] = MappingProxyType(
    {word: short for short, words in _ADDRESS_WORDS.items() for word in (short, *words)}
)
# "apt #4" and "apt 4" are the same unit; a bare "#4" stays as written.
_UNIT_DESIGNATORS: Final = frozenset({"apt", "ste", "unit", "bldg", "fl", "rm", "dept"})
# Dropped without a space so "O'Connor" == "OConnor" and "St." == "St".
_ADDRESS_DROPPED: Final = frozenset("'.`\u2018\u2019\u02bc")
_ADDRESS_KEPT: Final = frozenset("#/")
_AROUND_JOINERS: Final = re.compile(r"\s*([-/])\s*")
_AFTER_HASH: Final = re.compile(r"#\s+")


def normalize_address(raw: str) -> str:
    """A postal address folded to one spelling: case, spacing, punctuation and abbreviations.

    Only ``#``, ``-`` and ``/`` survive (unit numbers, ranges, fractions); common street words,
    unit designators and compass points become their abbreviation ("Street" -> "st").
    """
    value = _guard("address", raw, forbidden=_FORBIDDEN_MULTILINE)
    value = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", value).casefold())
    chars: list[str] = []
    for ch in value:
        if ch in _ADDRESS_KEPT:
            chars.append(ch)
        elif ch in _ADDRESS_DROPPED:
            continue
        else:
            category = unicodedata.category(ch)
            if category == "Pd":
                chars.append("-")
            elif category == "Cf":  # soft hyphens, zero-width joiners: invisible, not a break
                continue
            elif category[0] in "PSZC":
                chars.append(" ")
            else:
                chars.append(ch)
    # Dropping a character can put a letter next to a combining mark; compose them again.
    text = unicodedata.normalize("NFKC", "".join(chars))
    text = _AFTER_HASH.sub("#", _AROUND_JOINERS.sub(r"\1", text))

    tokens: list[str] = []
    for word in text.split():
        token = ADDRESS_ABBREVIATIONS.get(word, word)
        if token.startswith("#") and len(token) > 1 and tokens and tokens[-1] in _UNIT_DESIGNATORS:
            token = token[1:]
        tokens.append(token)
    result = " ".join(tokens)
    if not any(ch.isalnum() for ch in result):
        raise NormalisationError("address", "empty once punctuation is removed")
    if len(result) > MAX_INPUT_LENGTH:
        raise NormalisationError("address", f"longer than {MAX_INPUT_LENGTH} characters")
    return result


# ------------------------------------------------------------------------------------- payment

_CARD_SEPARATORS: Final = re.compile(r"[ \-]")
_IBAN: Final = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}")


def fingerprint_payment(raw: str, *, key: HmacKey | None) -> PaymentFingerprint:
    """Replace a card number, IBAN or payment token with ``pm_`` + 32 hex of its HMAC-SHA256.

    Cards are recognised as 12 to 19 Luhn-valid digits (spaces and dashes ignored), bank accounts as
    IBANs with a valid mod-97 checksum; anything else is an opaque token, hashed as given. The
    service passes ``scoring.pii_hmac_key`` or a dedicated key. With ``key=None`` the digest is an
    unkeyed SHA-256 and a `WeakFingerprintWarning` is issued: the card number space is small
    enough to brute-force, so unkeyed fingerprints only hide numbers from a casual reader.
    """
    value = _non_empty("payment", _guard("payment", raw).strip())
    compact = _CARD_SEPARATORS.sub("", value)
    last4: str | None
    if _ASCII_DIGITS.fullmatch(compact) and 12 <= len(compact) <= 19 and luhn_valid(compact):
        kind, canonical, last4 = PaymentKind.CARD, compact, compact[-4:]
    else:
        iban = "".join(value.split()).upper()  # IBANs are printed in groups of four
        if _IBAN.fullmatch(iban) and _iban_checksum_valid(iban):
            kind, canonical, last4 = PaymentKind.BANK_ACCOUNT, iban, iban[-4:]
        else:
            kind, canonical, last4 = PaymentKind.TOKEN, value, None
    if key is None:
        warnings.warn(
            "payment fingerprints computed without a key are weak; configure a key",
            WeakFingerprintWarning,
            stacklevel=2,
        )
    digest = _digest(key, f"payment/{kind}", canonical)
    return PaymentFingerprint(id=PAYMENT_ID_PREFIX + digest[:32], kind=kind, last4=last4)


def _iban_checksum_valid(iban: str) -> bool:
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


# ------------------------------------------------------------------------------------------ IP


def normalize_ip(raw: str) -> str:
    """An IP address in compressed form; IPv4-mapped IPv6 becomes IPv4, zone ids are dropped."""
    value = _non_empty("ip", _guard("ip", raw, max_length=64).strip())
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise NormalisationError("ip", "not a valid IPv4 or IPv6 address") from None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        if address.scope_id is not None:
            # The zone names an interface on the reporting host, not part of the identity.
            return str(ipaddress.IPv6Address(address.packed))
    return str(address)


# ------------------------------------------------------------------------------------- hashing


def _key_bytes(key: HmacKey) -> bytes:
    secret = key.get_secret_value() if isinstance(key, SecretStr) else key
    material = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    if not material:
        raise ConfigurationError("the identifier hashing key must not be empty")
    return material


def _digest(key: HmacKey | None, domain: str, value: str) -> str:
    # The domain keeps equal strings of different kinds (an email and a token) apart.
    message = f"ringwatch/{domain}\x00".encode() + value.encode("utf-8", "surrogatepass")
    if key is None:
        return hashlib.sha256(message).hexdigest()
    return hmac.new(_key_bytes(key), message, hashlib.sha256).hexdigest()


def keyed_hash(value: str, key: HmacKey, kind: IdentifierKind | str) -> str:
    """``h:`` + hex HMAC-SHA256 of a canonical value, domain-separated by identifier kind."""
    return HASH_PREFIX + _digest(key, f"id/{kind}", value)


# ------------------------------------------------------------------------------------ dispatch


def normalize_identifier(
    kind: IdentifierKind,
    raw: str,
    *,
    hmac_key: HmacKey | None = None,
    payment_key: HmacKey | None = None,
    default_region: str | None = "US",
) -> str:
    """The graph node id of an identifier.

    The value is normalised, then replaced by `keyed_hash` when ``hmac_key`` is given. Payment
    instruments are always fingerprinted, with ``payment_key`` or else ``hmac_key`` (see
    `fingerprint_payment` for what happens when both are None).
    """
    match kind:
        case IdentifierKind.PAYMENT:
            key = payment_key if payment_key is not None else hmac_key
            return fingerprint_payment(raw, key=key).id
        case IdentifierKind.DEVICE:
            value = normalize_device(raw)
        case IdentifierKind.ADDRESS:
            value = normalize_address(raw)
        case IdentifierKind.PHONE:
            value = normalize_phone(raw, default_region)
        case IdentifierKind.EMAIL:
            value = normalize_email(raw)
        case IdentifierKind.IP:
            value = normalize_ip(raw)
    if hmac_key is None:
        return value
    return keyed_hash(value, hmac_key, kind)
