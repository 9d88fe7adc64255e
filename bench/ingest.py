"""Kafka -> Neo4j ingest: sustained events/s with 1 and 2 workers, and event-to-graph latency.

Each run starts from an empty database on a stack of its own (started here on free ports):
1. throughput: a simulated population (identity + transaction + label events, the product's
   realistic mix) is published first, then N worker processes drain the backlog; the rate is
   events / time from the workers' start to the moment the last one went idle (minus the idle
   wait);
2. latency: one worker runs while events are published at a fixed rate below capacity; the
   latency of an event is the time from its Kafka timestamp to the commit of its Neo4j batch.

Run: .venv/bin/python -m bench.ingest [--subscribers 1000] [--months 1] [--runs 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.common import (
    empty_database,
    hardware,
    median,
    save,
    scoped_settings,
    stack_on_free_ports,
)
from ringwatch.config import Settings
from ringwatch.graph.db import create_driver
from ringwatch.ingest.publish import publish_files
from ringwatch.ingest.run import prepare_topics, run_worker
from ringwatch.ingest.simulate import SimulationConfig, simulate_to_directory
from ringwatch.stack import manager

IDLE_S = 3.0


def _env(settings: Settings, workers: int) -> dict[str, str]:
    import os

    return {
        **os.environ,
        "RINGWATCH_NEO4J__URI": settings.neo4j.uri,
        **settings.kafka.environment(),
        "RINGWATCH_INGEST__WORKERS": str(workers),
        "RINGWATCH_LOG_LEVEL": "WARNING",
    }


_STORED = (
    "CALL () { MATCH (e:IngestedEvent) RETURN count(e) AS a } "
    "CALL () { MATCH (t:Transaction) RETURN count(t) AS b } "
    "CALL () { MATCH (l:Label) RETURN count(l) AS c } "
    "RETURN a + b + c AS n"
)


def throughput(settings: Settings, files: list[Path], events: int, workers: int) -> float:
    """Events/s from the first stored event to the last, polled from Neo4j's count store."""
    empty_database(settings)
    prepare_topics(settings)
    publish_files(settings.kafka, files)
    process = subprocess.Popen(
        [sys.executable, "-m", "ringwatch", "ingest", "run", "--until-idle", str(IDLE_S)],
        env=_env(settings, workers),
    )
    first: float | None = None
    last = time.perf_counter()
    with create_driver(settings.neo4j) as driver:
        while process.poll() is None:
            stored = int(driver.execute_query(_STORED).records[0]["n"])
            now = time.perf_counter()
            if stored and first is None:
                first = now
            if stored >= events:
                last = now
                break
            time.sleep(0.2)
    process.wait(300)
    if process.returncode != 0 or first is None:
        raise SystemExit(f"ingest run failed (exit {process.returncode})")
    return events / (last - first)


def latency(settings: Settings, files: list[Path], rate: float) -> tuple[float, float, int]:
    empty_database(settings)
    prepare_topics(settings)
    stop = threading.Event()
    stats_box: list[object] = []
    worker = threading.Thread(
        target=lambda: stats_box.append(run_worker(settings, stop)), daemon=True
    )
    worker.start()
    time.sleep(5)  # joined the group and assigned before the clock starts
    publish_files(settings.kafka, files, rate=rate)
    time.sleep(5)
    stop.set()
    worker.join(120)
    stats = stats_box[0]
    samples = sorted(getattr(stats, "latencies_ms", []))
    p99 = samples[int(len(samples) * 0.99) - 1] if samples else float("nan")
    return statistics.median(samples), p99, len(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--months", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latency-rate", type=float, default=500.0)
    parser.add_argument("--latency-subscribers", type=int, default=200)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ringwatch-bench-ingest-"))
    stack = stack_on_free_ports(work / "stack").model_copy(
        update={"neo4j_heap": "2g", "neo4j_pagecache": "1g", "jar_cache": None}
    )
    try:
        manager.up(stack)
        base = Settings()
        data = work / "data"
        counts = simulate_to_directory(
            SimulationConfig(subscribers=args.subscribers, months=args.months), data
        )
        events = counts["identity"] + counts["transactions"] + counts["labels"]
        files = [data / f"{name}.jsonl" for name in ("identity", "transactions", "labels")]
        rates: dict[int, list[float]] = {1: [], 2: []}
        for run in range(args.runs):
            for workers in (1, 2):
                settings = scoped_settings(base, stack.neo4j_bolt_uri, stack.kafka_bootstrap)
                rate = throughput(settings, files, events, workers)
                rates[workers].append(rate)
                print(f"run {run + 1}, {workers} worker(s): {rate:,.0f} events/s", flush=True)

        small = work / "latency"
        simulate_to_directory(
            SimulationConfig(subscribers=args.latency_subscribers, months=1, seed=1), small
        )
        small_files = [small / f"{name}.jsonl" for name in ("identity", "transactions", "labels")]
        settings = scoped_settings(base, stack.neo4j_bolt_uri, stack.kafka_bootstrap)
        p50, p99, samples = latency(settings, small_files, args.latency_rate)
    finally:
        manager.down(stack)
        shutil.rmtree(work, ignore_errors=True)

    result = {
        "events": events,
        "subscribers": args.subscribers,
        "months": args.months,
        "events_per_s": {str(k): {"median": median(v), "all": v} for k, v in rates.items()},
        "latency_ms": {"p50": p50, "p99": p99, "samples": samples, "rate": args.latency_rate},
    }
    path = save("ingest", result)
    hw = hardware()
    print(f"\nhardware: {hw['cpu']}, {hw['cores']} cores, {hw['memory']}")
    print(f"{events:,} events ({args.subscribers} subscribers, {args.months} month(s))")
    print("| workers | median events/s | runs |\n|---|---|---|")
    for workers, values in rates.items():
        runs = ", ".join(f"{v:,.0f}" for v in values)
        print(f"| {workers} | {median(values):,.0f} | {runs} |")
    print(f"event-to-graph latency at {args.latency_rate:.0f} events/s: "
          f"p50 {p50:.0f} ms, p99 {p99:.0f} ms ({samples} events)")  # fmt: skip
    print(f"saved {path}")


if __name__ == "__main__":
    main()
