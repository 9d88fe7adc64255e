"""API key format: every key `create_key` can make is recognised by its prefix."""

from __future__ import annotations

import secrets

from ringwatch.graph.api_keys import split_key


def test_secrets_with_underscores_keep_their_prefix() -> None:
    assert split_key("rw_0123abcd_" + "a_b-c" * 8) == "0123abcd"
    for _ in range(200):
        prefix = secrets.token_hex(4)
        assert split_key(f"rw_{prefix}_{secrets.token_urlsafe(32)}") == prefix


def test_malformed_keys_have_no_prefix() -> None:
    for key in ("nonsense", "rw_short_" + "x" * 43, "xx_0123abcd_" + "x" * 43, "rw_0123abcd_x"):
        assert split_key(key) is None
