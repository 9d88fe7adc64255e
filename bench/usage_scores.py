"""Usage/velocity batch scoring: subscribers scored per second over a 90-day lookback.

A synthetic history is built as the offline importer's CSV files and imported into a fresh
store (the ingest pipeline is measured elsewhere, and writing tens of millions of transactions
online would take hours on two cores): per subscriber a device and an IP from long before, new
IPs and new handsets during the period, about three transactions a day (data sessions, calls,
texts, payments, located at home), and the day buckets the graph writer keeps for them. A few
subscribers carry what the rules look for: a bill-shock day, a burst of payments, three weeks
of SIM-box traffic. Then `score_all_usage` scores everyone over the whole period, as the quality
benchmark calls it. Neo4j's and this process's CPU time are reported beside the wall time, since
other work on a shared machine inflates the latter.

Run: .venv/bin/python -m bench.usage_scores [--subscribers 100000] [--days 90] [--runs 3]
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import hardware, median, save, stack_on_free_ports
from ringwatch.config import Neo4jConfig, ScoringConfig, StackConfig
from ringwatch.graph.db import Neo4jRunner, create_driver
from ringwatch.graph.schema import migrate
from ringwatch.graph.usage_scores import score_all_usage
from ringwatch.ingest.offline_import import _run_importer
from ringwatch.stack import manager
from ringwatch.stack.servers import Neo4jServer

START = datetime(2024, 1, 1, tzinfo=UTC)
_DAY_MS = 86_400_000
_START_MS = int(START.timestamp() * 1000)
_NIGHT_MS = 6 * 3_600_000


def _iso(ms: int) -> str:
    return (START + timedelta(milliseconds=ms - _START_MS)).isoformat()


class _Files:
    """The importer's CSV files, written as rows arrive."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.handles: list[Any] = []
        self.args: list[str] = []
        header = {
            ("nodes", "Subscriber"): ["id:ID(Subscriber)", "status", "created_at:datetime",
                                      "first_seen:datetime"],
            ("nodes", "Device"): ["id:ID(Device)", "first_seen:datetime", "subscribers:long",
                                  "hub:boolean"],
            ("nodes", "IP"): ["id:ID(IP)", "first_seen:datetime", "subscribers:long",
                              "hub:boolean"],
            ("nodes", "Phone"): ["id:ID(Phone)", "subscribers:long", "hub:boolean"],
            ("nodes", "Transaction"): ["id:ID(Transaction)", "ts:datetime", "kind",
                                       "amount:double", "data_mb:double", "duration_s:double",
                                       "direction", "lat:double", "lon:double", "country",
                                       "subscriber_id"],
            ("nodes", "UsageBucket"): ["id:ID(UsageBucket)", "subscriber_id", "grain",
                                       "start:datetime", "count:long", "spend:double",
                                       "topup:double", "data_mb:double", "calls:long",
                                       "short_calls:long", "night_calls:long", "call_s:double",
                                       "sms:long"],
            ("relationships", "USES_DEVICE"): [":START_ID(Subscriber)", ":END_ID(Device)",
                                               "first_seen:datetime", "last_seen:datetime",
                                               "count:long"],
            ("relationships", "USES_IP"): [":START_ID(Subscriber)", ":END_ID(IP)",
                                           "first_seen:datetime", "last_seen:datetime",
                                           "count:long"],
            ("relationships", "MADE"): [":START_ID(Subscriber)", ":END_ID(Transaction)"],
            ("relationships", "TO"): [":START_ID(Transaction)", ":END_ID(Phone)"],
            ("relationships", "ON_DEVICE"): [":START_ID(Transaction)", ":END_ID(Device)"],
            ("relationships", "HAS_USAGE"): [":START_ID(Subscriber)", ":END_ID(UsageBucket)"],
        }  # fmt: skip
        self.writers: dict[str, Any] = {}
        for (kind, name), columns in header.items():
            path = directory / f"{name}.csv"
            handle = path.open("w", newline="", encoding="utf-8")
            self.handles.append(handle)
            writer = csv.writer(handle)
            writer.writerow(columns)
            self.writers[name] = writer
            self.args.append(f"--{kind}={name}={path}")

    def close(self) -> None:
        for handle in self.handles:
            handle.close()


