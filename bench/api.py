"""API latency and throughput under concurrent load, on a private stack and a real HTTP server.

Loads a simulated population, analyses it (rings, scores), creates a key, starts
`ringwatch serve` as its own process, then offers each endpoint a fixed request rate (open loop:
requests are sent on schedule whether or not earlier ones have answered, so queueing shows in
the latency) for a fixed time, `--runs` times. Reports the median over runs of p50, p99 and the
achieved throughput, per endpoint and rate, of all requests and of the answered (2xx) ones,
with the requests the server shed (503 `overloaded`, see `RINGWATCH_API__MAX_IN_FLIGHT`), and
a `RETURN 1` baseline measured in the same run (the cost of one Bolt round trip on this
machine under the same load).

    python -m bench.api --subscribers 2000 --rates 100,500 --seconds 10 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import hardware, median, save, stack_on_free_ports
from ringwatch.config import KafkaConfig, Neo4jConfig, Settings
from ringwatch.graph.analyze import analyze
from ringwatch.graph.api_keys import Scope, create_key
from ringwatch.graph.db import Neo4jRunner, create_driver, create_gds
from ringwatch.graph.schema import migrate
from ringwatch.graph.writer import GraphWriter
from ringwatch.ingest.prepare import Preparer
from ringwatch.ingest.simulate import SimulationConfig, simulate
from ringwatch.stack import manager


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def _offer(
    client: httpx.AsyncClient, make: Any, rate: float, seconds: float
) -> dict[str, float]:
    latencies: list[float] = []  # of every request, answered or not
    answered: list[float] = []  # of the 2xx answers
    errors = 0
    shed = 0  # 503 "overloaded": refused at once by the server's load shedding
    started = time.perf_counter()
    tasks: list[asyncio.Task[None]] = []

    async def one() -> None:
        nonlocal errors, shed
        method, path, body = make()
        sent = time.perf_counter()
        ok = False
        try:
            response = await client.request(method, path, json=body)
            ok = response.status_code < 400
            if response.status_code == 503 and b"overloaded" in response.content:
                shed += 1
            elif not ok:
                errors += 1
        except httpx.HTTPError:
            errors += 1
        took = (time.perf_counter() - sent) * 1000
        latencies.append(took)
        if ok:
            answered.append(took)

    total = int(rate * seconds)
    for index in range(total):
        due = started + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    return {
        "p50_ms": _percentile(latencies, 0.50),
        "p99_ms": _percentile(latencies, 0.99),
        "answered_p50_ms": _percentile(answered, 0.50),
        "answered_p99_ms": _percentile(answered, 0.99),
        "throughput_rps": len(latencies) / elapsed,
        "answered_rps": len(answered) / elapsed,
        "shed": float(shed),
        "errors": float(errors),
        "requests": float(len(latencies)),
    }


def _bolt_baseline(runner: Neo4jRunner, count: int = 500) -> dict[str, float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        runner.read("RETURN 1 AS one")
        samples.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": _percentile(samples, 0.5), "p99_ms": _percentile(samples, 0.99)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=2000)
    parser.add_argument("--rates", default="100,500")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=None,
        help="The server's RINGWATCH_API__MAX_IN_FLIGHT (default: the product's); a large "
        "value turns load shedding off.",
    )
    parser.add_argument("--work", type=Path, default=Path.home() / ".ringwatch" / "bench-api")
    args = parser.parse_args()
    rates = [float(rate) for rate in args.rates.split(",")]

    shutil.rmtree(args.work, ignore_errors=True)
    stack = stack_on_free_ports(args.work / "stack")
    manager.up(stack)
    settings = Settings(
        neo4j=Neo4jConfig(uri=stack.neo4j_bolt_uri),
        kafka=KafkaConfig(bootstrap_servers=stack.kafka_bootstrap),
        stack=stack,
    )
    server: subprocess.Popen[bytes] | None = None
    try:
        with create_driver(settings.neo4j) as driver:
            runner = Neo4jRunner(driver)
            migrate(runner)
            population = simulate(SimulationConfig(subscribers=args.subscribers, months=1, seed=3))
            writer = GraphWriter(runner, hub_cap=settings.scoring.hub_cap)
            preparer = Preparer()
            for family in (population.identity, population.labels, population.transactions):
                for start in range(0, len(family), 2000):
                    writer.write([preparer.prepare(e) for e in family[start : start + 2000]])
            gds = create_gds(settings.neo4j)
            analyze(driver, gds, settings, publish=False, lookback_days=30)
            gds.close()
            key, _ = create_key(runner, "bench", {Scope.READ},
                                settings.api.api_key_pepper.get_secret_value())  # fmt: skip
            subscribers = [row["id"] for row in runner.read(
                "MATCH (s:Subscriber) RETURN s.id AS id ORDER BY s.id")]  # fmt: skip
            rings = [row["id"] for row in runner.read(
                "MATCH (r:Ring {status: 'active'}) RETURN r.id AS id")]  # fmt: skip
            emails = [row["id"] for row in runner.read(
                "MATCH (e:Email) RETURN e.id AS id LIMIT 2000")]  # fmt: skip
            baseline = _bolt_baseline(runner)

        port = stack.neo4j_http_port + 1000
        env = {
            **os.environ,
            "RINGWATCH_NEO4J__URI": settings.neo4j.uri,
            "RINGWATCH_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
            "RINGWATCH_LOG_LEVEL": "WARNING",
        }
        if args.max_in_flight is not None:
            env["RINGWATCH_API__MAX_IN_FLIGHT"] = str(args.max_in_flight)
        server = subprocess.Popen(
            [sys.executable, "-m", "ringwatch", "serve", "--port", str(port)], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the API did not start")
            time.sleep(0.3)

        rng = random.Random(1)
        endpoints: dict[str, Any] = {
            "profile": lambda: ("GET", f"/v1/subscribers/{rng.choice(subscribers)}", None),
            "network": lambda: ("GET", f"/v1/subscribers/{rng.choice(subscribers)}/network", None),
            "ring": lambda: ("GET", f"/v1/rings/{rng.choice(rings)}", None),
            "score_signup": lambda: ("POST", "/v1/score/signup", {"emails": [rng.choice(emails)]}),
            "score_transaction": lambda: (
                "POST",
                "/v1/score/transaction",
                {
                    "subscriber_id": rng.choice(subscribers),
                    "kind": "payment",
                    "amount": round(rng.uniform(1, 300), 2),
                    "currency": "USD",
                    "ts": "2024-01-30T12:00:00Z",
                },
            ),
        }
        results: dict[str, dict[str, Any]] = {}

        async def run_all() -> None:
            limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
            async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": key},
                                         limits=limits, timeout=30) as client:  # fmt: skip
                for name, make in endpoints.items():
                    for _ in range(20):  # warm-up
                        method, path, body = make()
                        await client.request(method, path, json=body)
                    for rate in rates:
                        runs = [await _offer(client, make, rate, args.seconds)
                                for _ in range(args.runs)]  # fmt: skip
                        summary = {k: median([r[k] for r in runs]) for k in runs[0]}
                        results[f"{name}@{rate:.0f}"] = summary
                        print(f"{name:18} {rate:5.0f}/s  p50 {summary['p50_ms']:7.1f} ms  "
                              f"p99 {summary['p99_ms']:7.1f} ms  "
                              f"{summary['throughput_rps']:6.1f}/s  answered: "
                              f"{summary['answered_rps']:6.1f}/s p50 "
                              f"{summary['answered_p50_ms']:7.1f} ms p99 "
                              f"{summary['answered_p99_ms']:7.1f} ms  shed "
                              f"{summary['shed']:.0f}  errors {summary['errors']:.0f}")  # fmt: skip

        asyncio.run(run_all())
        print(f"baseline RETURN 1 over Bolt: p50 {baseline['p50_ms']:.2f} ms, "
              f"p99 {baseline['p99_ms']:.2f} ms")  # fmt: skip
        path = save(
            "api",
            {
                "command": " ".join(["python -m bench.api", *sys.argv[1:]]),
                "subscribers": args.subscribers,
                "max_in_flight": args.max_in_flight,
                "seconds": args.seconds,
                "runs": args.runs,
                "results": results,
                "bolt_baseline": baseline,
                "load_average": os.getloadavg(),
                "hardware_note": hardware(),
            },
        )
        print(f"saved {path}")
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
        manager.down(stack)


if __name__ == "__main__":
    main()
