from __future__ import annotations

import pickle
import re
from collections.abc import Callable

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberFormat
from pydantic import SecretStr

from ringwatch.exceptions import ConfigurationError
from ringwatch.ingest.exceptions import NormalisationError
from ringwatch.ingest.normalize import (
    IdentifierKind,
    PaymentKind,
    WeakFingerprintWarning,
    fingerprint_payment,
    is_placeholder_imei,
    keyed_hash,
    luhn_check_digit,
    luhn_valid,
    normalize_address,
    normalize_device,
    normalize_email,
    normalize_identifier,
    normalize_imei,
    normalize_ip,
    normalize_phone,
)

KEY = "test-hmac-key"
OTHER_KEY = "another-test-hmac-key"
VISA_TEST_PAN = "4111111111111111"
VALID_IMEI = "490154203237518"

# Every character, including lone surrogates and controls, which hostile JSON can carry.
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=80)


def _card_numbers() -> st.SearchStrategy[str]:
    bodies = st.text(alphabet="0123456789", min_size=11, max_size=18)
    return bodies.map(lambda body: body + luhn_check_digit(body))


# ----------------------------------------------------------------------------------- email


def test_gmail_addresses_ignore_case_dots_plus_tags_and_the_googlemail_alias() -> None:
    assert normalize_email("  John.Doe+promo@GoogleMail.com ") == "johndoe@gmail.com"
    assert normalize_email("j.o.h.n.d.o.e@gmail.com") == "johndoe@gmail.com"


def test_other_providers_keep_dots_but_lose_plus_tags() -> None:
    assert normalize_email("John.Doe+news@Example.COM") == "john.doe@example.com"


def test_trailing_dot_of_a_fully_qualified_domain_is_dropped() -> None:
    assert normalize_email("a@example.com.") == "a@example.com"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("no-at-sign.example.com", "exactly one @"),
        ("a@b@example.com", "exactly one @"),
        ("@example.com", "local part is empty"),
        ("+tag@example.com", "once the +tag is removed"),
        ("user@localhost", "domain has no dot"),
        ("user@example..com", "empty label"),
        ("user@-example.com", "hyphen"),
        ("us er@example.com", "whitespace"),
        ("user@exa_mple.com", "host name"),
        ("user@10.0.0.1", "ends in a number"),
        ("...@gmail.com", "nothing but dots"),
        ("a" * 65 + "@example.com", "local part longer than 64"),
        ("a@" + "b" * 250 + ".com", "longer than 254"),
        ("user\x00@example.com", "control characters"),
    ],
)
def test_implausible_emails_are_rejected_with_a_reason(raw: str, reason: str) -> None:
    with pytest.raises(NormalisationError, match=re.escape(reason)) as caught:
        normalize_email(raw)
    assert caught.value.field == "email"


# ----------------------------------------------------------------------------------- phone


def test_national_phone_numbers_use_the_default_region() -> None:
    assert normalize_phone("(202) 456-1111") == "+12024561111"
    assert normalize_phone("020 7946 0958", default_region="GB") == "+442079460958"


def test_international_phone_numbers_ignore_the_default_region() -> None:
    assert normalize_phone("+44 20 7946 0958", default_region="US") == "+442079460958"


def test_invalid_phone_number_message_names_the_region_but_not_the_number() -> None:
    with pytest.raises(NormalisationError) as caught:
        normalize_phone("+1 202 000 1111")
    message = str(caught.value)
    assert message.startswith("phone: not a valid number for region")
    assert "2020001111" not in message.replace(" ", "")


def test_phone_without_country_code_or_default_region_is_rejected() -> None:
    with pytest.raises(NormalisationError, match="country code"):
        normalize_phone("202 456 1111", default_region=None)


@pytest.mark.parametrize("raw", ["", "12", "hello", "+" + "9" * 40])
def test_non_numbers_are_rejected_as_phones(raw: str) -> None:
    with pytest.raises(NormalisationError, match=r"^phone: "):
        normalize_phone(raw)


# ------------------------------------------------------------------------------------ IMEI


def test_valid_fifteen_digit_imei_is_kept() -> None:
    assert normalize_imei(VALID_IMEI) == VALID_IMEI


def test_imei_separators_are_ignored() -> None:
    assert normalize_imei("49-015420-323751-8") == VALID_IMEI
    assert normalize_imei("49 015420 323751/8") == VALID_IMEI


def test_imei_with_a_wrong_check_digit_is_rejected() -> None:
    with pytest.raises(NormalisationError, match="check digit"):
        normalize_imei("490154203237519")