def _subscriber(
    rng: random.Random, index: int, days: int, numbers: list[str], files: _Files
) -> int:
    """Write one subscriber's identity, transactions and day buckets; returns transactions."""
    w = files.writers
    sid = f"sub-{index:07d}"
    created = _START_MS - rng.randint(30, 900) * _DAY_MS
    w["Subscriber"].writerow([sid, "active", _iso(created), _iso(created)])
    end = _START_MS + days * _DAY_MS
    devices = [(f"dev-{index}", created)]
    if rng.random() < 0.06:
        devices.append((f"dev-{index}-2", rng.randrange(_START_MS, end)))
    ips = [(f"ip-{index}", created)]
    ips += [(f"ip-{index}-{n}", rng.randrange(_START_MS, end)) for n in range(rng.randint(0, 2))]
    for name, links, rel in (("Device", devices, "USES_DEVICE"), ("IP", ips, "USES_IP")):
        for identifier, first in links:
            w[name].writerow([identifier, _iso(first), 1, "false"])
            w[rel].writerow([sid, identifier, _iso(first), _iso(first), 1])
    device = devices[0][0]
    home = (round(40.7 + rng.uniform(-1, 1), 4), round(-74.0 + rng.uniform(-1, 1), 4))
    contacts = rng.sample(numbers, 10)
    pattern = rng.random()
    special = rng.randrange(30, days)
    level = rng.lognormvariate(0, 0.5)
    made = 0
    for day in range(days):
        day_ms = _START_MS + day * _DAY_MS
        # (ts, kind, amount, data_mb, duration_s, counterparty, device)
        rows: list[tuple[Any, ...]] = []
        for _ in range(max(1, round(rng.expovariate(1 / 3) * level))):
            ts = day_ms + rng.randrange(_DAY_MS)
            roll = rng.random()
            if roll < 0.45:
                amount = round(rng.uniform(0.5, 8), 2)
                rows.append((ts, "data_usage", amount, rng.uniform(50, 400), None, None, device))
            elif roll < 0.8:
                duration = float(rng.randint(5, 600))
                rows.append((ts, "call", None, None, duration, rng.choice(contacts), None))
            elif roll < 0.97:
                rows.append((ts, "sms", None, None, None, rng.choice(contacts), None))
            else:
                amount = round(rng.lognormvariate(2.5, 0.9), 2)
                rows.append((ts, "payment", amount, None, None, None, device))
        if day == special and pattern < 0.005:  # bill shock: roaming data
            for _ in range(6):
                ts = day_ms + rng.randrange(_DAY_MS)
                rows.append((ts, "data_usage", 150.0, 900.0, None, None, device))
        elif day == special and pattern < 0.01:  # a burst of payments
            for minute in range(30):
                ts = day_ms + 36_000_000 + minute * 60_000
                rows.append((ts, "payment", 20.0, None, None, None, device))
        elif special - 20 <= day < special and pattern < 0.012:  # SIM box
            for _ in range(120):
                ts = day_ms + rng.randrange(_DAY_MS)
                duration = float(rng.randint(2, 20))
                rows.append((ts, "call", None, None, duration, rng.choice(numbers), None))
        rows.sort(key=lambda row: row[0])
        spend = data = call_s = 0.0
        calls = short = night = sms = 0
        for number, (ts, kind, amount, data_mb, duration, to, on) in enumerate(rows):
            tid = f"{sid}-{day}-{number}"
            spend += amount or 0.0
            data += data_mb or 0.0
            if kind == "call":
                calls += 1
                short += int(duration < 10)
                night += int(ts - day_ms < _NIGHT_MS)
                call_s += duration
            sms += int(kind == "sms")
            direction = "outgoing" if to is not None else ""
            w["Transaction"].writerow([tid, _iso(ts), kind, amount, data_mb, duration,
                                       direction, home[0], home[1], "US", sid])  # fmt: skip
            w["MADE"].writerow([sid, tid])
            if to is not None:
                w["TO"].writerow([tid, to])
            if on is not None:
                w["ON_DEVICE"].writerow([tid, on])
        made += len(rows)
        bucket = f"{sid}|day|{_iso(day_ms)}"
        w["UsageBucket"].writerow([bucket, sid, "day", _iso(day_ms), len(rows), spend, 0.0,
                                   data, calls, short, night, call_s, sms])  # fmt: skip
        w["HAS_USAGE"].writerow([sid, bucket])
    return made


