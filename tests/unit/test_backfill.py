"""Backfill bookkeeping without a server: rejects, checkpoints, resume and interruption."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from ringwatch.graph.exceptions import GraphError
from ringwatch.graph.writer import GraphWriter, WriteResult
from ringwatch.ingest.backfill import (
    BackfillInterruptedError,
    BackfillProgress,
    BackfillSummary,
    Checkpoint,
    backfill,
)
from ringwatch.ingest.events import EventFamily
from ringwatch.ingest.exceptions import IngestError
from ringwatch.ingest.prepare import PreparedEvent, Preparer
from tests.backfill_files import (
    BAD_DATE,
    BAD_EMAIL,
    bad_identity_rows,
    identity_payloads,
    parse_all,
    read_rejects,
    write_file,
)
from tests.unit.fakes import RecordingRunner

FAMILY = EventFamily.IDENTITY


class FakeWriter(GraphWriter):
    """Stores event ids like the real writer's claims: a repeated event is a duplicate."""

    def __init__(self, fail_on_call: int | None = None) -> None:
        super().__init__(RecordingRunner(), hub_cap=50)
        self.stored: dict[str, PreparedEvent] = {}
        self.calls: list[list[str]] = []
        self.fail_on_call = fail_on_call
        self._lock = threading.Lock()

    def write(self, events: Sequence[PreparedEvent]) -> WriteResult:
        with self._lock:
            self.calls.append([event.event_id for event in events])
            if self.fail_on_call == len(self.calls):
                raise GraphError("Neo4j is not reachable: connection refused")
            result = WriteResult()
            for event in events:
                if event.event_id in self.stored:
                    result.duplicates += 1
                else:
                    self.stored[event.event_id] = event
                    result.identity += 1
            return result


class Loader:
    """Runs `backfill` over one set of files with one checkpoint and rejects file."""

    def __init__(self, tmp_path: Path, writer: FakeWriter | None = None) -> None:
        self.writer = writer or FakeWriter()
        self.runner = RecordingRunner()
        self.checkpoint = tmp_path / "state" / "identity.checkpoint.json"
        self.rejects = tmp_path / "state" / "identity.rejects.jsonl"
        self.preparer = Preparer(payment_key=SecretStr("unit-test-payment-key"))

    def __call__(self, paths: Sequence[Path], **options: Any) -> BackfillSummary:
        return backfill(
            FAMILY,
            paths,
            runner=self.runner,
            writer=self.writer,
            preparer=self.preparer,
            checkpoint_path=self.checkpoint,
            rejects_path=self.rejects,
            **options,
        )

    def checkpoint_data(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.checkpoint.read_text())
        return data


def _stop_after(rows: int) -> Any:
    def progress(state: BackfillProgress) -> None:
        if state.rows_read >= rows:
            raise KeyboardInterrupt

    return progress


# ------------------------------------------------------------------------------------ rejects


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_rejects_name_file_line_and_stage_never_the_value(tmp_path: Path, fmt: str) -> None:
    events = parse_all(FAMILY, identity_payloads(12))
    bad = bad_identity_rows(fmt)
    positions = dict(zip(bad, (0, 6, len(events) + 2), strict=False))
    path = tmp_path / f"identities.{fmt}"
    where = write_file(path, FAMILY, events, {positions[stage]: row for stage, row in bad.items()})
    load = Loader(tmp_path)

    summary = load([path], batch_size=5)

    first_data_line = 2 if fmt == "csv" else 1  # the CSV header is line 1
    expected = sorted((str(path), first_data_line + positions[stage], stage) for stage in bad)
    rejects = read_rejects(load.rejects)
    assert [(r["file"], r["line"], r["stage"]) for r in rejects] == expected
    text = load.rejects.read_text()
    assert BAD_EMAIL not in text and BAD_DATE not in text and "broken" not in text
    by_stage = {r["stage"]: r["reason"] for r in rejects}
    assert "occurred_at" in by_stage["parse"]
    assert by_stage["normalise"].startswith("identifiers.emails[0]")
    assert (summary.rows_read, summary.written, summary.rejected) == (
        len(events) + len(bad),
        len(events),
        len(bad),
    )
    assert sorted(load.writer.stored) == sorted(where)


