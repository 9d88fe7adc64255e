"""GDS pipeline time and Neo4j memory versus graph size, and the live ring tracker's cost.

For each size (10k, 100k, 1M subscribers by default) a fresh stack is loaded with the
simulator's identities (one month; no transactions: the pipeline reads only subscribers,
identifiers and labels) through the offline import, plus fraud / legitimate labels at the
simulator's rates (30 % of fraudsters, 2 % of legitimate subscribers), so closeness to labelled
fraud has sources. Then `ringwatch.graph.analytics.GdsPipeline` runs, timed per step, in two
variants, interleaved (as shipped first, so the first, cold run of a fresh store falls on it):

- *as shipped*: the pipeline exactly as ringwatch runs it, node similarity compared only within
  each WCC component (``useComponents``);
- *all-pairs similarity (baseline)*: the same pipeline with node similarity over every pair of
  subscribers, as it ran before. Two subscribers of different components share no identifier,
  so the similarities are the same; the baseline shows what the scoping saves.

`--runs` runs of each variant (`--large-runs` from `--large` subscribers); a run still going
after `--timeout` seconds is stopped (its GDS transactions terminated) and reported as not
finished, with the steps it completed.

Memory: the Neo4j process's resident set (VmRSS) is sampled every 50 ms during each run; the
peak is reported with VmHWM (the high-water mark since the server started) and GDS's own
estimate of the largest step. The JVM keeps heap it once used, so the RSS is what the server
holds, not what the algorithms needed; the estimate is the latter.

Live rings: on the `--latency-size` graph, after the runs and a ring reconciliation, single
identity events that link a new subscriber to a shared identifier are written one per
transaction with `GraphWriter` by three writers, interleaved, on disjoint identifiers: with
`LiveRingTracker`, without it, and with one trivial statement in the tracker's place (what a
round trip alone costs there). First `--latency-warm-up-rounds` passes over every planned event
in transactions that are rolled back, then `--latency-warm-up` events per writer, committed;
neither is counted. Kinds: *join* (a ring member's identifier: the ring grows), *form* (an
identifier two subscribers outside rings share: a new ring of 3), *pair* (the identifier of a
subscriber who shares nothing yet: no ring). The tracker's cost per event is the difference
between the first two writers, and its own time is timed inside the transaction; each statement
of the write is timed to show where the time goes.

GNN (`--gnn`): after the pipeline runs, ringwatch's own training from the graph (the model
kinds of `--gnn-kinds`, each to early stopping or its chosen number of trees), batch inference
over every subscriber with the best of them, and live scoring latency of `--gnn-samples` random
subscribers, as `gnn_timings` describes.

Run: .venv/bin/python -m bench.analytics [--sizes 10000,100000,1000000] [--runs 3] [--gnn]
     [--heap 6g] [--pagecache 2g] [--latency-size 100000] [--latency-events 1000]
     [--latency-warm-up 20] [--timeout 1800] [--work DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import os
import random
import shutil
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context
from operator import itemgetter
from pathlib import Path
from typing import Any, LiteralString, TypeVar, cast

from graphdatascience import GraphDataScience
from neo4j import Driver, GraphDatabase
from rich.console import Console
from rich.table import Table

from bench.common import hardware, median, rss_mib, save, stack_on_free_ports
from ringwatch.config import Neo4jConfig, ScoringConfig, Settings, StackConfig
from ringwatch.graph import rings as rings_module
from ringwatch.graph import writer as writer_module
from ringwatch.graph.analytics import (
    GdsPipeline,
    PipelineReport,
    identifier_weights,
    link_pattern,
)
from ringwatch.graph.db import Neo4jRunner, QueryRunner, Record, Tx, create_driver
from ringwatch.graph.rings import LiveRingTracker, RingEvent, reconcile_rings
from ringwatch.graph.writer import IDENTIFIER_SCHEMA, GraphWriter
from ringwatch.ingest.backfill import backfill
from ringwatch.ingest.events import EventFamily
from ringwatch.ingest.formats import write_events
from ringwatch.ingest.normalize import IdentifierKind
from ringwatch.ingest.offline_import import offline_import
from ringwatch.ingest.prepare import IdentifierLink, PreparedIdentity, Preparer
from ringwatch.ingest.simulate import LEGITIMATE, SimulationConfig, _Population
from ringwatch.stack import manager

console = Console()
T = TypeVar("T")

FRAUD_LABEL_RATE = 0.3
LEGITIMATE_LABEL_RATE = 0.02


# ---------------------------------------------------------------------------------- the data


def _identity_events(population: _Population) -> Iterator[Any]:
    """The population's identity events in time order, built one at a time.

    `_Population.identity_events` builds them all in a list first; at a million subscribers
    that is several GB on top of the population itself.
    """
    ordered = sorted(population.pending, key=itemgetter(0, 1))
    for number, (at, _, build) in enumerate(ordered, start=1):
        yield build(
            event_id=f"idn-{number:08d}",
            schema_version=1,
            occurred_at=datetime.fromtimestamp(at, UTC),
        )


def simulate_identities(size: int, seed: int, directory: str) -> dict[str, int]:
    """Identities of a simulated month, and labels drawn from the ground truth.

    The simulator's own labels need its transactions generated first (hours at a million
    subscribers), so the labels are drawn here at the simulator's default rates. Runs in a
    child process: the population of a million subscribers takes about 10 GB, returned to the
    system when the child exits.
    """
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    population = _Population(SimulationConfig(subscribers=size, months=1, seed=seed))
    identity = write_events(
        target / "identity.jsonl", EventFamily.IDENTITY, _identity_events(population)
    )
    rng = random.Random(f"{seed}:bench-labels")
    start = datetime(2024, 1, 31, tzinfo=UTC)
    labels = 0
    fraud = 0
    with (target / "labels.jsonl").open("w") as out:
        for truth in population.ground_truth():
            is_fraud = truth.pattern != LEGITIMATE
            fraud += is_fraud
            if rng.random() >= (FRAUD_LABEL_RATE if is_fraud else LEGITIMATE_LABEL_RATE):
                continue
            labels += 1
            occurred = start + timedelta(seconds=labels)
            record = {
                "event_id": f"lbl-{labels:08d}",
                "schema_version": 1,
                "occurred_at": occurred.isoformat().replace("+00:00", "Z"),
                "subscriber_id": truth.subscriber_id,
                "source": "analyst",
                "label": "fraud" if is_fraud else "legitimate",
            }
            out.write(json.dumps(record) + "\n")
    (target / "done").write_text(json.dumps({"identity": identity, "labels": labels}))
    return {"identity": identity, "labels": labels, "fraud": fraud}


def _simulated(work: Path, size: int, seed: int) -> Path:
    directory = work / f"sim-{size}-{seed}"
    if not (directory / "done").exists():
        started = time.perf_counter()
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            counts = pool.submit(simulate_identities, size, seed, str(directory)).result()
        console.print(
            f"simulated {size:,} subscribers in {time.perf_counter() - started:.0f} s: "
            f"{counts['identity']:,} identity events, {counts['labels']:,} labels"
        )
    return directory


# ------------------------------------------------------------------------------------ memory


def vm_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


class RssSampler:
    """Peak resident set of a process, sampled on a background thread."""

    def __init__(self, pid: int, interval_s: float = 0.05) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mib = max(self.peak_mib, rss_mib(self.pid))
            self._stop.wait(self.interval_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mib = max(self.peak_mib, rss_mib(self.pid))


def _neo4j_pid(stack: StackConfig) -> int:
    for status in manager.status(stack):
        if status.name == "neo4j" and status.pid is not None:
            return status.pid
    raise RuntimeError("Neo4j is not running")


# ----------------------------------------------------------------------------- live rings


class TimedRunner:
    """A runner whose write transactions time each statement, named after its constant."""

    def __init__(self, inner: Neo4jRunner, names: Mapping[str, str]) -> None:
        self.inner = inner
        self.names = names
        self.seconds: dict[str, float] = defaultdict(float)

    def read(self, query: LiteralString, params: Mapping[str, Any] | None = None) -> list[Record]:
        return self.inner.read(query, params)

    def write(self, query: LiteralString, params: Mapping[str, Any] | None = None) -> list[Record]:
        return self.inner.write(query, params)

    def write_transaction(self, work: Callable[[Tx], T]) -> T:
        runner = self

        class Timed:
            def __init__(self, tx: Tx) -> None:
                self.tx = tx

            def run(
                self, query: LiteralString, params: Mapping[str, Any] | None = None
            ) -> list[Record]:
                began = time.perf_counter()
                try:
                    return self.tx.run(query, params)
                finally:
                    name = runner.names.get(query) or query.strip().splitlines()[0][:50]
                    runner.seconds[name] += time.perf_counter() - began

        return self.inner.write_transaction(lambda tx: work(Timed(tx)))


class TimedTracker(LiveRingTracker):
    """The live tracker, timing each update from its first statement to its last answer: the
    time it adds inside the ingest transaction (its share of the commit is not in it)."""

    last_s: float | None = None

    def update(self, tx: Tx, subscriber_ids: Iterable[str], now: datetime) -> list[RingEvent]:
        began = time.perf_counter()
        try:
            return super().update(tx, subscriber_ids, now)
        finally:
            self.last_s = time.perf_counter() - began


_ROUND_TRIP: LiteralString = "RETURN 1 AS one"


class RoundTripProbe(TimedTracker):
    """In the tracker's place, one trivial statement, timed as the tracker is: the least any
    tracker that asks the server anything inside the ingest transaction can cost there."""

    def update(self, tx: Tx, subscriber_ids: Iterable[str], now: datetime) -> list[RingEvent]:
        began = time.perf_counter()
        tx.run(_ROUND_TRIP)
        self.last_s = time.perf_counter() - began
        return []


def _statement_names(tracker: LiveRingTracker) -> dict[str, str]:
    names = {
        value: name
        for module in (rings_module, writer_module)
        for name, value in vars(module).items()
        if name.startswith("_") and isinstance(value, str)
    }
    for kind, statement in writer_module._LINK_STATEMENTS.items():
        names[statement] = f"link {kind.value}"
    for creates, leaves, joins, updates in itertools.product((False, True), repeat=4):
        parts = [p for p, on in (("create", creates), ("leave", leaves), ("join", joins),
                                 ("update", updates)) if on]  # fmt: skip
        statement = rings_module.live_apply_statement(
            creates=creates, leaves=leaves, joins=joins, updates=updates
        )
        names[statement] = f"live apply ({', '.join(parts) or 'lineage only'})"
    names[_ROUND_TRIP] = "one round trip (RETURN 1), in the tracker's place"
    names[tracker.settle_query] = "live settle (lock, neighbours, join or new ring)"
    names[tracker.query] = "_LIVE_NEIGHBOURS (with the lock)"
    names[tracker.walk_query] = "_LIVE_NEIGHBOURS (walk further)"
    return names


@dataclass(frozen=True)
class Target:
    kind: str  # join | form | pair
    links: tuple[IdentifierLink, ...]


_KIND_OF_LABEL = {schema.label: kind for kind, schema in IDENTIFIER_SCHEMA.items()}


def _targets(runner: Neo4jRunner, config: ScoringConfig, per_kind: int) -> dict[str, list[Target]]:
    """Shared identifiers to link new subscribers to, each used once, well below the hub cap."""
    pattern = link_pattern(config)
    cap = config.hub_cap - 2
    join = runner.read(
        "MATCH (r:Ring {status: 'active'})<-[:MEMBER_OF]-(s:Subscriber)\n"
        f"MATCH (s)-[:{pattern}]->(i) WHERE NOT coalesce(i.hub, false) AND i.subscribers < $cap\n"
        "WITH r, collect(DISTINCT i)[..3] AS ids UNWIND ids AS i\n"
        "RETURN labels(i)[0] AS label, i.id AS id LIMIT $n",
        {"cap": cap, "n": per_kind},
    )
    # Components of exactly two subscribers, outside rings: a third member makes a ring.
    form = runner.read(
        "MATCH (s:Subscriber) WHERE s.component_id IS NOT NULL AND s.ring_id IS NULL\n"
        "WITH s.component_id AS component, collect(s) AS members WHERE size(members) = 2\n"
        "WITH members[0] AS a, members[1] AS b LIMIT $n\n"
        "CALL (a, b) {\n"
        f"  MATCH (a)-[:{pattern}]->(i)<-[:{pattern}]-(b) WHERE NOT coalesce(i.hub, false)\n"
        "  RETURN i LIMIT 1\n"
        "}\n"
        "RETURN labels(i)[0] AS label, i.id AS id",
        {"n": per_kind},
    )
    # Subscribers who share nothing: a second member makes a pair, not a ring.
    pair = runner.read(
        "MATCH (s:Subscriber) WHERE s.component_id IS NOT NULL AND s.ring_id IS NULL\n"
        "WITH s.component_id AS component, collect(s) AS members WHERE size(members) = 1\n"
        "WITH members[0] AS s LIMIT $n\n"
        "CALL (s) {\n"
        f"  MATCH (s)-[:{pattern}]->(i) WHERE NOT coalesce(i.hub, false)\n"
        "  RETURN i LIMIT 1\n"
        "}\n"
        "RETURN labels(i)[0] AS label, i.id AS id",
        {"n": per_kind},
    )
    return {
        name: [
            Target(name, (IdentifierLink(_KIND_OF_LABEL[row["label"]], str(row["id"])),))
            for row in rows
        ]
        for name, rows in (("join", join), ("form", form), ("pair", pair))
    }


def _event(run: str, number: int, mode: str, target: Target) -> PreparedIdentity:
    # A new subscriber with a phone and an email of its own, plus the shared identifier. `run`
    # keeps ids apart from an earlier run's on a kept store: a repeated event id would be
    # skipped as a duplicate, and a repeated phone would be shared.
    sid = f"bench-live-{run}-{mode}-{number:06d}"
    own = (
        IdentifierLink(IdentifierKind.PHONE, f"+1999{run}{number:06d}{int(mode == 'tracker')}"),
        IdentifierLink(IdentifierKind.EMAIL, f"{sid}@bench.example"),
    )
    return PreparedIdentity(
        event_id=f"{sid}-registered",
        type="subscriber.registered",
        subscriber_id=sid,
        ts=datetime.now(UTC),
        status="active",
        name=None,
        links=own + target.links,
    )


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _p50_p99_ms(seconds: list[float]) -> dict[str, float]:
    return {"p50_ms": 1000 * _percentile(seconds, 0.5), "p99_ms": 1000 * _percentile(seconds, 0.99)}


def _latencies(by_kind: Mapping[str, list[float]]) -> dict[str, Any]:
    """Count, p50, p99 and mean in ms of every event, and count, p50 and p99 per kind."""
    every = [s for values in by_kind.values() for s in values]
    return {
        "events": len(every),
        **_p50_p99_ms(every),
        "mean_ms": 1000 * statistics.fmean(every),
        "by_kind": {
            kind: {"events": len(values), **_p50_p99_ms(values)}
            for kind, values in sorted(by_kind.items())
        },
    }


WARM_UP = 20
"""Events per writer run first and not counted (query planning, cold caches)."""

WARM_UP_ROUNDS = 10
"""Times every planned event is written and rolled back before the timed loop (see below).
The server reaches its steady speed on these statements only after several thousand runs of
them, as an ingest worker's server does within minutes: at 10k the tracker's p99 was 5.2-6.7 ms
with 2 passes, and 3.9 ms as the median of six runs with 10 (`docs/benchmarks.md`)."""


class _RollBackError(Exception):
    """Raised at the end of a warm-up transaction, so the server rolls it back."""


class RollingBackRunner:
    """Runs each write transaction in full, then rolls it back. Warm-up through it leaves no
    trace in the graph, so it can repeat over the same identifiers as often as the server's JIT
    needs: the benchmark's targets (identifiers a new subscriber can share once) are few."""

    def __init__(self, inner: Neo4jRunner) -> None:
        self.inner = inner

    def read(self, query: LiteralString, params: Mapping[str, Any] | None = None) -> list[Record]:
        return self.inner.read(query, params)

    def write(self, query: LiteralString, params: Mapping[str, Any] | None = None) -> list[Record]:
        raise NotImplementedError("warm-up writes only in transactions, which are rolled back")

    def write_transaction(self, work: Callable[[Tx], T]) -> T:
        results: list[T] = []

        def run_then_roll_back(tx: Tx) -> T:
            results.append(work(tx))
            raise _RollBackError

        with contextlib.suppress(_RollBackError):
            self.inner.write_transaction(run_then_roll_back)
        return results[-1]