def test_fourteen_digit_imei_gets_its_check_digit() -> None:
    assert normalize_imei("49015420323751") == VALID_IMEI


def test_sixteen_digit_imeisv_drops_the_software_version() -> None:
    assert normalize_imei("4901542032375104") == VALID_IMEI
    assert normalize_imei("4901542032375199") == VALID_IMEI


@pytest.mark.parametrize(
    ("raw", "reason"),
    [("4901542032375", "got 13"), ("49015420323751812", "got 17"), ("49015420323751A", "digits")],
)
def test_imei_of_wrong_shape_is_rejected(raw: str, reason: str) -> None:
    with pytest.raises(NormalisationError, match=reason):
        normalize_imei(raw)


@pytest.mark.parametrize(
    "raw", ["000000000000000", "111111111111111", "123456789012345", "98765432109876"]
)
def test_placeholder_imeis_are_accepted_and_recognised(raw: str) -> None:
    imei = normalize_imei(raw)
    assert len(imei) == 15
    assert luhn_valid(imei)
    assert is_placeholder_imei(imei)


def test_real_imei_is_not_a_placeholder() -> None:
    assert not is_placeholder_imei(VALID_IMEI)


def test_device_fingerprints_are_prefixed_and_keep_their_case() -> None:
    assert normalize_device(" AbC123== ") == "fp:AbC123=="
    assert normalize_device("fp:AbC123==") == "fp:AbC123=="
    assert normalize_device("4901542032375104") == VALID_IMEI


# --------------------------------------------------------------------------------- address


def test_address_spellings_of_the_same_place_are_equal() -> None:
    spellings = [
        "123 North Main Street, Apartment #4B",
        "123 n. main st apt 4b",
        "123  N MAIN ST.\nAPT 4B",
        "123 North Main St., Apt. # 4B",
    ]
    assert {normalize_address(s) for s in spellings} == {"123 n main st apt 4b"}


@pytest.mark.parametrize(
    ("long", "short"),
    [
        ("Suite 200", "ste 200"),
        ("Avenue", "ave"),
        ("Boulevard", "blvd"),
        ("Road", "rd"),
        ("Drive", "dr"),
        ("Lane", "ln"),
        ("Southwest", "sw"),
    ],
)
def test_address_words_become_their_abbreviation(long: str, short: str) -> None:
    assert normalize_address(long) == short
    assert normalize_address(short.upper()) == short


def test_meaningful_address_punctuation_survives() -> None:
    assert normalize_address("12 - 14 Elm Rd, #3") == "12-14 elm rd #3"
    assert normalize_address("221 1/2 Baker St") == "221 1/2 baker st"


def test_address_of_only_punctuation_is_rejected() -> None:
    with pytest.raises(NormalisationError, match="address: empty"):
        normalize_address(" ., ; ")


# -------------------------------------------------------------------------------------- IP


def test_ipv4_mapped_ipv6_becomes_ipv4() -> None:
    assert normalize_ip("::ffff:192.0.2.1") == "192.0.2.1"


def test_ipv6_is_compressed_and_lower_case_without_zone() -> None:
    assert normalize_ip("2001:DB8:0:0:0:0:0:1") == "2001:db8::1"
    assert normalize_ip("fe80::1%eth0") == "fe80::1"


@pytest.mark.parametrize("raw", ["", "256.1.1.1", "1.2.3.4:80", "010.0.0.1", "example.com"])
def test_invalid_ip_is_rejected(raw: str) -> None:
    with pytest.raises(NormalisationError, match=r"^ip: "):
        normalize_ip(raw)


# --------------------------------------------------------------------------------- payment


def test_card_fingerprint_never_contains_the_number() -> None:
    fingerprint = fingerprint_payment(VISA_TEST_PAN, key=KEY)
    assert fingerprint.kind is PaymentKind.CARD
    assert fingerprint.last4 == "1111"
    assert fingerprint.id.startswith("pm_")
    assert len(fingerprint.id) == 3 + 32
    assert VISA_TEST_PAN not in repr(fingerprint)


def test_card_fingerprint_is_stable_per_key_and_ignores_formatting() -> None:
    first = fingerprint_payment(VISA_TEST_PAN, key=KEY)
    assert fingerprint_payment("4111 1111-1111 1111", key=KEY) == first
    assert fingerprint_payment(VISA_TEST_PAN, key=SecretStr(KEY)) == first
    assert fingerprint_payment(VISA_TEST_PAN, key=KEY.encode()) == first