def test_no_rejects_file_when_every_row_is_good(tmp_path: Path) -> None:
    path = tmp_path / "clean.jsonl"
    write_file(path, FAMILY, parse_all(FAMILY, identity_payloads(5)))
    load = Loader(tmp_path)
    assert load([path]).rejected == 0
    assert not load.rejects.exists()


# --------------------------------------------------------------------------------- checkpoint


def test_checkpoint_records_each_file_after_its_batches(tmp_path: Path) -> None:
    first, second = tmp_path / "a.csv", tmp_path / "b.jsonl"
    write_file(first, FAMILY, parse_all(FAMILY, identity_payloads(7)))
    write_file(second, FAMILY, parse_all(FAMILY, identity_payloads(4, start=100)))
    load = Loader(tmp_path)
    seen: list[tuple[str, int]] = []

    load([first, second], batch_size=3, progress=lambda p: seen.append((p.file, p.next_line)))

    data = load.checkpoint_data()
    assert data["family"] == "identity"
    files = {Path(entry["path"]).name: entry for entry in data["files"]}
    assert files["a.csv"]["done"] and files["b.jsonl"]["done"]
    assert files["a.csv"]["next_line"] == 11  # 9 events after the header, on lines 2-10
    assert files["b.jsonl"]["next_line"] == 6
    assert files["a.csv"]["size"] == first.stat().st_size
    assert files["a.csv"]["mtime_ns"] == first.stat().st_mtime_ns
    assert len(files["a.csv"]["sha256_head"]) == 64
    # Progress comes after each committed batch, in file order.
    assert seen == [
        (str(first), 5),
        (str(first), 8),
        (str(first), 11),
        (str(second), 4),
        (str(second), 6),
    ]
    assert not list(load.checkpoint.parent.glob("*.tmp"))


def test_a_second_run_skips_finished_files(tmp_path: Path) -> None:
    path = tmp_path / "ids.jsonl"
    write_file(path, FAMILY, parse_all(FAMILY, identity_payloads(9)))
    load = Loader(tmp_path)
    load([path], batch_size=4)
    calls = len(load.writer.calls)

    again = load([path], batch_size=4)

    assert (again.rows_read, again.written, again.files_skipped) == (0, 0, 1)
    assert len(load.writer.calls) == calls


def test_a_new_file_is_loaded_next_to_finished_ones(tmp_path: Path) -> None:
    old, new = tmp_path / "old.jsonl", tmp_path / "new.jsonl"
    write_file(old, FAMILY, parse_all(FAMILY, identity_payloads(3)))
    write_file(new, FAMILY, parse_all(FAMILY, identity_payloads(2, start=50)))
    load = Loader(tmp_path)
    load([old])
    summary = load([old, new])
    assert (summary.files, summary.files_skipped, summary.written) == (2, 1, 3)


def test_a_changed_file_is_refused_until_restart(tmp_path: Path) -> None:
    path = tmp_path / "ids.csv"
    write_file(path, FAMILY, parse_all(FAMILY, identity_payloads(6)))
    load = Loader(tmp_path)
    load([path])
    write_file(path, FAMILY, parse_all(FAMILY, identity_payloads(7)))

    with pytest.raises(IngestError, match=r"changed since checkpoint.*--restart"):
        load([path])

    summary = load([path], resume=False)
    assert summary.rows_read == 9 and summary.duplicates == 8  # re-read; the graph had them


def test_a_touched_file_counts_as_changed(tmp_path: Path) -> None:
    path = tmp_path / "ids.jsonl"
    write_file(path, FAMILY, parse_all(FAMILY, identity_payloads(2)))
    load = Loader(tmp_path)
    load([path])
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    with pytest.raises(IngestError, match="changed since checkpoint"):
        load([path])


