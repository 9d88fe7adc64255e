"""Shared helpers for benchmarks: hardware description, medians, result files, stacks."""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from ringwatch.config import KafkaConfig, Neo4jConfig, Settings, StackConfig
from ringwatch.graph.db import create_driver

RESULTS = Path(__file__).parent / "results"


def hardware() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def median(values: list[float]) -> float:
    return statistics.median(values)


def save(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"hardware": hardware(), **payload}, indent=2) + "\n")
    return path


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stack_on_free_ports(home: Path) -> StackConfig:
    """A throwaway stack in `home`, on ports nobody else uses."""
    return StackConfig(
        home=home,
        neo4j_bolt_port=_free_port(),
        neo4j_http_port=_free_port(),
        kafka_port=_free_port(),
        kafka_controller_port=_free_port(),
    )


def scoped_settings(base: Settings, bolt: str, kafka: str) -> Settings:
    """`base` on these servers, with topics and a consumer group of this run's own."""
    run = uuid.uuid4().hex[:8]
    return base.model_copy(
        update={
            "neo4j": Neo4jConfig(uri=bolt),
            "kafka": KafkaConfig(bootstrap_servers=kafka).under_prefix(f"bench-{run}"),
        }
    )


def empty_database(settings: Settings) -> None:
    """Delete every node, in batches (a run starts from an empty graph)."""
    with create_driver(settings.neo4j) as driver, driver.session() as session:
        session.run(
            "MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 20000 ROWS"
        ).consume()