def test_card_fingerprint_differs_per_key() -> None:
    assert (
        fingerprint_payment(VISA_TEST_PAN, key=KEY).id
        != fingerprint_payment(VISA_TEST_PAN, key=OTHER_KEY).id
    )


def test_iban_is_fingerprinted_as_a_bank_account() -> None:
    fingerprint = fingerprint_payment("GB82 WEST 1234 5698 7654 32", key=KEY)
    assert fingerprint.kind is PaymentKind.BANK_ACCOUNT
    assert fingerprint.last4 == "5432"
    assert fingerprint_payment("gb82west12345698765432", key=KEY) == fingerprint


def test_opaque_tokens_and_non_luhn_numbers_are_fingerprinted_as_tokens() -> None:
    token = fingerprint_payment("tok_1AbCdEf", key=KEY)
    assert token.kind is PaymentKind.TOKEN
    assert token.last4 is None
    assert fingerprint_payment("tok_1abcdef", key=KEY) != token
    assert fingerprint_payment("4111111111111112", key=KEY).kind is PaymentKind.TOKEN


def test_unkeyed_payment_fingerprint_warns() -> None:
    with pytest.warns(WeakFingerprintWarning):
        fingerprint = fingerprint_payment(VISA_TEST_PAN, key=None)
    assert fingerprint.id != fingerprint_payment(VISA_TEST_PAN, key=KEY).id


def test_empty_key_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        fingerprint_payment(VISA_TEST_PAN, key="")


def test_rejected_payment_message_does_not_contain_the_number() -> None:
    with pytest.raises(NormalisationError) as caught:
        fingerprint_payment(VISA_TEST_PAN + "\x00", key=KEY)
    assert str(caught.value) == "payment: contains control characters"


# -------------------------------------------------------------------------- hashing/dispatch


def test_keyed_hash_is_separated_by_kind_and_key() -> None:
    value = "someone@example.com"
    digest = keyed_hash(value, KEY, IdentifierKind.EMAIL)
    assert digest.startswith("h:")
    assert len(digest) == 2 + 64
    assert keyed_hash(value, KEY, IdentifierKind.ADDRESS) != digest
    assert keyed_hash(value, OTHER_KEY, IdentifierKind.EMAIL) != digest


def test_normalize_identifier_without_key_returns_the_canonical_value() -> None:
    assert normalize_identifier(IdentifierKind.EMAIL, "A.B+x@Gmail.com") == "ab@gmail.com"
    assert normalize_identifier(IdentifierKind.PHONE, "020 7946 0958", default_region="GB") == (
        "+442079460958"
    )
    assert normalize_identifier(IdentifierKind.DEVICE, "4901542032375104") == VALID_IMEI
    assert normalize_identifier(IdentifierKind.IP, "::ffff:10.0.0.1") == "10.0.0.1"
    assert normalize_identifier(IdentifierKind.ADDRESS, "1 Main Street") == "1 main st"


def test_normalize_identifier_with_key_hashes_equivalent_spellings_alike() -> None:
    first = normalize_identifier(IdentifierKind.EMAIL, "A.B+x@Gmail.com", hmac_key=KEY)
    second = normalize_identifier(IdentifierKind.EMAIL, "ab@googlemail.com", hmac_key=KEY)
    assert first == second
    assert first == keyed_hash("ab@gmail.com", KEY, IdentifierKind.EMAIL)


def test_payments_prefer_the_dedicated_key() -> None:
    via_pii_key = normalize_identifier(IdentifierKind.PAYMENT, VISA_TEST_PAN, hmac_key=KEY)
    via_dedicated = normalize_identifier(
        IdentifierKind.PAYMENT, VISA_TEST_PAN, hmac_key=KEY, payment_key=OTHER_KEY
    )
    assert via_pii_key == fingerprint_payment(VISA_TEST_PAN, key=KEY).id
    assert via_dedicated == fingerprint_payment(VISA_TEST_PAN, key=OTHER_KEY).id


def test_normalisation_error_survives_pickling() -> None:
    error = NormalisationError("imei", "check digit does not match (Luhn)")
    restored = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own object
    assert (restored.field, restored.reason, str(restored)) == (
        error.field,
        error.reason,
        str(error),
    )


@pytest.mark.parametrize(
    "normaliser",
    [normalize_email, normalize_imei, normalize_address, normalize_ip, normalize_phone],
)
def test_overlong_input_is_rejected_before_any_parsing(normaliser: Callable[[str], str]) -> None:
    with pytest.raises(NormalisationError, match="longer than"):
        normaliser("1" * 10_000)