def test_a_checkpoint_of_another_family_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ids.jsonl"
    write_file(path, FAMILY, parse_all(FAMILY, identity_payloads(2)))
    load = Loader(tmp_path)
    load([path])
    with pytest.raises(IngestError, match="written for identity files, not labels"):
        Checkpoint.load(load.checkpoint, EventFamily.LABELS)


def test_an_unreadable_checkpoint_asks_for_restart(tmp_path: Path) -> None:
    path = tmp_path / "ids.jsonl"
    events = parse_all(FAMILY, identity_payloads(2))
    write_file(path, FAMILY, events)
    load = Loader(tmp_path)
    load.checkpoint.parent.mkdir(parents=True)
    load.checkpoint.write_text("{not json")
    with pytest.raises(IngestError, match=r"not readable.*--restart"):
        load([path])
    assert load([path], resume=False).written == len(events)


def test_restart_starts_the_rejects_file_anew(tmp_path: Path) -> None:
    path = tmp_path / "ids.jsonl"
    events = parse_all(FAMILY, identity_payloads(4))
    write_file(path, FAMILY, events, {1: bad_identity_rows("jsonl")["normalise"]})
    load = Loader(tmp_path)
    load([path])
    load([path], resume=False)
    assert [r["line"] for r in read_rejects(load.rejects)] == [2]


def test_a_file_without_required_columns_fails_before_anything_is_written(
    tmp_path: Path,
) -> None:
    good, broken = tmp_path / "good.jsonl", tmp_path / "broken.csv"
    write_file(good, FAMILY, parse_all(FAMILY, identity_payloads(3)))
    broken.write_text("event_id,type\ne1,subscriber.registered\n")
    load = Loader(tmp_path)
    with pytest.raises(IngestError, match="missing column"):
        load([good, broken])
    assert load.writer.calls == []


def test_a_refused_restart_keeps_the_earlier_report(tmp_path: Path) -> None:
    good, broken = tmp_path / "good.jsonl", tmp_path / "broken.csv"
    events = parse_all(FAMILY, identity_payloads(3))
    write_file(good, FAMILY, events, {2: bad_identity_rows("jsonl")["parse"]})
    broken.write_text("event_id,type\ne1,subscriber.registered\n")
    load = Loader(tmp_path)
    load([good])
    report, checkpoint = load.rejects.read_bytes(), load.checkpoint.read_bytes()
    with pytest.raises(IngestError, match="missing column"):
        load([good, broken], resume=False)
    assert load.rejects.read_bytes() == report
    assert load.checkpoint.read_bytes() == checkpoint


def test_unknown_extensions_and_missing_files_are_refused(tmp_path: Path) -> None:
    load = Loader(tmp_path)
    with pytest.raises(IngestError, match="cannot tell the file format"):
        load([tmp_path / "events.txt"])
    with pytest.raises(IngestError, match="no such file"):
        load([tmp_path / "missing.jsonl"])


# ------------------------------------------------------------------------------- interruption


@pytest.mark.parametrize("writers", [1, 2])
def test_interrupted_run_resumes_to_the_same_result(tmp_path: Path, writers: int) -> None:
    events = parse_all(FAMILY, identity_payloads(40))
    bad = bad_identity_rows("csv")
    path = tmp_path / "ids.csv"
    write_file(path, FAMILY, events, {3: bad["read"], 20: bad["parse"], 41: bad["normalise"]})
    clean = Loader(tmp_path / "clean")
    clean([path], batch_size=5, writers=writers)

    load = Loader(tmp_path / "resumed")
    with pytest.raises(BackfillInterruptedError) as stopped:
        load([path], batch_size=5, writers=writers, progress=_stop_after(12))
    first = stopped.value.summary
    assert 12 <= first.rows_read < len(events) + len(bad)
    entry = load.checkpoint_data()["files"][0]
    assert not entry["done"]
    assert entry["next_line"] == 2 + first.rows_read
    assert f"line {entry['next_line']}" in str(stopped.value)
    assert "run the same command again" in str(stopped.value)

    second = load([path], batch_size=5, writers=writers)

    assert first.rows_read + second.rows_read == len(events) + len(bad)
    assert load.writer.stored.keys() == clean.writer.stored.keys()
    assert load.writer.stored == clean.writer.stored
    assert read_rejects(load.rejects) == read_rejects(clean.rejects)
    assert first.rejected + second.rejected == 3


