"""Bulk backfill: event files straight into Neo4j, resumable and idempotent.

Each file is streamed with `iter_records`; every row is parsed and normalised in this thread
while a writer thread stores the previous batch, so reading and Neo4j overlap. A row that cannot
be read, is not a valid event, or holds a value that does not normalise is appended to the
rejects file (one JSON line with file, line, reason and stage; never the row itself).

After each batch commits, the checkpoint records how far every file got (atomically: a temporary
file renamed over the old one). A new run with the same checkpoint skips finished files and
continues a partly loaded one at the next line; a file that changed since is refused. The graph
writer is idempotent, so the rows between the last checkpoint and a crash are simply written
again and count as duplicates, never twice.

Ctrl-C stops after the row in hand: that partial batch and those already handed to Neo4j are
committed, the checkpoint is saved, and `BackfillInterruptedError` says where the run stopped. A
second Ctrl-C quits at once; the checkpoint then still holds the last batch that was recorded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO, Any, Final, Literal, TypeAlias

from neo4j.exceptions import DriverError, Neo4jError

from ringwatch.graph.db import QueryRunner
from ringwatch.graph.exceptions import GraphError
from ringwatch.graph.schema import migrate
from ringwatch.graph.writer import GraphWriter, WriteResult
from ringwatch.ingest.events import EventFamily, parse_event
from ringwatch.ingest.exceptions import EventValidationError, IngestError
from ringwatch.ingest.formats import detect_format, iter_records
from ringwatch.ingest.prepare import PreparedEvent, Preparer

CHECKPOINT_VERSION: Final = 1
HEAD_BYTES: Final = 64 * 1024
DEFAULT_BATCH_SIZE: Final = 5000
MAX_WRITERS: Final = 8

Stage: TypeAlias = Literal["read", "parse", "normalise"]


# ------------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class BackfillProgress:
    """Where a run stands after a batch has been committed and checkpointed."""

    file: str
    next_line: int
    rows_read: int
    written: int
    duplicates: int
    rejected: int


@dataclass(frozen=True)
class BackfillSummary:
    """Totals of one run. ``rows_read`` counts rows read in this run (skipped work excluded)."""

    rows_read: int
    written: int
    duplicates: int
    rejected: int
    seconds: float
    rate: float
    files: int
    files_skipped: int = 0


ProgressCallback: TypeAlias = Callable[[BackfillProgress], None]


class BackfillInterruptedError(IngestError):
    """The run was stopped (Ctrl-C); everything before ``file`` line ``next_line`` is stored."""

    def __init__(self, summary: BackfillSummary, file: str, next_line: int) -> None:
        super().__init__(
            f"interrupted: stopped before {file} line {next_line}; "
            "run the same command again to resume"
        )
        self.summary = summary
        self.file = file
        self.next_line = next_line


# --------------------------------------------------------------------------------- checkpoint


@dataclass
class FileState:
    """One input file in the checkpoint, with what identifies its content."""

    path: str
    size: int
    mtime_ns: int
    sha256_head: str
    next_line: int = 1
    done: bool = False

    def same_content(self, other: FileState) -> bool:
        return (self.size, self.mtime_ns, self.sha256_head) == (
            other.size,
            other.mtime_ns,
            other.sha256_head,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "sha256_head": self.sha256_head,
            "next_line": self.next_line,
            "done": self.done,
        }


def fingerprint(path: Path) -> FileState:
    """Size, modification time and a hash of the first 64 KiB: enough to notice a changed file."""
    try:
        stat = path.stat()
        with path.open("rb") as stream:
            head = stream.read(HEAD_BYTES)
    except OSError as exc:
        raise IngestError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return FileState(
        path=str(path),
        size=stat.st_size,
        mtime_ns=stat.st_mtime_ns,
        sha256_head=hashlib.sha256(head).hexdigest(),
    )


@dataclass
class Checkpoint:
    """How far a backfill got: per file, the next line to read; plus the committed rejects."""

    path: Path
    family: EventFamily
    files: dict[str, FileState] = field(default_factory=dict)
    rejects_path: str | None = None
    rejects_size: int = 0

    @classmethod
    def load(cls, path: Path, family: EventFamily) -> Checkpoint | None:
        """The checkpoint at ``path``, or None when there is none yet."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise IngestError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
        try:
            data = json.loads(text)
            if data.get("version") != CHECKPOINT_VERSION:
                raise ValueError(f"unsupported version {data.get('version')!r}")
            stored_family = EventFamily(data["family"])
            files = {
                str(entry["path"]): FileState(
                    path=str(entry["path"]),
                    size=int(entry["size"]),
                    mtime_ns=int(entry["mtime_ns"]),
                    sha256_head=str(entry["sha256_head"]),
                    next_line=int(entry["next_line"]),
                    done=bool(entry["done"]),
                )
                for entry in data["files"]
            }
            rejects = data.get("rejects") or {}
            rejects_path = rejects.get("path")
            rejects_size = int(rejects.get("size", 0))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise IngestError(
                f"checkpoint {path} is not readable ({exc}); pass --restart to start over"
            ) from None
        if stored_family is not family:
            raise IngestError(
                f"checkpoint {path} was written for {stored_family} files, not {family}; "
                "choose another --checkpoint or pass --restart"
            )
        return cls(path, family, files, rejects_path, rejects_size)

    def save(self) -> None:
        """Write the checkpoint atomically: a reader sees the old or the new one, never half."""
        data = {
            "version": CHECKPOINT_VERSION,
            "family": str(self.family),
            "updated_at": datetime.now(UTC).isoformat(),
            "rejects": {"path": self.rejects_path, "size": self.rejects_size},
            "files": [state.to_json() for state in self.files.values()],
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        try:
            with temporary.open("w", encoding="utf-8") as stream:
                json.dump(data, stream, indent=1)
                stream.write("\n")
                stream.flush()
                os.fsync(stream.fileno())
            temporary.replace(self.path)
        except OSError as exc:
            raise IngestError(
                f"cannot write checkpoint {self.path}: {exc.strerror or exc}"
            ) from None


# ------------------------------------------------------------------------------------ rejects


class RejectsFile:
    """The rejects file, appended only for batches that are committed.

    Every append first cuts the file back to the size recorded with the last checkpoint, so
    lines written for a batch whose checkpoint was never saved (a crash, a Ctrl-C at the wrong
    moment) are dropped before that batch is reported again: a line is never reported twice.
    """

    def __init__(self, path: Path, committed_size: int) -> None:
        self.path = path
        self.committed_size = committed_size
        self._stream: IO[bytes] | None = None

    def append(self, lines: Sequence[bytes]) -> int:
        """Append ``lines`` after the committed size, durably; returns the new size."""
        if not lines and self._stream is None:
            return self.committed_size
        try:
            if self._stream is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._stream = self.path.open("ab")
            stream = self._stream
            stream.truncate(self.committed_size)
            stream.seek(self.committed_size)
            stream.writelines(lines)
            stream.flush()
            os.fsync(stream.fileno())
            return stream.tell()
        except OSError as exc:
            raise IngestError(
                f"cannot write rejects file {self.path}: {exc.strerror or exc}"
            ) from None

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None


def reject_line(file: str, line: int, reason: str, stage: Stage) -> bytes:
    """One JSON line of the rejects file. Reasons name fields and rules, never values."""
    record = {"file": file, "line": line, "reason": reason, "stage": stage}
    return json.dumps(record).encode("utf-8") + b"\n"


# ------------------------------------------------------------------------------------ batches


@dataclass
class _Batch:
    state: FileState
    events: list[PreparedEvent] = field(default_factory=list)
    rejects: list[bytes] = field(default_factory=list)
    rows: int = 0
    next_line: int = 1
    done: bool = False


@dataclass
class _InFlight:
    batch: _Batch
    future: Future[WriteResult]


class _StopFlag:
    """Set by the first Ctrl-C; a second one interrupts at once."""

    def __init__(self) -> None:
        self.requested = False

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        # Signal handlers can only be set from the main thread; elsewhere Ctrl-C is not ours.
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handle(signum: int, frame: FrameType | None) -> None:
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True

        previous = signal.signal(signal.SIGINT, handle)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


class _Run:
    def __init__(
        self,
        *,
        family: EventFamily,
        writer: GraphWriter,
        preparer: Preparer,
        batch_size: int,
        checkpoint: Checkpoint,
        rejects: RejectsFile,
        progress: ProgressCallback | None,
        writers: int,
    ) -> None:
        self.family = family
        self.writer = writer
        self.preparer = preparer
        self.batch_size = batch_size
        self.checkpoint = checkpoint
        self.rejects = rejects
        self.progress = progress
        self.writers = writers
        self.stop = _StopFlag()
        self.pool = ThreadPoolExecutor(max_workers=writers, thread_name_prefix="backfill-writer")
        self.in_flight: deque[_InFlight] = deque()
        self.totals = WriteResult()
        self.rows_read = 0
        self.rejected = 0

    # -- reading

    def load_file(self, state: FileState) -> None:
        batch = _Batch(state, next_line=state.next_line)
        for record in iter_records(state.path, self.family, start_line=state.next_line):
            # A full batch goes once the next row exists, so the last one carries `done`.
            if batch.rows >= self.batch_size:
                self.submit(batch)
                batch = _Batch(state, next_line=batch.next_line)
            batch.rows += 1
            batch.next_line = record.line + 1
            if record.error is not None:
                batch.rejects.append(reject_line(record.file, record.line, record.error, "read"))
            else:
                try:
                    event = parse_event(self.family, record.raw)
                except EventValidationError as exc:
                    batch.rejects.append(reject_line(record.file, record.line, str(exc), "parse"))
                else:
                    try:
                        batch.events.append(self.preparer.prepare(event))
                    except IngestError as exc:
                        batch.rejects.append(
                            reject_line(record.file, record.line, str(exc), "normalise")
                        )
            if self.stop.requested:
                self.submit(batch)
                return
        batch.done = True
        self.submit(batch)

    # -- writing

    def submit(self, batch: _Batch) -> None:
        """Hand a batch to a writer thread; waits while all writers are busy."""
        while len(self.in_flight) >= self.writers:
            self.complete_oldest()
        future: Future[WriteResult]
        if batch.events:
            future = self.pool.submit(self.writer.write, batch.events)
        else:
            future = Future()
            future.set_result(WriteResult())
        self.in_flight.append(_InFlight(batch, future))

    def complete_oldest(self) -> None:
        """Wait for the oldest batch, then record it: rejects, checkpoint, totals, progress.

        Batches are recorded in the order they were read even when two writers finish out of
        order, so the checkpoint never claims a line whose batch is not committed. Recording is
        safe to repeat (the rejects file is cut back to the last committed size first).
        """
        head = self.in_flight[0]
        result = _written(head)
        batch = head.batch
        # Rejects first, then the checkpoint that vouches for them. A crash between the batch's
        # commit and this save only means its rows are read again by the next run: the writer
        # finds their events already stored and counts them as duplicates, not twice.
        rejects_size = self.rejects.append(batch.rejects)
        batch.state.next_line = batch.next_line
        batch.state.done = batch.done
        self.checkpoint.rejects_size = rejects_size
        self.checkpoint.save()
        self.rejects.committed_size = rejects_size
        self.in_flight.popleft()
        self.totals += result
        self.rows_read += batch.rows
        self.rejected += len(batch.rejects)
        if self.progress is not None:
            self.progress(
                BackfillProgress(
                    file=batch.state.path,
                    next_line=batch.next_line,
                    rows_read=self.rows_read,
                    written=self.totals.written,
                    duplicates=self.totals.duplicates,
                    rejected=self.rejected,
                )
            )

    def drain(self) -> None:
        while self.in_flight:
            self.complete_oldest()

    def abandon(self) -> None:
        """After a failure or Ctrl-C: let the writes already started finish, record them."""
        self.progress = None  # a stopping run reports nothing more
        while self.in_flight:
            try:
                self.complete_oldest()
            except Exception:
                # A failed batch: nothing after it may be recorded. The caller re-raises the
                # error that stopped the run, or reports the interruption.
                self.in_flight.clear()
                break

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.rejects.close()

    def summary(self, started: float, files: int, skipped: int) -> BackfillSummary:
        seconds = time.perf_counter() - started
        return BackfillSummary(
            rows_read=self.rows_read,
            written=self.totals.written,
            duplicates=self.totals.duplicates,
            rejected=self.rejected,
            seconds=seconds,
            rate=self.rows_read / seconds if seconds > 0 else 0.0,
            files=files,
            files_skipped=skipped,
        )


def _written(item: _InFlight) -> WriteResult:
    batch = item.batch
    lines = f"{batch.state.path} before line {batch.next_line}"
    try:
        return item.future.result()
    except (Neo4jError, DriverError) as exc:
        # The code names the failure; Neo4j's message may quote property values.
        code = getattr(exc, "code", None) or type(exc).__name__
        raise GraphError(
            f"writing the batch ending {lines} failed ({code}); "
            "work up to the previous batch is checkpointed, run again to resume"
        ) from None
    except GraphError as exc:
        raise GraphError(f"writing the batch ending {lines} failed: {exc}") from None


# ---------------------------------------------------------------------------------- the run


def _input_files(paths: Sequence[str | Path]) -> list[Path]:
    files: list[Path] = []
    for given in paths:
        path = Path(given).absolute()
        detect_format(path)
        if not path.is_file():
            raise IngestError(f"{given}: no such file")
        if path not in files:
            files.append(path)
    if not files:
        raise IngestError("no input files given")
    return files


def _check_readable(path: Path, family: EventFamily) -> None:
    # Reading the first row checks the header (CSV) or schema (Parquet) before anything is
    # written; leaving the loop drops the generator, which closes the file.
    for _record in iter_records(path, family):
        break


def _load_checkpoint(
    checkpoint_path: Path, family: EventFamily, files: Sequence[Path], resume: bool
) -> tuple[Checkpoint, bool]:
    """The checkpoint to continue (or a new one) with every input file in it; True if new."""
    stored = Checkpoint.load(checkpoint_path, family) if resume else None
    checkpoint = stored or Checkpoint(checkpoint_path, family)
    for path in files:
        current = fingerprint(path)
        known = checkpoint.files.get(current.path)
        if known is None:
            checkpoint.files[current.path] = current
        elif not known.same_content(current):
            raise IngestError(
                f"{path} changed since checkpoint {checkpoint_path} was written "
                "(size, modification time or content); pass --restart to load all files again"
            )
    return checkpoint, stored is None


def _open_rejects(checkpoint: Checkpoint, rejects_path: Path, fresh: bool) -> RejectsFile:
    name = str(rejects_path)
    if fresh:
        # A fresh start reports every rejected row again, so the old report goes.
        with contextlib.suppress(FileNotFoundError):
            rejects_path.unlink()
        checkpoint.rejects_path, checkpoint.rejects_size = name, 0
    else:
        current_size = rejects_path.stat().st_size if rejects_path.exists() else 0
        if checkpoint.rejects_path != name or current_size < checkpoint.rejects_size:
            # Another rejects file, or this one was moved away: append to what is there.
            checkpoint.rejects_path, checkpoint.rejects_size = name, current_size
        elif current_size > checkpoint.rejects_size:
            # Lines of batches that never reached the checkpoint: this run reads those rows
            # and reports them again.
            _truncate(rejects_path, checkpoint.rejects_size)
    return RejectsFile(rejects_path, checkpoint.rejects_size)


def _truncate(path: Path, size: int) -> None:
    try:
        with path.open("r+b") as stream:
            stream.truncate(size)
    except OSError as exc:
        raise IngestError(f"cannot write rejects file {path}: {exc.strerror or exc}") from None


def backfill(
    family: EventFamily | str,
    paths: Sequence[str | Path],
    *,
    runner: QueryRunner,
    writer: GraphWriter,
    preparer: Preparer,
    batch_size: int = DEFAULT_BATCH_SIZE,
    checkpoint_path: str | Path,
    rejects_path: str | Path,
    progress: ProgressCallback | None = None,
    resume: bool = True,
    writers: int = 1,
) -> BackfillSummary:
    """Load event files of one family into the graph, in order; see the module docstring.

    The schema is applied to ``runner`` (the graph the ``writer`` writes to) first. With
    ``resume`` (the default) a checkpoint from an earlier run is continued; without it the
    checkpoint and the rejects file start anew.

    ``writers`` threads write batches concurrently (the writer is deadlock-safe). Batches then
    commit out of file order: the writer's counters do not mind, but which batch creates a
    shared identifier node (and so sets its ``first_seen``) does. One writer, the default,
    gives exactly the graph of a clean run.

    Raises `IngestError` for files that cannot be loaded at all, `GraphError` when Neo4j
    fails, and `BackfillInterruptedError` after Ctrl-C (or a KeyboardInterrupt from
    ``progress``), once the work already sent to Neo4j is checkpointed.
    """
    family = EventFamily(family)
    if batch_size < 1:
        raise IngestError(f"batch size must be 1 or more, got {batch_size}")
    if not 1 <= writers <= MAX_WRITERS:
        raise IngestError(f"writers must be between 1 and {MAX_WRITERS}, got {writers}")
    started = time.perf_counter()
    files = _input_files(paths)
    checkpoint, fresh = _load_checkpoint(Path(checkpoint_path).absolute(), family, files, resume)
    todo = [checkpoint.files[str(path)] for path in files]
    for state in todo:
        if not state.done:
            _check_readable(Path(state.path), family)
    # Unique constraints make concurrent MERGEs safe and fast; migrating is idempotent.
    migrate(runner)
    # Only now that every file looks loadable: the rejects file and checkpoint of a run.
    rejects = _open_rejects(checkpoint, Path(rejects_path).absolute(), fresh)
    checkpoint.save()

    run = _Run(
        family=family,
        writer=writer,
        preparer=preparer,
        batch_size=batch_size,
        checkpoint=checkpoint,
        rejects=rejects,
        progress=progress,
        writers=writers,
    )
    skipped = sum(state.done for state in todo)
    try:
        with run.stop.installed():
            try:
                for state in todo:
                    if state.done:
                        continue
                    run.load_file(state)
                    if run.stop.requested:
                        break
                run.drain()
            except KeyboardInterrupt:
                run.stop.requested = True
                run.abandon()
            except BaseException:
                run.abandon()
                raise
    finally:
        run.close()
    summary = run.summary(started, len(files), skipped)
    unfinished = next((state for state in todo if not state.done), None)
    if run.stop.requested and unfinished is not None:
        raise BackfillInterruptedError(summary, unfinished.path, unfinished.next_line)
    return summary
