"""`stack up` time (cold and warm) and idle memory of each server.

cold: a brand-new stack home: jars copied from the local Maven repository (~/.m2, already
      downloaded once), an empty Neo4j store created, Kafka storage formatted.
warm: the same home started again after `down`: jars, store and Kafka metadata reused.
Idle memory: resident set size of each server after `--idle` seconds without load.

Run: .venv/bin/python bench/stack_startup.py [--runs 3] [--idle 20]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from bench.common import hardware, median, rss_mib, save, stack_on_free_ports
from ringwatch.stack import manager


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--idle", type=float, default=20.0)
    args = parser.parse_args()

    cold: list[float] = []
    warm: list[float] = []
    memory: dict[str, list[float]] = {"neo4j": [], "kafka": []}
    for run in range(args.runs):
        home = Path(tempfile.mkdtemp(prefix="ringwatch-bench-"))
        config = stack_on_free_ports(home)
        try:
            started = time.perf_counter()
            manager.up(config)
            cold.append(time.perf_counter() - started)
            time.sleep(args.idle)
            for status in manager.status(config):
                if status.pid is not None:
                    memory[status.name].append(rss_mib(status.pid))
            manager.down(config)
            started = time.perf_counter()
            manager.up(config)
            warm.append(time.perf_counter() - started)
            manager.down(config)
        finally:
            manager.down(config)
            shutil.rmtree(home, ignore_errors=True)
        print(f"run {run + 1}: cold {cold[-1]:.1f}s, warm {warm[-1]:.1f}s", flush=True)

    result = {
        "runs": args.runs,
        "cold_up_s": {"median": median(cold), "all": cold},
        "warm_up_s": {"median": median(warm), "all": warm},
        "idle_rss_mib": {k: {"median": median(v), "all": v} for k, v in memory.items() if v},
        "idle_after_s": args.idle,
    }
    path = save("stack_startup", result)
    hw = hardware()
    print(f"\nhardware: {hw['cpu']}, {hw['cores']} cores, {hw['memory']}")
    print("| measure | median | runs |\n|---|---|---|")
    print(f"| cold `stack up` | {median(cold):.1f} s | {', '.join(f'{c:.1f}' for c in cold)} |")
    print(f"| warm `stack up` | {median(warm):.1f} s | {', '.join(f'{w:.1f}' for w in warm)} |")
    for name, values in memory.items():
        if values:
            runs = ", ".join(f"{v:.0f}" for v in values)
            print(f"| idle RSS {name} | {median(values):.0f} MiB | {runs} |")
    print(f"\nsaved {path}")


if __name__ == "__main__":
    main()