def live_ring_latency(
    runner: Neo4jRunner,
    config: ScoringConfig,
    events: int,
    warm_up: int = WARM_UP,
    warm_up_rounds: int = WARM_UP_ROUNDS,
) -> dict[str, Any]:
    """p50/p99 of one identity event per transaction, with and without the live tracker, after
    `warm_up_rounds` passes over every planned event in transactions that are rolled back, then
    `warm_up` events per writer that are committed and not counted."""
    started = time.perf_counter()
    reconciled = reconcile_rings(runner, min_ring_size=config.min_ring_size)
    reconcile_s = time.perf_counter() - started
    shares = {"join": 0.5, "form": 0.25, "pair": 0.25}
    # Three writers, interleaved: with the tracker, without it, and with one trivial statement
    # in its place (the round trip's own cost, a floor for the tracker's).
    tracker = TimedTracker(link_pattern(config), min_ring_size=config.min_ring_size)
    probe = RoundTripProbe(link_pattern(config), min_ring_size=config.min_ring_size)
    trackers: dict[str, TimedTracker | None] = {
        "tracker": tracker,
        "plain": None,
        "round trip": probe,
    }
    modes = list(trackers)
    # Every writer takes its share of each kind, on disjoint identifiers.
    wanted = {
        kind: len(modes) * max(1, round((events + warm_up) * share))
        for kind, share in shares.items()
    }
    targets = _targets(runner, config, max(wanted.values()))
    plan: list[Target] = []
    for kind, count in wanted.items():
        found = targets[kind][:count]
        if len(found) < count:
            console.print(f"[yellow]only {len(found)} targets of kind {kind} (wanted {count})")
        plan.extend(found)
    random.Random(7).shuffle(plan)  # a fixed order
    names = _statement_names(tracker)
    timed = {mode: TimedRunner(runner, names) for mode in modes}

    def writer(runner_of_mode: QueryRunner, mode: str) -> GraphWriter:
        return GraphWriter(
            runner_of_mode,
            hub_cap=config.hub_cap,
            ring_tracker=trackers[mode],
            ring_link_types=frozenset(identifier_weights(config)),
        )

    writers = {mode: writer(timed[mode], mode) for mode in modes}
    run = f"{random.SystemRandom().randrange(10_000):04d}"
    # The server's JIT compiles the statements' hot paths after thousands of runs, far more
    # events than a store has targets for; rolled back, the same events can be written again.
    rolling_back = RollingBackRunner(runner)
    warm_writers = {mode: writer(rolling_back, mode) for mode in modes}
    warm_up_began = time.perf_counter()
    for warm_round in range(warm_up_rounds):
        for number, target in enumerate(plan):
            mode = modes[number % len(modes)]
            warm_writers[mode].write([_event(f"{run}w{warm_round}", number, mode, target)])
    warm_up_s = time.perf_counter() - warm_up_began
    seconds: dict[str, dict[str, list[float]]] = {m: defaultdict(list) for m in writers}
    # The tracker's own time, and the probe's, by writer and kind.
    inside: dict[str, dict[str, list[float]]] = {
        mode: defaultdict(list) for mode, timed_tracker in trackers.items() if timed_tracker
    }
    ring_events: dict[str, int] = defaultdict(int)
    # Interleaved, so drift in the machine's load touches every writer alike.
    counted_from = len(modes) * warm_up
    for number, target in enumerate(plan):
        mode = modes[number % len(modes)]
        if number == counted_from:
            for runner_of_mode in timed.values():
                runner_of_mode.seconds.clear()
        event = _event(run, number, mode, target)
        own = trackers[mode]
        if own is not None:
            own.last_s = None
        began = time.perf_counter()
        result = writers[mode].write([event])
        elapsed = time.perf_counter() - began
        if number >= counted_from:
            seconds[mode][target.kind].append(elapsed)
            if own is not None and own.last_s is not None:
                inside[mode][target.kind].append(own.last_s)
            for ring_event in result.ring_events:
                ring_events[ring_event.kind] += 1
    summary: dict[str, Any] = {
        "reconcile_s": reconcile_s,
        "rings": reconciled.rings,
        "warm_up_events": warm_up,
        "warm_up_rounds": warm_up_rounds,
        "warm_up_rolled_back_events": warm_up_rounds * len(plan),
        "warm_up_rolled_back_s": warm_up_s,
        "ring_events": dict(ring_events),
    }
    for mode, by_kind in seconds.items():
        every = [s for values in by_kind.values() for s in values]
        statements = {
            name: 1000 * total / len(every)
            for name, total in sorted(timed[mode].seconds.items(), key=lambda item: -item[1])
        }
        summary[mode] = {
            **_latencies(by_kind),
            # Mean time per event in each statement; the rest is commit and client time.
            "statements_mean_ms": statements,
            "outside_statements_mean_ms": 1000 * statistics.fmean(every) - sum(statements.values()),
        }
    summary["tracker_inside"] = _latencies(inside["tracker"])
    summary["round_trip_inside"] = _latencies(inside["round trip"])
    for stat in ("p50", "p99", "mean"):
        summary[f"tracker_cost_{stat}_ms"] = (
            summary["tracker"][f"{stat}_ms"] - summary["plain"][f"{stat}_ms"]
        )
    return summary


