"""Bulk backfill on the real server: every format gives the same graph, reruns change nothing."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from ringwatch.config import Settings
from ringwatch.graph.db import Neo4jRunner
from ringwatch.graph.writer import GraphWriter
from ringwatch.ingest.backfill import (
    BackfillInterruptedError,
    BackfillProgress,
    BackfillSummary,
    backfill,
)
from ringwatch.ingest.events import EventFamily
from ringwatch.ingest.prepare import Preparer
from tests.backfill_files import (
    BAD_DATE,
    BAD_EMAIL,
    bad_identity_rows,
    identity_payloads,
    label_payloads,
    parse_all,
    read_rejects,
    transaction_payloads,
    write_file,
)
from tests.cli_helpers import run_cli
from tests.integration.test_writer import _snapshot

IDENTITY = EventFamily.IDENTITY
FORMATS = ("csv", "jsonl", "parquet")


def _empty(graph: Neo4jRunner) -> None:
    graph.write("MATCH (n) DETACH DELETE n")


class Loader:
    def __init__(self, graph: Neo4jRunner, settings: Settings, state: Path) -> None:
        self.graph = graph
        self.writer = GraphWriter(graph, hub_cap=settings.scoring.hub_cap)
        self.preparer = Preparer(
            pii_hmac_key=settings.scoring.pii_hmac_key,
            default_region=settings.ingest.default_region,
        )
        self.state = state

    def checkpoint(self, family: EventFamily) -> Path:
        return self.state / f"{family}.checkpoint.json"

    def rejects(self, family: EventFamily) -> Path:
        return self.state / f"{family}.rejects.jsonl"

    def __call__(
        self, family: EventFamily, paths: Sequence[Path], **options: Any
    ) -> BackfillSummary:
        return backfill(
            family,
            paths,
            runner=self.graph,
            writer=self.writer,
            preparer=self.preparer,
            checkpoint_path=self.checkpoint(family),
            rejects_path=self.rejects(family),
            **options,
        )


@pytest.fixture
def identity_files(tmp_path: Path) -> dict[str, Path]:
    """The same 60 subscribers (72 events) in each format, with bad rows in between."""
    events = parse_all(IDENTITY, identity_payloads(60))
    files = {}
    for fmt in FORMATS:
        bad = bad_identity_rows(fmt)
        path = tmp_path / "input" / f"identities.{fmt}"
        path.parent.mkdir(exist_ok=True)
        write_file(path, IDENTITY, events, dict(zip((4, 30, 50), bad.values(), strict=False)))
        files[fmt] = path
    return files


def test_every_format_gives_the_same_graph(
    graph: Neo4jRunner, settings: Settings, tmp_path: Path, identity_files: dict[str, Path]
) -> None:
    snapshots = {}
    for fmt, path in identity_files.items():
        _empty(graph)
        load = Loader(graph, settings, tmp_path / fmt)
        summary = load(IDENTITY, [path], batch_size=16)
        assert summary.written == 72 and summary.duplicates == 0
        snapshots[fmt] = _snapshot(graph)
        rejects = read_rejects(load.rejects(IDENTITY))
        first_data_line = 2 if fmt == "csv" else 1
        stages = ["read", "parse", "normalise"] if fmt != "parquet" else ["parse", "normalise"]
        assert [(r["line"], r["stage"]) for r in rejects] == [
            (first_data_line + index, stage)
            for index, stage in zip((4, 30, 50), stages, strict=False)
        ]
        assert all(r["file"] == str(path) for r in rejects)
        text = load.rejects(IDENTITY).read_text()
        assert BAD_EMAIL not in text and BAD_DATE not in text

    assert snapshots["csv"] == snapshots["jsonl"] == snapshots["parquet"]
    counts = graph.read(
        "MATCH (s:Subscriber) WITH count(s) AS subscribers "
        "MATCH (:Subscriber)-[:HAS_ADDRESS]->(a:Address) "
        "RETURN subscribers, count(DISTINCT a) AS addresses"
    )
    assert counts == [{"subscribers": 60, "addresses": 20}]


def test_running_again_or_restarting_changes_nothing(
    graph: Neo4jRunner, settings: Settings, tmp_path: Path, identity_files: dict[str, Path]
) -> None:
    load = Loader(graph, settings, tmp_path / "state")
    path = identity_files["jsonl"]
    load(IDENTITY, [path], batch_size=10)
    before = _snapshot(graph)
    rejects_before = read_rejects(load.rejects(IDENTITY))

    again = load(IDENTITY, [path], batch_size=10)
    assert (again.rows_read, again.written, again.files_skipped) == (0, 0, 1)
    assert _snapshot(graph) == before

    restarted = load(IDENTITY, [path], batch_size=25, resume=False)
    assert (restarted.written, restarted.duplicates, restarted.rejected) == (0, 72, 3)
    assert _snapshot(graph) == before
    assert read_rejects(load.rejects(IDENTITY)) == rejects_before


def test_an_interrupted_run_resumes_to_the_graph_of_a_clean_run(
    graph: Neo4jRunner, settings: Settings, tmp_path: Path, identity_files: dict[str, Path]
) -> None:
    paths = [identity_files["csv"], identity_files["parquet"]]
    clean = Loader(graph, settings, tmp_path / "clean")
    clean(IDENTITY, paths, batch_size=7)
    expected = _snapshot(graph)
    expected_rejects = read_rejects(clean.rejects(IDENTITY))

    _empty(graph)
    load = Loader(graph, settings, tmp_path / "resumed")
    stops = 0

    def stop_after_30_rows(state: BackfillProgress) -> None:
        nonlocal stops
        if state.rows_read >= 30:
            stops += 1
            raise KeyboardInterrupt

    with pytest.raises(BackfillInterruptedError) as stopped:
        load(IDENTITY, paths, batch_size=7, progress=stop_after_30_rows)
    assert stopped.value.file == str(paths[0])
    partial = stopped.value.summary.rows_read
    assert 30 <= partial < 75

    # A second interruption in the next file, then the rest.
    def stop_in_second_file(state: BackfillProgress) -> None:
        if state.file == str(paths[1]) and state.next_line > 20:
            raise KeyboardInterrupt

    with pytest.raises(BackfillInterruptedError) as again:
        load(IDENTITY, paths, batch_size=7, progress=stop_in_second_file)
    assert again.value.file == str(paths[1])
    rest = load(IDENTITY, paths, batch_size=7)

    assert _snapshot(graph) == expected
    assert partial + again.value.summary.rows_read + rest.rows_read == 75 + 74
    assert read_rejects(load.rejects(IDENTITY)) == expected_rejects


def test_transactions_and_labels_load_after_identities(
    graph: Neo4jRunner, settings: Settings, tmp_path: Path
) -> None:
    load = Loader(graph, settings, tmp_path / "state")
    identities = tmp_path / "identities.jsonl"
    transactions = tmp_path / "transactions.parquet"
    labels = tmp_path / "labels.csv"
    write_file(identities, IDENTITY, parse_all(IDENTITY, identity_payloads(10)))
    write_file(
        transactions,
        EventFamily.TRANSACTIONS,
        parse_all(EventFamily.TRANSACTIONS, transaction_payloads(30)),
    )
    write_file(labels, EventFamily.LABELS, parse_all(EventFamily.LABELS, label_payloads(4)))

    assert load(IDENTITY, [identities]).written == 12
    assert load(EventFamily.TRANSACTIONS, [transactions], batch_size=8).written == 30
    assert load(EventFamily.LABELS, [labels]).written == 4
    before = _snapshot(graph)
    assert load(EventFamily.TRANSACTIONS, [transactions], resume=False).duplicates == 30
    assert _snapshot(graph) == before
    made = graph.read("MATCH (:Subscriber)-[:MADE]->(t:Transaction) RETURN count(t) AS n")
    assert made == [{"n": 30}]
    fraud = graph.read("MATCH (s:Subscriber {label: 'fraud'}) RETURN count(s) AS n")
    assert fraud == [{"n": 2}]


def test_the_command_loads_reports_and_resumes(
    graph: Neo4jRunner, settings: Settings, tmp_path: Path, identity_files: dict[str, Path]
) -> None:
    checkpoint = tmp_path / "cli" / "ids.checkpoint.json"
    rejects = tmp_path / "cli" / "ids.rejects.jsonl"
    options = ["--checkpoint", str(checkpoint), "--rejects", str(rejects), "--batch-size", "20"]
    env = {"RINGWATCH_NEO4J__URI": settings.neo4j.uri}
    path = str(identity_files["csv"])

    first = run_cli("backfill", "identities", path, *options, env=env)

    assert first.code == 0, first.stderr
    for fragment in ("rows read", "75", "written", "72", "rejected", "3", str(rejects)):
        assert fragment in first.stdout
    assert [r["line"] for r in read_rejects(rejects)] == [6, 32, 52]
    before = _snapshot(graph)

    second = run_cli("backfill", "identities", path, *options, env=env)
    assert second.code == 0, second.stderr
    assert "already loaded" in second.stdout and "--restart" in second.stdout
    restarted = run_cli("backfill", "identities", path, *options, "--restart", env=env)
    assert restarted.code == 0, restarted.stderr
    assert _snapshot(graph) == before
    assert [r["line"] for r in read_rejects(rejects)] == [6, 32, 52]

    missing = run_cli("backfill", "identities", str(tmp_path / "nope.csv"), *options, env=env)
    assert missing.code == 1
    assert missing.stderr.strip().startswith("error:") and "no such file" in missing.stderr
    assert "Traceback" not in missing.stderr