def test_ctrl_c_between_rejects_and_checkpoint_reports_each_line_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = parse_all(FAMILY, identity_payloads(10))
    path = tmp_path / "ids.jsonl"
    normalise = bad_identity_rows("jsonl")["normalise"]
    write_file(path, FAMILY, events, {1: normalise, 9: normalise, 14: normalise})
    load = Loader(tmp_path)
    real_save = Checkpoint.save
    saves = 0

    def save_then_die(self: Checkpoint) -> None:
        # Saved at the start and after batch 1; the process dies as batch 2 is recorded.
        nonlocal saves
        saves += 1
        if saves >= 3:
            raise KeyboardInterrupt
        real_save(self)

    monkeypatch.setattr(Checkpoint, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        load([path], batch_size=5)
    monkeypatch.setattr(Checkpoint, "save", real_save)
    # The rejects of the unsaved batch reached the file; the next run must drop them.
    assert [r["line"] for r in read_rejects(load.rejects)] == [2, 10]

    load([path], batch_size=5)

    assert [r["line"] for r in read_rejects(load.rejects)] == [2, 10, 15]


def test_a_failed_write_keeps_earlier_batches_and_resumes(tmp_path: Path) -> None:
    path = tmp_path / "ids.jsonl"
    events = parse_all(FAMILY, identity_payloads(20))
    write_file(path, FAMILY, events)
    load = Loader(tmp_path, FakeWriter(fail_on_call=3))

    with pytest.raises(GraphError, match=r"before line 16.*not reachable"):
        load([path], batch_size=5)
    assert load.checkpoint_data()["files"][0]["next_line"] == 11

    load.writer.fail_on_call = None
    summary = load([path], batch_size=5)
    assert summary.rows_read == len(events) - 10
    assert len(load.writer.stored) == len(events)


def test_ctrl_c_finishes_the_batch_in_hand_then_stops(tmp_path: Path) -> None:
    path = tmp_path / "ids.jsonl"
    events = parse_all(FAMILY, identity_payloads(40))
    write_file(path, FAMILY, events)
    load = Loader(tmp_path)
    before = signal.getsignal(signal.SIGINT)

    def press_ctrl_c_once(state: BackfillProgress) -> None:
        if state.rows_read == 5:
            signal.raise_signal(signal.SIGINT)

    with pytest.raises(BackfillInterruptedError) as stopped:
        load([path], batch_size=5, progress=press_ctrl_c_once)

    first = stopped.value.summary
    # Batch 2 was being written and the first row of batch 3 was in hand: both are stored.
    assert first.rows_read == 11
    assert stopped.value.next_line == 12
    assert load.checkpoint_data()["files"][0]["next_line"] == 12
    assert signal.getsignal(signal.SIGINT) is before
    assert load([path], batch_size=5).rows_read == len(events) - 11
    assert len(load.writer.stored) == len(events)


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "ids.jsonl"
    write_file(path, FAMILY, parse_all(FAMILY, identity_payloads(1)))
    load = Loader(tmp_path)
    with pytest.raises(IngestError, match="batch size"):
        load([path], batch_size=0)
    with pytest.raises(IngestError, match="writers"):
        load([path], writers=0)
    with pytest.raises(IngestError, match="no input files"):
        load([])
