"""The schema file: every statement idempotent, every node kind unique on id, parameters only."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ringwatch.graph.exceptions import SchemaError
from ringwatch.graph.schema import cypher_dir, load_schema, migrate, split_statements
from tests.unit.fakes import RecordingRunner

SPEC_NODE_KINDS = {
    "Subscriber",
    "Device",
    "Address",
    "PaymentMethod",
    "Phone",
    "Email",
    "IP",
    "Transaction",
    "Ring",
    "Alert",
}


def test_split_statements_drops_comments_and_blank_statements() -> None:
    text = "// header\nCREATE INDEX a IF NOT EXISTS FOR (n:A) ON (n.x); // trailing\n\n;\n"
    assert split_statements(text) == ["CREATE INDEX a IF NOT EXISTS FOR (n:A) ON (n.x)"]


def test_every_statement_is_idempotent() -> None:
    statements = load_schema()
    assert statements
    assert all("IF NOT EXISTS" in s for s in statements)


def test_every_node_kind_of_the_specification_is_unique_on_id() -> None:
    pattern = re.compile(r"FOR \(n:(\w+)\) REQUIRE n\.id IS UNIQUE")
    unique = {m.group(1) for s in load_schema() if (m := pattern.search(s))}
    assert unique >= SPEC_NODE_KINDS


def test_migrate_sends_each_statement_and_lists_the_result() -> None:
    runner = RecordingRunner(
        responder=lambda q, _p: [{"name": "subscriber_id"}] if "CONSTRAINTS" in q else []
    )
    result = migrate(runner)
    assert [q for q, _ in runner.writes] == load_schema()
    assert result.statements == len(load_schema())
    assert result.constraints == ["subscriber_id"]


def test_a_statement_that_is_not_idempotent_is_refused(tmp_path: Path) -> None:
    schema = tmp_path / "schema.cypher"
    schema.write_text("CREATE INDEX a FOR (n:A) ON (n.x);")
    runner = RecordingRunner()
    with pytest.raises(SchemaError, match="not idempotent"):
        migrate(runner, schema)
    assert runner.writes == []


def test_missing_schema_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="cannot read schema file"):
        load_schema(tmp_path / "absent.cypher")


def test_cypher_dir_can_be_moved_for_container_images(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RINGWATCH_CYPHER_DIR", str(tmp_path))
    assert cypher_dir() == tmp_path