def build(stack: StackConfig, work: Path, subscribers: int, days: int, seed: int = 0) -> int:
    """Import the synthetic history into the stack's (stopped, then restarted) Neo4j."""
    rng = random.Random(seed)
    numbers = [f"+1201{n}" for n in rng.sample(range(2_000_000, 10_000_000), 20_000)]
    directory = work / "csv"
    directory.mkdir()
    files = _Files(directory)
    for number in numbers:
        files.writers["Phone"].writerow([number, 0, "false"])
    transactions = sum(_subscriber(rng, i, days, numbers, files) for i in range(subscribers))
    files.close()
    server = Neo4jServer(stack)
    server.process.stop()
    try:
        _run_importer(server, files.args, work)
    finally:
        manager.up(stack)
    shutil.rmtree(directory)
    return transactions


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--heap", default="3g")
    parser.add_argument("--pagecache", default="4g")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ringwatch-bench-usage-"))
    stack = stack_on_free_ports(work / "stack").model_copy(
        update={"neo4j_heap": args.heap, "neo4j_pagecache": args.pagecache}
    )
    manager.up(stack)
    runs: list[dict[str, float]] = []
    try:
        began = time.perf_counter()
        transactions = build(stack, work, args.subscribers, args.days)
        with create_driver(Neo4jConfig(uri=stack.neo4j_bolt_uri)) as driver:
            runner = Neo4jRunner(driver)
            migrate(runner)
            runner.read("CALL db.awaitIndexes(7200)")
            print(f"built {args.subscribers:,} subscribers, {transactions:,} transactions in "
                  f"{time.perf_counter() - began:.0f} s")  # fmt: skip
            neo4j_pid = Neo4jServer(stack).process.pid()
            assert neo4j_pid is not None
            for run in range(args.runs):
                neo4j_cpu, own_cpu = _cpu_seconds(neo4j_pid), time.process_time()
                summary = score_all_usage(
                    runner,
                    ScoringConfig(),
                    lookback_days=args.days,
                    batch_size=args.batch_size,
                    workers=args.workers,
                )
                runs.append(
                    {
                        "seconds": summary.seconds,
                        "neo4j_cpu_s": _cpu_seconds(neo4j_pid) - neo4j_cpu,
                        "python_cpu_s": time.process_time() - own_cpu,
                        "raw_days": summary.raw_days,
                        "flagged": summary.flagged,
                    }
                )
                print(f"run {run + 1}: {summary.subscribers:,} subscribers in "
                      f"{summary.seconds:.1f} s ({summary.per_second:,.0f}/s; CPU: Neo4j "
                      f"{runs[-1]['neo4j_cpu_s']:.1f} s, Python {runs[-1]['python_cpu_s']:.1f} s),"
                      f" {summary.raw_days:,} raw days, flagged {summary.flagged:,}: "
                      f"{dict(summary.codes.most_common())}")  # fmt: skip
    finally:
        manager.down(stack)
        shutil.rmtree(work, ignore_errors=True)

    rates = [args.subscribers / run["seconds"] for run in runs]
    path = save(
        "usage_scores",
        {
            "subscribers": args.subscribers,
            "days": args.days,
            "transactions": transactions,
            "batch_size": args.batch_size,
            "workers": args.workers,
            "neo4j_heap": args.heap,
            "neo4j_pagecache": args.pagecache,
            "runs": runs,
            "subscribers_per_s": {"median": median(rates), "all": rates},
        },
    )
    hw = hardware()
    print(f"\nhardware: {hw['cpu']}, {hw['cores']} cores, {hw['memory']}")
    print(f"median {median([run['seconds'] for run in runs]):.1f} s, "
          f"{median(rates):,.0f} subscribers/s; saved {path}")  # fmt: skip


if __name__ == "__main__":
    main()