# ------------------------------------------------------------------------ property-based


def _idempotent(normaliser: Callable[[str], str], raw: str) -> None:
    try:
        once = normaliser(raw)
    except NormalisationError:
        return
    assert normaliser(once) == once


_EXAMPLE_NUMBERS = [
    number
    for region in sorted(phonenumbers.SUPPORTED_REGIONS)
    if (number := phonenumbers.example_number(region)) is not None
]


@st.composite
def _phone_numbers(draw: st.DrawFn) -> str:
    number = draw(st.sampled_from(_EXAMPLE_NUMBERS))
    style = draw(
        st.sampled_from(
            [PhoneNumberFormat.E164, PhoneNumberFormat.INTERNATIONAL, PhoneNumberFormat.RFC3966]
        )
    )
    return phonenumbers.format_number(number, style)


@st.composite
def _imei_spellings(draw: st.DrawFn) -> str:
    body = draw(st.text(alphabet="0123456789", min_size=14, max_size=14))
    suffix = draw(st.sampled_from(["", luhn_check_digit(body), "00", "17"]))
    separator = draw(st.sampled_from(["", " ", "-", "/"]))
    return separator.join([body[:2], body[2:8], body[8:], suffix]).strip(separator)


@given(st.one_of(st.emails(), any_text))
def test_email_normalisation_is_idempotent(raw: str) -> None:
    _idempotent(normalize_email, raw)


@settings(deadline=None)
@given(st.one_of(_phone_numbers(), st.from_regex(r"\+?[0-9 ()\-]{6,20}", fullmatch=True), any_text))
def test_phone_normalisation_is_idempotent(raw: str) -> None:
    _idempotent(normalize_phone, raw)


@given(st.one_of(_imei_spellings(), any_text))
def test_imei_normalisation_is_idempotent(raw: str) -> None:
    _idempotent(normalize_imei, raw)


@given(
    st.one_of(_imei_spellings(), st.text(alphabet="0123456789 -/abcDEF=", max_size=24), any_text)
)
def test_device_normalisation_is_idempotent(raw: str) -> None:
    _idempotent(normalize_device, raw)


@given(any_text)
def test_address_normalisation_is_idempotent(raw: str) -> None:
    _idempotent(normalize_address, raw)


@given(st.one_of(st.ip_addresses().map(str), any_text))
def test_ip_normalisation_is_idempotent(raw: str) -> None:
    _idempotent(normalize_ip, raw)


@given(st.one_of(_imei_spellings(), st.text(alphabet="0123456789 -/", max_size=24)))
def test_imei_output_is_always_fifteen_digits_with_valid_luhn(raw: str) -> None:
    try:
        imei = normalize_imei(raw)
    except NormalisationError:
        return
    assert len(imei) == 15
    assert imei.isdigit()
    assert luhn_valid(imei)


@given(_card_numbers())
def test_card_numbers_never_leak_into_the_fingerprint(pan: str) -> None:
    fingerprint = fingerprint_payment(pan, key=KEY)
    assert fingerprint.kind is PaymentKind.CARD
    assert fingerprint.last4 == pan[-4:]
    assert pan not in fingerprint.id
    assert pan not in repr(fingerprint)
    assert fingerprint.id == fingerprint_payment(pan, key=KEY).id
    assert fingerprint.id != fingerprint_payment(pan, key=OTHER_KEY).id


@settings(deadline=None)
@given(kind=st.sampled_from(IdentifierKind), raw=any_text)
def test_arbitrary_text_raises_nothing_but_normalisation_error(
    kind: IdentifierKind, raw: str
) -> None:
    try:
        result = normalize_identifier(kind, raw, hmac_key=KEY)
    except NormalisationError as error:
        assert str(error) == f"{error.field}: {error.reason}"
        return
    assert result.startswith(("h:", "pm_"))


@settings(deadline=None)
@given(kind=st.sampled_from(IdentifierKind), raw=any_text)
def test_rejected_values_never_appear_in_error_messages(kind: IdentifierKind, raw: str) -> None:
    canary = "Canary-7f3e" + raw
    try:
        normalize_identifier(kind, canary, hmac_key=KEY)
    except NormalisationError as error:
        assert "Canary-7f3e" not in str(error)


@given(st.text(alphabet="0123456789", min_size=6, max_size=40))
def test_rejected_digit_strings_never_appear_in_error_messages(raw: str) -> None:
    for kind in IdentifierKind:
        try:
            normalize_identifier(kind, raw, hmac_key=KEY)
        except NormalisationError as error:
            assert raw not in str(error)
