"""Webhook signatures: HMAC-SHA256 over the exact bytes of the body.

Every request carries ``X-Ringwatch-Signature: sha256=<hex>`` (the HMAC of the body with the
signing secret) and ``X-Ringwatch-Timestamp`` (Unix seconds). For n8n the body holds the same
timestamp as ``sent_at``, so a receiver that checks the signature and that ``sent_at`` equals
the header and is recent also rejects replays of old requests. ``Idempotency-Key`` (the alert
id) lets it drop a second delivery of the same alert.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Ringwatch-Signature"
TIMESTAMP_HEADER = "X-Ringwatch-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
SIGNATURE_PREFIX = "sha256="


def signature(secret: str, body: bytes) -> str:
    """The header value: ``sha256=`` and the hex HMAC-SHA256 of `body` keyed with `secret`."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """Whether `header` is the signature of `body` (constant-time comparison)."""
    if not header:
        return False
    return hmac.compare_digest(signature(secret, body), header.strip())


def signed_headers(
    secret: str, body: bytes, *, timestamp: int, idempotency_key: str
) -> dict[str, str]:
    return {
        "Content-Type": "application/json; charset=utf-8",
        SIGNATURE_HEADER: signature(secret, body),
        TIMESTAMP_HEADER: str(timestamp),
        IDEMPOTENCY_HEADER: idempotency_key,
    }
