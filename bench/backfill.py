"""Bulk backfill: identity records/s into an empty database, at 100k and 1M subscribers.

A record is one `subscriber.registered` event with its identifiers (phone, email, address,
device, card, IP) and the links they make; households share addresses and cards, offices
share IPs, as in the simulator. Each run loads a fresh database on a stack of its own.

Run: .venv/bin/python -m bench.backfill [--sizes 100000 1000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from bench.common import hardware, median, save, stack_on_free_ports
from ringwatch.config import Neo4jConfig, Settings
from ringwatch.graph.db import Neo4jRunner, create_driver
from ringwatch.graph.schema import migrate
from ringwatch.graph.writer import GraphWriter
from ringwatch.ingest.backfill import backfill
from ringwatch.ingest.normalize import luhn_check_digit
from ringwatch.ingest.offline_import import offline_import
from ringwatch.ingest.prepare import Preparer
from ringwatch.stack import manager


def write_identities(path: Path, subscribers: int) -> None:
    with path.open("w") as out:
        for i in range(subscribers):
            household = i // 3
            imei_body = f"35{i:012d}"
            card_body = f"4{household:014d}"
            record = {
                "event_id": f"reg-{i}",
                "schema_version": 1,
                "type": "subscriber.registered",
                "occurred_at": f"2026-01-{1 + i % 28:02d}T{i % 24:02d}:00:00Z",
                "subscriber_id": f"sub-{i:07d}",
                "identifiers": {
                    "phones": [f"+1201{200 + (i // 10_000) % 800:03d}{i % 10_000:04d}"],
                    "emails": [f"user{i}@example.com"],
                    "addresses": [f"{household} Main Street, Springfield"],
                    "devices": [imei_body + luhn_check_digit(imei_body)],
                    "payment_methods": [card_body + luhn_check_digit(card_body)],
                    "ips": [f"10.{(i // 65_536) % 256}.{(i // 256) % 256}.{i % 256}"],
                },
            }
            out.write(json.dumps(record) + "\n")


def _online(work: Path, data: Path, size: int, run: int, batch_size: int, writers: int) -> float:
    stack = stack_on_free_ports(work / f"stack-{size}-{run}").model_copy(
        update={"neo4j_heap": "3g", "neo4j_pagecache": "2g"}
    )
    manager.up(stack)
    try:
        settings = Settings(neo4j=Neo4jConfig(uri=stack.neo4j_bolt_uri))
        with create_driver(settings.neo4j) as driver:
            runner = Neo4jRunner(driver)
            migrate(runner)
            started = time.perf_counter()
            summary = backfill(
                "identity",
                [data],
                runner=runner,
                writer=GraphWriter(runner, hub_cap=settings.scoring.hub_cap),
                preparer=Preparer(),
                batch_size=batch_size,
                checkpoint_path=work / f"cp-{size}-{run}.json",
                rejects_path=work / f"rejects-{size}-{run}.jsonl",
                writers=writers,
            )
            elapsed = time.perf_counter() - started
    finally:
        manager.down(stack)
        shutil.rmtree(work / f"stack-{size}-{run}", ignore_errors=True)
    assert summary.rejected == 0, summary
    return size / elapsed


def _offline(work: Path, data: Path, size: int, run: int) -> float:
    """The offline import into an empty store, timed end to end (reading to restarted server)."""
    stack = stack_on_free_ports(work / f"offline-{size}-{run}").model_copy(
        update={"neo4j_heap": "3g", "neo4j_pagecache": "2g"}
    )
    manager.up(stack)
    try:
        summary = offline_import(
            [data],
            stack=stack,
            preparer=Preparer(),
            hub_cap=50,
            work_dir=work / f"offline-csv-{size}-{run}",
            rejects_path=work / f"offline-rejects-{size}-{run}.jsonl",
        )
    finally:
        manager.down(stack)
        shutil.rmtree(work / f"offline-{size}-{run}", ignore_errors=True)
        shutil.rmtree(work / f"offline-csv-{size}-{run}", ignore_errors=True)
    assert summary.rejected == 0 and summary.events == size, summary
    return size / summary.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--runs", type=int, default=3, help="Runs per size (1M: at most 1).")
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--writers", type=int, default=2)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ringwatch-bench-backfill-"))
    results: dict[str, dict[str, object]] = {}
    try:
        for size in args.sizes:
            data = work / f"identity-{size}.jsonl"
            write_identities(data, size)
            rates: list[float] = []
            offline_rates: list[float] = []
            for run in range(args.runs if size < 1_000_000 else 1):
                rates.append(_online(work, data, size, run, args.batch_size, args.writers))
                print(f"{size:,} subscribers, run {run + 1}: {rates[-1]:,.0f} records/s online")
                offline_rates.append(_offline(work, data, size, run))
                print(f"{size:,} subscribers, run {run + 1}: {offline_rates[-1]:,.0f} records/s "
                      "offline")  # fmt: skip
            results[f"{size} offline"] = {"median": median(offline_rates), "all": offline_rates}
            results[str(size)] = {"median": median(rates), "all": rates}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    path = save("backfill", {"records_per_s": results, "writers": args.writers,
                             "batch_size": args.batch_size})  # fmt: skip
    hw = hardware()
    print(f"\nhardware: {hw['cpu']}, {hw['cores']} cores, {hw['memory']}")
    print("| subscribers (mode) | median records/s | runs |\n|---|---|---|")
    for key, row in results.items():
        values = row["all"]
        assert isinstance(values, list)
        size, _, mode = key.partition(" ")
        label = f"{int(size):,} ({mode or 'online'})"
        runs = ", ".join(f"{v:,.0f}" for v in values)
        print(f"| {label} | {row['median']:,.0f} | {runs} |")
    print(f"saved {path}")


if __name__ == "__main__":
    main()
