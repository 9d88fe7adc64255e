"""API keys stored in the graph: only a keyed hash of the secret, never the key itself.

A key looks like ``rw_<prefix>_<secret>``. The prefix (8 characters) is stored in clear to find
the key and to show it in listings; the whole key is checked against
``HMAC-SHA256(pepper, key)`` in constant time. The pepper comes from the environment
(``RINGWATCH_API__API_KEY_PEPPER``), so a copy of the database alone cannot test guesses.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, LiteralString

from ringwatch.graph.db import QueryRunner
from ringwatch.graph.exceptions import GraphError

KEY_PREFIX = "rw"


class Scope(StrEnum):
    """What a key may do. ``admin`` includes ``write``, which includes ``read``."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"

    @property
    def includes(self) -> frozenset[Scope]:
        order = [Scope.READ, Scope.WRITE, Scope.ADMIN]
        return frozenset(order[: order.index(self) + 1])


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    prefix: str
    scopes: frozenset[Scope]
    created_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def allows(self, scope: Scope) -> bool:
        return any(scope in granted.includes for granted in self.scopes)

    @classmethod
    def from_node(cls, props: dict[str, Any]) -> ApiKey:
        def native(value: Any) -> Any:
            return value.to_native() if hasattr(value, "to_native") else value

        return cls(
            id=props["id"],
            name=props["name"],
            prefix=props["prefix"],
            scopes=frozenset(Scope(s) for s in props["scopes"]),
            created_at=native(props["created_at"]),
            revoked_at=native(props.get("revoked_at")),
            last_used_at=native(props.get("last_used_at")),
        )


def hash_key(key: str, pepper: str) -> str:
    return hmac.new(pepper.encode(), key.encode(), hashlib.sha256).hexdigest()


def split_key(key: str) -> str | None:
    """The prefix of a well-formed key, else None."""
    # The secret is URL-safe base64, which may itself contain '_': split twice at most.
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or len(parts[1]) != 8 or len(parts[2]) < 32:
        return None
    return parts[1]


_CREATE: LiteralString = """
CREATE (k:ApiKey {id: $id, name: $name, prefix: $prefix, hash: $hash, scopes: $scopes,
                  created_at: $now})
RETURN k {.*} AS key
"""
_BY_PREFIX: LiteralString = """
MATCH (k:ApiKey {prefix: $prefix}) RETURN k {.*} AS key
"""
_LIST: LiteralString = """
MATCH (k:ApiKey) RETURN k {.*, hash: null} AS key ORDER BY k.created_at
"""
_REVOKE: LiteralString = """
MATCH (k:ApiKey) WHERE k.prefix = $ref OR k.id = $ref OR k.name = $ref
SET k.revoked_at = coalesce(k.revoked_at, $now)
RETURN k {.*, hash: null} AS key
"""
_TOUCH: LiteralString = """
MATCH (k:ApiKey {id: $id}) SET k.last_used_at = $now
"""


def create_key(
    runner: QueryRunner, name: str, scopes: set[Scope], pepper: str
) -> tuple[str, ApiKey]:
    """A new key; returns the key (shown once, never stored) and its record."""
    if not scopes:
        raise ValueError("a key needs at least one scope")
    prefix = secrets.token_hex(4)
    key = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    rows = runner.write(
        _CREATE,
        {
            "id": secrets.token_hex(8),
            "name": name,
            "prefix": prefix,
            "hash": hash_key(key, pepper),
            "scopes": sorted(scope.value for scope in scopes),
            "now": datetime.now(UTC),
        },
    )
    return key, ApiKey.from_node(rows[0]["key"])


def verify_key(runner: QueryRunner, key: str, pepper: str) -> ApiKey | None:
    """The active key record for `key`, or None (unknown, malformed, revoked or wrong)."""
    prefix = split_key(key)
    if prefix is None:
        return None
    expected = hash_key(key, pepper)
    for row in runner.read(_BY_PREFIX, {"prefix": prefix}):
        props = row["key"]
        if hmac.compare_digest(props["hash"], expected):
            record = ApiKey.from_node(props)
            return record if record.active else None
    return None


def list_keys(runner: QueryRunner) -> list[ApiKey]:
    return [ApiKey.from_node(row["key"]) for row in runner.read(_LIST)]


def revoke_key(runner: QueryRunner, ref: str) -> list[ApiKey]:
    """Revoke keys by prefix, id or name; returns what was revoked (empty when none matched)."""
    rows = runner.write(_REVOKE, {"ref": ref, "now": datetime.now(UTC)})
    return [ApiKey.from_node(row["key"]) for row in rows]


def touch_key(runner: QueryRunner, key_id: str) -> None:
    with contextlib.suppress(GraphError):  # informational; never fail a request for it
        runner.write(_TOUCH, {"id": key_id, "now": datetime.now(UTC)})
