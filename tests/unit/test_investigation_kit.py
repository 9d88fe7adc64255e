"""The Browser investigation kit (`cypher/investigate/*.cypher`): described, parameterised, valid.

Each file must say what it answers, set every parameter its query uses with a Browser `:param`
line (and no others), and hold one read-only query that parses. The integration tests run every
query on a real graph and have Neo4j `EXPLAIN` it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ringwatch.graph.exceptions import InvestigationKitError
from ringwatch.graph.investigate import (
    KitQuery,
    check_query,
    kit_dir,
    load_kit,
    parse_kit_file,
    tokenize,
)

KIT = load_kit()
# The questions issue 5 asks the kit to answer, by file.
REQUIRED = {
    "ring_of_subscriber",
    "shared_identifiers",
    "top_rings",
    "path_between_subscribers",
    "recent_alerts",
    "hub_identifiers",
    "ring_lineage",
}
GRAPH_QUERIES = {"ring", "ring_of_subscriber", "path_between_subscribers"}


def test_the_kit_answers_every_question_of_the_specification() -> None:
    assert set(KIT) >= REQUIRED
    assert all(query.path.parent == kit_dir() for query in KIT.values())


@pytest.mark.parametrize("name", sorted(KIT))
def test_every_file_starts_with_a_description(name: str) -> None:
    query = KIT[name]
    text = query.path.read_text()
    assert text.startswith("// "), "the first line must be a comment saying what it answers"
    assert len(query.description) >= 60, "say what the query answers, in a sentence or two"
    shows = "Shows a graph." if name in GRAPH_QUERIES else "Shows a table"
    assert shows in query.description


@pytest.mark.parametrize("name", sorted(KIT))
def test_param_lines_define_exactly_the_parameters_the_query_uses(name: str) -> None:
    query = KIT[name]
    assert query.used_params, "a kit query without parameters needs no :param lines"
    assert set(query.params) == query.used_params


@pytest.mark.parametrize("name", sorted(KIT))
def test_param_examples_are_plain_literals(name: str) -> None:
    for param, value in KIT[name].params.items():
        tokens = list(tokenize(value))
        assert len(tokens) == 1 and tokens[0].kind in ("string", "number"), (param, value)


@pytest.mark.parametrize("name", sorted(KIT))
def test_the_query_parses_as_one_read_only_statement(name: str) -> None:
    assert check_query(KIT[name].query) == []


def test_browser_text_sets_the_params_then_runs_the_query() -> None:
    query = KIT["ring_of_subscriber"]
    text = query.browser_text({"subscriberId": "'sub-000042'"})
    assert text.startswith(":param subscriberId => 'sub-000042';\n\nMATCH ")
    assert text.rstrip().endswith(query.query)


def test_a_file_is_split_into_description_params_and_query(tmp_path: Path) -> None:
    path = tmp_path / "example.cypher"
    path.write_text(
        "// Who uses a device.\n// Shows a table.\n:param deviceId => 'd-1';\n"
        ":param limit => 5\n\nMATCH (d:Device {id: $deviceId})<--(s)\nRETURN s LIMIT $limit;\n"
    )
    query = parse_kit_file(path)
    assert query == KitQuery(
        name="example",
        path=path,
        description="Who uses a device.\nShows a table.",
        params={"deviceId": "'d-1'", "limit": "5"},
        query="MATCH (d:Device {id: $deviceId})<--(s)\nRETURN s LIMIT $limit",
    )
    assert query.title == "Who uses a device"
    assert query.used_params == {"deviceId", "limit"}


def test_a_malformed_param_line_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.cypher"
    path.write_text("// A question.\n:param subscriberId = 'x';\nMATCH (s) RETURN s\n")
    with pytest.raises(InvestigationKitError, match=r"bad.cypher:2: expected ':param"):
        parse_kit_file(path)


def test_parameters_in_strings_and_comments_are_not_parameters() -> None:
    query = "MATCH (s {id: '$notOne'}) // $nor\n/* $this */ WHERE s.x = $real RETURN s"
    assert {t.text for t in tokenize(query) if t.kind == "param"} == {"real"}


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("MATCH (s RETURN s", "'(' is never closed"),
        ("MATCH (s)] RETURN s", "unbalanced ']'"),
        ("MATCH (s {id: 'x}) RETURN s", "unterminated string"),
        ("MATCH (s) RETURN s; MATCH (t) RETURN t", "one statement per file"),
        ("MATCH (s) SET s.x = 1 RETURN s", "writes to the graph (SET)"),
        ("MATCH (s) DETACH DELETE s", "returns nothing"),
        ("s.id = 1 RETURN s", "not a reading clause"),
        ("/* never ends", "unterminated /* comment"),
        ("", "the query is empty"),
    ],
)
def test_check_query_names_what_is_wrong(query: str, problem: str) -> None:
    assert any(problem in found for found in check_query(query)), check_query(query)


def test_an_empty_kit_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InvestigationKitError, match="no investigation queries"):
        load_kit(tmp_path)