# Reads every node's and relationship's properties, every relationship from its start node and
# the subscriber id index: what a server that has been answering for a while holds in its page
# cache (the 1M store fits in the 4 GB the benchmark gives it). Neo4j Community has no page
# cache warm-up of its own.
_WARM_PAGE_CACHE: tuple[LiteralString, ...] = (
    "MATCH (s:Subscriber) WHERE s.id IS NOT NULL RETURN count(*) AS n",
    "MATCH (n) RETURN count(properties(n)) AS n",
    "MATCH (n)-[r]->() RETURN count(properties(r)) AS n",
)


def _live_gnn_latencies(
    uri: str, models_dir: Path, found: list[str], warmed: list[str], warm_up: list[str]
) -> dict[str, Any]:
    """Seconds per live score of each subscriber after the first `WARM_UP`: `found` with the
    page cache as batch scoring left it, then `warmed` (other subscribers) after reading the
    whole store once and scoring the `warm_up` subscribers, uncounted. Run in a child process:
    see `gnn_timings`."""
    from ringwatch.config import ModelsConfig
    from ringwatch.graph.gnn_live import score_subscriber

    models = ModelsConfig(dir=models_dir)
    now = datetime.now(UTC)
    result: dict[str, Any] = {}
    with create_driver(Neo4jConfig(uri=uri)) as driver:
        runner = Neo4jRunner(driver)
        for name, chosen in (("found", found), ("warmed", warmed)):
            if name == "warmed":
                began = time.perf_counter()
                for query in _WARM_PAGE_CACHE:
                    runner.read(query)
                result["warm_up_s"] = time.perf_counter() - began
                for sid in warm_up:
                    score_subscriber(runner, sid, models, now)
            latencies: list[float] = []
            for number, sid in enumerate(chosen):
                began = time.perf_counter()
                score = score_subscriber(runner, sid, models, now)
                if number >= WARM_UP and score is not None:
                    latencies.append(time.perf_counter() - began)
            result[name] = latencies
    return result


