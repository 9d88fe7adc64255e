"""Preparing events: identifiers normalised (and hashed) before the graph sees them."""

from __future__ import annotations

from pydantic import SecretStr

from ringwatch.ingest.normalize import IdentifierKind, keyed_hash, normalize_identifier
from ringwatch.ingest.prepare import PreparedIdentity, Preparer
from tests.factories import identity, prepared


def _devices(preparer: Preparer, *devices: str) -> list[tuple[str, bool]]:
    event = prepared(identity("e1", "s1", devices=list(devices)), preparer=preparer)[0]
    assert isinstance(event, PreparedIdentity)
    return [(link.id, link.placeholder) for link in event.links]


def test_placeholder_imeis_are_flagged_with_and_without_pii_hashing() -> None:
    plain = _devices(Preparer(), "000000000000000", "490154203237518")
    assert plain == [("000000000000000", True), ("490154203237518", False)]
    key = SecretStr("k" * 32)
    hashed = _devices(Preparer(pii_hmac_key=key), "000000000000000", "490154203237518")
    assert [placeholder for _, placeholder in hashed] == [True, False]
    # The hashed id is the same one the normaliser gives: one node per device either way.
    assert hashed[0][0] == keyed_hash("000000000000000", key, IdentifierKind.DEVICE)
    assert hashed[1][0] == normalize_identifier(
        IdentifierKind.DEVICE, "49-015420-323751-8", hmac_key=key
    )
