"""Applying `cypher/schema.cypher`: constraints and indexes, idempotently."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ringwatch.graph.db import QueryRunner
from ringwatch.graph.exceptions import SchemaError

_LINE_COMMENT = re.compile(r"//[^\n]*")


def cypher_dir() -> Path:
    """`RINGWATCH_CYPHER_DIR` when set (container images), else the source tree's `cypher/`."""
    configured = os.environ.get("RINGWATCH_CYPHER_DIR")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2] / "cypher"


def split_statements(text: str) -> list[str]:
    """Statements of a Cypher script, separated by `;`, with `//` comments removed."""
    without_comments = _LINE_COMMENT.sub("", text)
    statements = (" ".join(part.split()) for part in without_comments.split(";"))
    return [statement for statement in statements if statement]


@dataclass(frozen=True)
class MigrationResult:
    statements: int
    constraints: list[str]
    indexes: list[str]


def load_schema(path: Path | None = None) -> list[str]:
    schema = path or cypher_dir() / "schema.cypher"
    try:
        return split_statements(schema.read_text())
    except OSError as exc:
        raise SchemaError(f"cannot read schema file {schema}: {exc.strerror}") from None


def migrate(runner: QueryRunner, path: Path | None = None) -> MigrationResult:
    """Create every constraint and index the schema file names; existing ones are kept."""
    statements = load_schema(path)
    for statement in statements:
        if "IF NOT EXISTS" not in statement.upper():
            raise SchemaError(f"schema statement is not idempotent: {statement[:80]}")
        # The schema file ships with the product; it is not input, so it may be Cypher text.
        runner.write(statement)
    return MigrationResult(len(statements), list_constraints(runner), list_indexes(runner))


def list_constraints(runner: QueryRunner) -> list[str]:
    rows = runner.read("SHOW CONSTRAINTS YIELD name RETURN name ORDER BY name")
    return [str(row["name"]) for row in rows]


def list_indexes(runner: QueryRunner) -> list[str]:
    # Constraint-backing and built-in lookup indexes are listed by SHOW CONSTRAINTS / not ours.
    rows = runner.read(
        "SHOW INDEXES YIELD name, type, owningConstraint "
        "WHERE owningConstraint IS NULL AND type <> 'LOOKUP' "
        "RETURN name ORDER BY name"
    )
    return [str(row["name"]) for row in rows]