def gnn_timings(
    runner: Neo4jRunner,
    uri: str,
    work: Path,
    size: int,
    samples: int,
    warm_up_scores: int = 0,
    kinds: Sequence[str] = ("sage", "camouflage"),
) -> dict[str, Any]:
    """Train `kinds` from the graph, score every subscriber with the best, then time live
    scoring.

    Training is ringwatch's own `train_from_graph` (export, whole-component split, each kind to
    early stopping); batch inference is `score_subscribers` (export, forward pass, write-back);
    live scoring is `gnn_live.score_subscriber` on `samples` random subscribers after a warm-up
    (neighbourhood read plus forward pass, as the API runs it), in a fresh process of its own
    like the API's: not in this one, whose heap still holds what training and batch scoring
    left. It is timed twice, on different subscribers: with Neo4j's page cache as batch scoring
    left it (`live`), and after the whole store was read once and `warm_up_scores` other
    subscribers were scored uncounted (`live_warm`), as on a server that has been answering for
    a while: its page cache holds the store and its JIT has compiled the queries' code paths.
    """
    from ringwatch.config import ModelsConfig
    from ringwatch.graph.gnn_run import score_subscribers, train_from_graph
    from ringwatch.models.registry import ModelRegistry

    models = ModelsConfig(dir=work / f"models-{size}")
    shutil.rmtree(models.dir, ignore_errors=True)
    registry = ModelRegistry(models.dir)
    trained = train_from_graph(runner, registry, models, kinds=kinds)
    registry.promote(trained.manifest.version, force=True)
    scored = score_subscribers(runner, registry)
    ids = [r["id"] for r in runner.read("MATCH (s:Subscriber) RETURN s.id AS id")]
    count = min(len(ids) // 2, samples + WARM_UP)
    warm_up = min(warm_up_scores, len(ids) - 2 * count)
    chosen = random.Random(7).sample(ids, 2 * count + warm_up)
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        live = pool.submit(
            _live_gnn_latencies,
            uri,
            models.dir,
            chosen[:count],
            chosen[count : 2 * count],
            chosen[2 * count :],
        ).result()
    return {
        "export_s": trained.export["seconds"],
        "train_total_s": trained.seconds,
        "split": trained.split,
        "candidates": [
            {
                "kind": c["kind"],
                "epochs": c["epochs"],
                "best_epoch": c["best_epoch"],
                "seconds": c["seconds"],
                "seconds_per_epoch": c["seconds"] / max(1, c["epochs"]),
                "val_pr_auc": c["metrics"]["val"]["pr_auc"],
                "test_pr_auc": c["metrics"]["test"]["pr_auc"],
            }
            for c in trained.candidates
        ],
        "promoted": trained.manifest.version,
        "promoted_kind": trained.manifest.kind,
        "batch_inference_s": scored.seconds,
        "batch_subscribers": scored.subscribers,
        "live": {"samples": len(live["found"]), **_p50_p99_ms(live["found"])},
        "live_warm": {
            "samples": len(live["warmed"]),
            **_p50_p99_ms(live["warmed"]),
            "warm_up_s": live["warm_up_s"],
            "warm_up_scores": warm_up,
        },
    }


# ------------------------------------------------------------------------------- one size


class _UnscopedSimilarity:
    """`gds.node_similarity` whose `mutate` compares every pair of subscribers (the baseline)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def mutate(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.pop("use_components", None)
        return self._inner.mutate(*args, **kwargs)


class UnscopedGds:
    """The GDS client with one change for the pipeline: node similarity across components."""

    def __init__(self, gds: GraphDataScience) -> None:
        self._gds = gds

    def __getattr__(self, name: str) -> Any:
        return getattr(self._gds, name)

    @property
    def node_similarity(self) -> _UnscopedSimilarity:
        return _UnscopedSimilarity(self._gds.node_similarity)


class Watchdog:
    """Terminates the server's running GDS transactions after `seconds` (a run's time limit)."""

    def __init__(self, uri: str, seconds: float) -> None:
        self.uri = uri
        self.fired = False
        self.terminated: list[str] = []
        self._timer = threading.Timer(seconds, self._terminate)
        self._timer.daemon = True

    def _terminate(self) -> None:
        self.fired = True
        with GraphDatabase.driver(self.uri) as driver:
            rows, _, _ = driver.execute_query(
                "SHOW TRANSACTIONS YIELD transactionId, currentQuery\n"
                "WHERE currentQuery CONTAINS 'gds.' RETURN transactionId, currentQuery"
            )
            ids = [row["transactionId"] for row in rows]
            self.terminated = [str(row["currentQuery"])[:120] for row in rows]
            if ids:
                driver.execute_query("TERMINATE TRANSACTIONS $ids", {"ids": ids})

    def __enter__(self) -> Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._timer.cancel()


def _pipeline_run(
    gds: GraphDataScience,
    driver: Driver,
    config: ScoringConfig,
    pid: int,
    *,
    baseline: bool,
    timeout_s: float,
    uri: str,
) -> dict[str, Any]:
    client = cast("GraphDataScience", UnscopedGds(gds)) if baseline else gds
    pipeline = GdsPipeline(client, driver, config)
    began = time.perf_counter()
    error = None
    with RssSampler(pid) as sampler, Watchdog(uri, timeout_s) as watchdog:
        try:
            pipeline.run()
        except Exception as exc:  # only a run the watchdog stopped is an expected outcome
            if not watchdog.fired:
                raise
            error = f"stopped after {timeout_s:.0f} s in {watchdog.terminated}: {exc}"[:400]
    report: PipelineReport = pipeline.report
    return {
        "variant": "all-pairs similarity (baseline)" if baseline else "as shipped",
        "finished": error is None,
        "error": error,
        "seconds": report.seconds if error is None else time.perf_counter() - began,
        "steps": {step.name: step.seconds for step in report.steps},
        "details": {step.name: step.detail for step in report.steps if step.detail},
        "peak_rss_mib": sampler.peak_mib,
        "peak_estimate_bytes": report.peak_estimate_bytes,
        "projected_nodes": report.projected_nodes,
        "projected_relationships": report.projected_relationships,
        "components": report.components,
        "communities": report.communities,
        "similar_pairs": report.similar_pairs,
        "labelled_fraud": report.labelled_fraud,
    }


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    finished = [r for r in runs if r["finished"]]
    names: list[str] = []
    for r in finished:
        names += [n for n in r["steps"] if n not in names]
    return {
        "runs": len(runs),
        "finished": len(finished),
        "median_s": median([r["seconds"] for r in finished]) if finished else None,
        "median_steps_s": {n: median([r["steps"].get(n, 0.0) for r in finished]) for n in names},
        "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
        "peak_estimate_mib": max(r["peak_estimate_bytes"] for r in runs) / 2**20,
        "unfinished": [r["error"] for r in runs if not r["finished"]],
    }


def bench_size(
    work: Path, size: int, args: argparse.Namespace, settings_scoring: ScoringConfig
) -> dict[str, Any]:
    data = _simulated(work, size, args.seed)
    home = work / f"stack-{size}"
    loaded_marker = work / f"loaded-{size}.json"
    reuse = args.keep and loaded_marker.exists() and home.exists()
    if reuse:
        saved = json.loads(loaded_marker.read_text())
        # The same ports as when it was loaded: the servers' stored settings name them.
        base = StackConfig.model_validate_json(saved["stack"])
    else:
        shutil.rmtree(home, ignore_errors=True)
        loaded_marker.unlink(missing_ok=True)
        base = stack_on_free_ports(home)
    stack = base.model_copy(
        update={
            "neo4j_heap": args.heap,
            "neo4j_pagecache": args.pagecache,
            # A busy shared machine can take minutes to start a server.
            "start_timeout_s": 900.0,
        }
    )
    manager.up(stack)
    try:
        settings = Settings(neo4j=Neo4jConfig(uri=stack.neo4j_bolt_uri), scoring=settings_scoring)
        if reuse:
            loaded = saved["loaded"]
            console.print(f"{size:,}: reusing the store loaded earlier in {home}")
        else:
            loaded = _load(work, size, data, stack, settings)
            if args.keep:
                loaded_marker.write_text(
                    json.dumps({"stack": base.model_dump_json(), "loaded": loaded})
                )
        if args.load_only:
            return {**loaded, "runs": []}
        with create_driver(settings.neo4j) as driver:
            runner = Neo4jRunner(driver)
            measured = _measure(work, size, args, settings, stack, driver, runner)
    finally:
        manager.down(stack)
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    return {
        **loaded,
        "neo4j_heap": args.heap,
        "neo4j_pagecache": args.pagecache,
        "run_time_limit_s": args.timeout,
        **measured,
    }


def _load(
    work: Path,
    size: int,
    data: Path,
    stack: StackConfig,
    settings: Settings,
) -> dict[str, Any]:
    """Identities through the offline import (which restarts Neo4j), then labels online."""
    scoring = settings.scoring
    imported = offline_import(
        [data / "identity.jsonl"],
        stack=stack,
        preparer=Preparer(),
        hub_cap=scoring.hub_cap,
        work_dir=work / f"import-{size}",
        rejects_path=work / f"import-rejects-{size}.jsonl",
    )
    shutil.rmtree(work / f"import-{size}", ignore_errors=True)
    console.print(
        f"{size:,}: imported {imported.events:,} identity events "
        f"({imported.subscribers:,} subscribers, {imported.links:,} links) "
        f"in {imported.seconds:.0f} s"
    )
    with create_driver(settings.neo4j) as driver:
        runner = Neo4jRunner(driver)
        labelled = backfill(
            "labels",
            [data / "labels.jsonl"],
            runner=runner,
            writer=GraphWriter(runner, hub_cap=scoring.hub_cap),
            preparer=Preparer(),
            checkpoint_path=work / f"labels-cp-{size}.json",
            rejects_path=work / f"labels-rejects-{size}.jsonl",
            resume=False,
        )
    return {
        "subscribers": imported.subscribers,
        "identity_events": imported.events,
        "links": imported.links,
        "labels": labelled.written,
        "import_s": imported.seconds,
    }


def _measure(
    work: Path,
    size: int,
    args: argparse.Namespace,
    settings: Settings,
    stack: StackConfig,
    driver: Driver,
    runner: Neo4jRunner,
) -> dict[str, Any]:
    """Pipeline runs (both variants, interleaved), then GNN and live ring timings if asked."""
    large = size >= args.large
    variants = ["shipped"] if args.no_baseline else ["shipped", "baseline"]
    plan = variants * (args.large_runs if large else args.runs)
    pid = _neo4j_pid(stack)
    rss_before = rss_mib(pid)
    gds = GraphDataScience(stack.neo4j_bolt_uri, auth=None)
    runs: list[dict[str, Any]] = []
    try:
        for variant in plan:
            row = _pipeline_run(
                gds,
                driver,
                settings.scoring,
                pid,
                baseline=variant == "baseline",
                timeout_s=args.timeout,
                uri=stack.neo4j_bolt_uri,
            )
            runs.append(row)
            state = "" if row["finished"] else " [red]NOT FINISHED[/]"
            console.print(
                f"{size:,} subscribers, {row['variant']}: {row['seconds']:.1f} s{state}, "
                f"peak RSS {row['peak_rss_mib']:,.0f} MiB"
            )
        gnn = (
            gnn_timings(
                runner,
                stack.neo4j_bolt_uri,
                work,
                size,
                args.gnn_samples,
                args.gnn_warm_up,
                args.gnn_kinds,
            )
            if args.gnn
            else None
        )
        latency = (
            live_ring_latency(
                runner,
                settings.scoring,
                args.latency_events,
                args.latency_warm_up,
                args.latency_warm_up_rounds,
            )
            if size == args.latency_size
            else None
        )
    finally:
        gds.close()
    shipped = [r for r in runs if r["variant"] == "as shipped"]
    baseline = [r for r in runs if r["variant"] != "as shipped"]
    return {
        "rss_before_mib": rss_before,
        "vm_hwm_mib": vm_kib(pid, "VmHWM") / 1024,
        "runs": runs,
        "shipped": _summary(shipped) if shipped else None,
        "baseline": _summary(baseline) if baseline else None,
        "live_rings": latency,
        "gnn": gnn,
    }


# ------------------------------------------------------------------------------- printing


def _print(results: dict[int, dict[str, Any]]) -> None:
    measured = sorted(size for size in results if "live_rings" in results[size])
    sizes = [size for size in measured if results[size]["runs"]]
    columns = [
        (size, variant)
        for size in sizes
        for variant in ("shipped", "baseline")
        if results[size].get(variant)
    ]
    table = Table(title="GDS pipeline: median seconds per step (finished runs)")
    table.add_column("step")
    for size, variant in columns:
        table.add_column(f"{size:,} {variant}", justify="right")
    names: list[str] = []
    for size, variant in columns:
        names += [n for n in results[size][variant]["median_steps_s"] if n not in names]
    for name in names:
        table.add_row(
            name,
            *[f"{results[s][v]['median_steps_s'].get(name, 0.0):.2f}" for s, v in columns],
        )

    def total(size: int, variant: str) -> str:
        summary = results[size][variant]
        if summary["median_s"] is None:
            return f"> {results[size]['run_time_limit_s']:.0f} (not finished)"
        return f"{summary['median_s']:.1f}"

    table.add_row("[bold]total (median)", *[total(s, v) for s, v in columns])
    table.add_row(
        "runs",
        *[
            ", ".join(
                f"{r['seconds']:.0f}" + ("" if r["finished"] else "*")
                for r in results[s]["runs"]
                if (r["variant"] == "as shipped") == (v == "shipped")
            )
            for s, v in columns
        ],
    )
    table.add_row(
        "Neo4j peak RSS (MiB)", *[f"{results[s][v]['peak_rss_mib']:,.0f}" for s, v in columns]
    )
    table.add_row(
        "GDS estimate, largest step (MiB)",
        *[f"{results[s][v]['peak_estimate_mib']:,.0f}" for s, v in columns],
    )
    console.print(table)
    for size in sizes:
        first = results[size]["runs"][0]
        console.print(
            f"{size:,}: {first['projected_nodes']:,} projected nodes, "
            f"{first['projected_relationships']:,} relationships; Neo4j RSS before "
            f"{results[size]['rss_before_mib']:,.0f} MiB, VmHWM "
            f"{results[size]['vm_hwm_mib']:,.0f} MiB; import {results[size]['import_s']:.0f} s"
        )
    for size in measured:
        gnn = results[size].get("gnn")
        if not gnn:
            continue
        table = Table(title=f"GNN ({size:,} subscribers)")
        for column in ("model", "epochs (best)", "s per epoch", "train s", "val PR-AUC"):
            table.add_column(column, justify="left" if column == "model" else "right")
        for c in gnn["candidates"]:
            table.add_row(
                c["kind"],
                f"{c['epochs']} ({c['best_epoch']})",
                f"{c['seconds_per_epoch']:.2f}",
                f"{c['seconds']:.1f}",
                f"{c['val_pr_auc']:.3f}" if c["val_pr_auc"] is not None else "-",
            )
        console.print(table)
        live = gnn["live"]
        console.print(
            f"export {gnn['export_s']:.1f} s, training in all {gnn['train_total_s']:.1f} s, "
            f"promoted {gnn.get('promoted_kind', 'the best')}; "
            f"batch inference (export, forward, write) {gnn['batch_inference_s']:.1f} s for "
            f"{gnn['batch_subscribers']:,}; live scoring p50 {live['p50_ms']:.1f} ms, "
            f"p99 {live['p99_ms']:.1f} ms over {live['samples']}"
        )
        if warm := gnn.get("live_warm"):
            console.print(
                f"live scoring after reading the whole store once ({warm['warm_up_s']:.0f} s) "
                f"and {warm.get('warm_up_scores', 0):,} scores uncounted: "
                f"p50 {warm['p50_ms']:.1f} ms, p99 {warm['p99_ms']:.1f} ms over {warm['samples']}"
            )
    for size in measured:
        latency = results[size]["live_rings"]
        if not latency:
            continue
        warm_up = latency.get("warm_up_events", WARM_UP)
        rolled_back = latency.get("warm_up_rolled_back_events", 0)
        live = Table(
            title=f"Live ring update, one identity event per transaction ({size:,}; "
            + (f"{rolled_back:,} events written and rolled back, then " if rolled_back else "")
            + f"{warm_up} events per writer first, not counted)"
        )
        for column in ("writer", "kind", "events", "p50 ms", "p99 ms"):
            live.add_column(column, justify="left" if column in ("writer", "kind") else "right")
        rows = [("plain", latency["plain"]), ("tracker", latency["tracker"])]
        if latency.get("tracker_inside"):  # results saved before it was timed lack it
            rows.append(("tracker alone", latency["tracker_inside"]))
        if latency.get("round_trip_inside"):
            rows.append(("one round trip", latency["round_trip_inside"]))
        for writer, row in rows:
            live.add_row(
                writer, "all", str(row["events"]), f"{row['p50_ms']:.2f}", f"{row['p99_ms']:.2f}"
            )
            for kind, by_kind in row["by_kind"].items():
                live.add_row(
                    "",
                    kind,
                    str(by_kind["events"]),
                    f"{by_kind['p50_ms']:.2f}",
                    f"{by_kind['p99_ms']:.2f}",
                )
        live.add_row(
            "tracker cost",
            "all",
            "",
            f"{latency['tracker_cost_p50_ms']:.2f}",
            f"{latency['tracker_cost_p99_ms']:.2f}",
        )
        console.print(live)
        console.print(
            f"ring events written live: {latency['ring_events']}; rings before: {latency['rings']}"
        )
        where = Table(title="Where an event's time goes: mean ms per event")
        shown = [m for m in ("plain", "tracker", "round trip") if m in latency]
        for column in ("statement", *shown):
            where.add_column(column, justify="left" if column == "statement" else "right")
        means = {m: latency[m]["statements_mean_ms"] for m in shown}
        for name in sorted(
            {n for by_name in means.values() for n in by_name},
            key=lambda n: -max(by_name.get(n, 0.0) for by_name in means.values()),
        ):
            where.add_row(name, *(f"{means[m].get(name, 0.0):.2f}" for m in shown))
        where.add_row(
            "commit and client",
            *(f"{latency[m]['outside_statements_mean_ms']:.2f}" for m in shown),
        )
        console.print(where)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--sizes", default="10000,100000,1000000", help="Comma-separated subscriber counts."
    )
    parser.add_argument("--runs", type=int, default=3, help="Pipeline runs per size.")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--heap", default="6g", help="Neo4j heap for every size.")
    parser.add_argument("--pagecache", default="2g")
    parser.add_argument(
        "--latency-size",
        type=int,
        default=100_000,
        help="Size whose graph the live ring latency is measured on.",
    )
    parser.add_argument(
        "--latency-events",
        type=int,
        default=1000,
        help="Events per writer (with and without the tracker).",
    )
    parser.add_argument(
        "--latency-warm-up",
        type=int,
        default=WARM_UP,
        help="Events per writer run first and not counted: a few plan the statements; a few "
        "hundred also let the server's JIT settle, as in an ingest worker that has been running.",
    )
    parser.add_argument(
        "--latency-warm-up-rounds",
        type=int,
        default=WARM_UP_ROUNDS,
        help="Passes over every planned event before the committed warm-up, each event written "
        "and rolled back: warms the server's JIT as long-running ingest does, without using up "
        "the store's targets.",
    )
    parser.add_argument(
        "--work", type=Path, default=None, help="Keep simulated files here (reused by later runs)."
    )
    parser.add_argument("--large", type=int, default=1_000_000, help="Sizes from here are large.")
    parser.add_argument("--large-runs", type=int, default=1, help="Runs per variant when large.")
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="Seconds before a run is stopped."
    )
    parser.add_argument(
        "--gnn", action="store_true", help="Also time GNN training, batch and live scoring."
    )
    parser.add_argument("--gnn-samples", type=int, default=500, help="Live GNN scores timed.")
    parser.add_argument(
        "--gnn-kinds",
        type=lambda text: [kind for kind in text.split(",") if kind],
        default=["sage", "camouflage"],
        help="Model kinds trained, comma-separated (sage, camouflage, boosted); the best is "
        "promoted, batch- and live-scored.",
    )
    parser.add_argument(
        "--gnn-warm-up",
        type=int,
        default=8000,
        help="Live scores of other subscribers, uncounted, before the warm-server timing.",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="Keep each size's loaded store in --work and reuse it in later runs.",
    )
    parser.add_argument(
        "--load-only", action="store_true", help="Load (and with --keep, keep) without measuring."
    )
    parser.add_argument(
        "--no-baseline", action="store_true", help="Skip the all-pairs similarity baseline."
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    # The GDS client's driver reports "property does not exist" on a never-analysed graph.
    logging.getLogger("neo4j.notifications").setLevel(logging.ERROR)
    load_before = os.getloadavg()

    work = args.work or Path(tempfile.mkdtemp(prefix="ringwatch-bench-analytics-"))
    work.mkdir(parents=True, exist_ok=True)
    scoring = ScoringConfig()
    results: dict[int, dict[str, Any]] = {}
    try:
        for size in sizes:
            results[size] = bench_size(work, size, args, scoring)
            # A crash in a later size keeps what earlier sizes measured.
            (work / "partial-results.json").write_text(json.dumps(results, indent=2) + "\n")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    path = save(
        "analytics",
        {
            "runs": args.runs,
            "seed": args.seed,
            # Other work on the machine: the 1-minute load average before and after.
            "load_average": {"before": load_before[0], "after": os.getloadavg()[0]},
            "results": {str(k): v for k, v in results.items()},
        },
    )
    hw = hardware()
    console.print(f"\nhardware: {hw['cpu']}, {hw['cores']} cores, {hw['memory']}")
    _print(results)
    console.print(f"saved {path}")


if __name__ == "__main__":
    main()
