"""Event-to-alert latency: from a triggering event's producer timestamp to its alert on the topic.

Each run starts from an empty database, with fresh topics, on a stack of its own (started here
on free ports). One ``ringwatch ingest run`` worker process runs with the default settings (live
rings and live alerts on; each batch what has arrived, up to 2,000 events). The benchmark:

1. produces background transactions at a steady rate (data sessions, calls, texts and small
   payments of 20,000 ordinary subscribers; none of them breaks a rule) for the whole run;
2. warms up, not measured: once the worker stores events, one trigger of each kind (so every
   statement is compiled and every producer has its id before the clock starts), then waits
   until the worker has caught up with the background (stored within a second's worth of
   events) and lets five more seconds pass;
3. interleaves marked triggers, one every ``--trigger-every`` seconds, in turn:
   - *ring*: three new accounts registered back to back on one handset (a ring of new accounts
     sharing a device is P1); timed from the last of the three;
   - *charge*: one $600 payment by a new subscriber (the daily limit is $500);
   - *burst*: 20 texts by a new subscriber sent back to back (the burst threshold is 20 an
     hour); timed from the 20th;
4. reads the alerts topic throughout, in a consumer of its own. A trigger's latency is from the
   Kafka timestamp of its event (set by the producer when the event is produced) to the moment
   its alert is read from the alerts topic, so it includes the producer's linger, the worker's
   batching, the graph write, the live check, the outbox and the consumer's fetch. The part up
   to the alert's ``created_at`` (stored by the worker) is reported beside it.

Every trigger must give exactly one alert; missing and extra alerts are counted. Each run
reports p50 and p99 over its triggers; the summary gives the median of the runs and the p99
of all runs' triggers pooled. The load average is recorded before and after each run: the
figures mean little on a machine that other work keeps busy.

Run: .venv/bin/python -m bench.alert_latency [--rates 200 500] [--runs 3] [--duration 30]
     [--trigger-every 0.5] [--lingers 0 0.5]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer

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
from ringwatch.ingest.normalize import luhn_check_digit
from ringwatch.ingest.run import prepare_topics
from ringwatch.stack import manager

BACKGROUND_SUBSCRIBERS = 20_000
BURST_SIZE = 20
KINDS = ("ring", "charge", "burst")


def _worker_env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "RINGWATCH_NEO4J__URI": settings.neo4j.uri,
        **settings.kafka.environment(),
        "RINGWATCH_INGEST__BATCH_LINGER_S": str(settings.ingest.batch_linger_s),
        "RINGWATCH_INGEST__WORKERS": "1",
        "RINGWATCH_LOG_LEVEL": "WARNING",
    }


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


class Events:
    """Producer of events with known timestamps; payloads follow the event models."""

    def __init__(self, settings: Settings, run: str) -> None:
        kafka = settings.kafka
        self.identity_topic = kafka.topic_identity
        self.transaction_topic = kafka.topic_transactions
        # The product's event producer settings (`EventProducer`): idempotent, 20 ms linger.
        self.producer = Producer(
            {
                **kafka.librdkafka(),
                "enable.idempotence": True,
                "linger.ms": 20,
                "compression.type": "lz4",
            }
        )
        self.run = run
        self.sequence = 0
        self.random = random.Random(7)

    def _send(self, topic: str, payload: dict[str, Any]) -> int:
        """Produce one event; returns its Kafka timestamp (ms)."""
        stamp = int(time.time() * 1000)
        while True:
            try:
                self.producer.produce(
                    topic,
                    value=json.dumps(payload).encode(),
                    key=payload["subscriber_id"].encode(),
                    timestamp=stamp,
                )
                break
            except BufferError:
                self.producer.poll(0.05)
        self.producer.poll(0)
        return stamp

    def _transaction(self, sid: str, kind: str, **fields: Any) -> dict[str, Any]:
        self.sequence += 1
        tid = f"{self.run}-t{self.sequence}"
        return {
            "event_id": f"evt-{tid}",
            "schema_version": 1,
            "type": kind,
            "occurred_at": _now_iso(),
            "subscriber_id": sid,
            "transaction_id": tid,
            **fields,
        }

    def background(self) -> None:
        sid = f"bg-{self.random.randrange(BACKGROUND_SUBSCRIBERS)}"
        number = {"kind": "number", "id": f"+1201555{self.random.randrange(100, 200):04d}"}
        pick = self.random.random()
        if pick < 0.4:
            payload = self._transaction(
                sid,
                "data_usage",
                data_mb=round(self.random.uniform(1, 200), 1),
                amount=0.25,
                currency="USD",
            )
        elif pick < 0.7:
            payload = self._transaction(
                sid,
                "call",
                duration_s=float(self.random.randrange(15, 600)),
                counterparty=number,
            )
        elif pick < 0.9:
            payload = self._transaction(sid, "sms", counterparty=number)
        else:
            payload = self._transaction(
                sid,
                "payment",
                amount=round(self.random.uniform(2, 30), 2),
                currency="USD",
                counterparty={"kind": "merchant", "id": f"m-{self.random.randrange(200)}"},
            )
        self._send(self.transaction_topic, payload)

    def ring(self, n: int) -> int:
        body = f"35{abs(hash(self.run)) % 10**4:04d}{n:08d}"
        device = body + luhn_check_digit(body)
        stamps = []
        for member in range(3):
            sid = f"{self.run}-ring{n}-{member}"
            payload = {
                "event_id": f"reg-{sid}",
                "schema_version": 1,
                "type": "subscriber.registered",
                "occurred_at": _now_iso(),
                "subscriber_id": sid,
                "identifiers": {"devices": [device], "emails": [f"{sid}@example.com"]},
            }
            stamps.append(self._send(self.identity_topic, payload))
        return max(stamps)

    def charge(self, n: int) -> int:
        sid = f"{self.run}-charge{n}"
        payload = self._transaction(
            sid,
            "payment",
            amount=600.0,
            currency="USD",
            counterparty={"kind": "merchant", "id": "m-electronics"},
        )
        return self._send(self.transaction_topic, payload)

    def burst(self, n: int) -> int:
        sid = f"{self.run}-burst{n}"
        stamp = 0
        for _ in range(BURST_SIZE):
            payload = self._transaction(
                sid, "sms", counterparty={"kind": "number", "id": "+12015550150"}
            )
            stamp = self._send(self.transaction_topic, payload)
        return stamp

    def flush(self) -> None:
        self.producer.flush(30)


@dataclass
class Received:
    at_ms: float
    raised_ms: float  # the alert's created_at: when the worker stored it
    entity_kind: str
    entity_id: str
    kind: str


@dataclass
class AlertReader:
    """Reads the alerts topic in a thread of its own, noting when each alert was read."""

    settings: Settings
    received: list[Received] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    ready: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        consumer = Consumer(
            {
                **self.settings.kafka.librdkafka(),
                "group.id": f"{self.settings.kafka.consumer_group}-alerts",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 10,
            }
        )
        consumer.subscribe(
            [self.settings.kafka.topic_alerts], on_assign=lambda *_: self.ready.set()
        )
        try:
            while not self.stop.is_set():
                message = consumer.poll(0.05)
                if message is None or message.error() is not None:
                    continue
                at_ms = time.time() * 1000
                value = message.value()
                if value is None:
                    continue
                body = json.loads(value)
                raised_ms = datetime.fromisoformat(body["created_at"]).timestamp() * 1000
                self.received.append(
                    Received(at_ms, raised_ms, body["entity_kind"], body["entity_id"], body["kind"])
                )
        finally:
            consumer.close()


def _stored_transactions(settings: Settings) -> int:
    with create_driver(settings.neo4j) as driver:
        records = driver.execute_query("MATCH (t:Transaction) RETURN count(t) AS n").records
    return int(records[0]["n"])


def _ring_members(settings: Settings, ring_ids: list[str]) -> dict[str, list[str]]:
    if not ring_ids:
        return {}
    with create_driver(settings.neo4j) as driver:
        records = driver.execute_query(
            "UNWIND $ids AS rid MATCH (s:Subscriber)-[:MEMBER_OF]->(:Ring {id: rid}) "
            "RETURN rid, collect(s.id) AS members",
            {"ids": ring_ids},
        ).records
    return {record["rid"]: list(record["members"]) for record in records}


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))
    return ordered[index]


def one_run(
    base: Settings, bolt: str, kafka: str, rate: float, duration_s: float, every_s: float
) -> dict[str, Any]:
    settings = scoped_settings(base, bolt, kafka)
    empty_database(settings)
    prepare_topics(settings)
    run = uuid.uuid4().hex[:6]
    events = Events(settings, run)
    reader = AlertReader(settings)
    reading = threading.Thread(target=reader.run, daemon=True)
    reading.start()
    worker = subprocess.Popen(
        [sys.executable, "-m", "ringwatch", "ingest", "run"], env=_worker_env(settings)
    )
    # (entity kind, entity id) -> (alert kind, stamp ms); rings: member id prefix -> stamp.
    triggers: dict[tuple[str, str], tuple[str, int]] = {}
    ring_triggers: dict[str, int] = {}
    warm: dict[tuple[str, str], tuple[str, int]] = {}  # the warm-up's, not measured
    warm_rings: dict[str, int] = {}
    load_before = os.getloadavg()
    try:
        reader.ready.wait(60)
        interval = 1.0 / rate
        start = time.perf_counter()
        sent = 0

        def pace(until: float) -> None:
            nonlocal sent
            while time.perf_counter() - start < until:
                due = int((time.perf_counter() - start) / interval)
                while sent < due:
                    events.background()
                    sent += 1
                time.sleep(0.002)

        def fire(n: int, *, measured: bool = True) -> None:
            kind = KINDS[n % len(KINDS)]
            if kind == "ring":
                stamp = events.ring(n)
                (ring_triggers if measured else warm_rings)[f"{run}-ring{n}-"] = stamp
            elif kind == "charge":
                stamp = events.charge(n)
                key = ("subscriber", f"{run}-charge{n}")
                (triggers if measured else warm)[key] = ("usage.daily_charge_limit", stamp)
            else:
                stamp = events.burst(n)
                key = ("subscriber", f"{run}-burst{n}")
                (triggers if measured else warm)[key] = ("usage.burst", stamp)

        def wait_until(condition: Callable[[], bool], what: str, at: float) -> float:
            """Keep the background going until `condition` holds; returns the new clock."""
            while not condition():
                at += 1.0
                pace(at)
                if at > 300:
                    raise SystemExit(f"{what}: not within 5 minutes")
            return at

        # Not measured: background until the worker stores, one trigger of each kind (their
        # statements compiled, the producers' ids acquired), until the worker has caught up
        # (stored within a second's worth of events), then a few seconds of steady state.
        clock = wait_until(lambda: _stored_transactions(settings) > 0, "first write", 0.0)
        for n in range(len(KINDS)):
            fire(1_000_000 + n, measured=False)
        clock = wait_until(lambda: len(reader.received) >= len(KINDS), "warm-up alerts", clock)
        clock = wait_until(
            lambda: _stored_transactions(settings) >= sent - rate, "catching up", clock
        )
        clock += 5.0
        pace(clock)
        warm_up_s = clock

        n = 0
        elapsed = clock
        while elapsed < clock + duration_s:
            elapsed += every_s
            pace(elapsed)
            fire(n)
            n += 1
        pace(elapsed + 1.0)
        events.flush()
        expected = len(triggers) + len(ring_triggers)
        deadline = time.monotonic() + 30
        while len(reader.received) < expected + len(KINDS) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2.0)  # anything extra arrives now
    finally:
        load_after = os.getloadavg()
        worker.send_signal(signal.SIGTERM)
        worker.wait(120)
        reader.stop.set()
        reading.join(30)

    members = _ring_members(
        settings, [r.entity_id for r in reader.received if r.entity_kind == "ring"]
    )
    latencies: dict[str, list[float]] = {kind: [] for kind in KINDS}
    raised: list[float] = []  # to the alert's created_at (stored by the worker)
    seen: dict[tuple[str, str, str], int] = {}
    extra = 0
    for alert in reader.received:
        key = (alert.entity_kind, alert.entity_id, alert.kind)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:
            extra += 1
            continue
        if alert.entity_kind == "ring":
            prefixes = {m.rsplit("-", 1)[0] + "-" for m in members.get(alert.entity_id, [])}
            stamp = next((ring_triggers[p] for p in prefixes if p in ring_triggers), None)
            if stamp is None:
                extra += int(not prefixes & set(warm_rings))
                continue
            latencies["ring"].append(alert.at_ms - stamp)
            raised.append(alert.raised_ms - stamp)
            continue
        found = triggers.get((alert.entity_kind, alert.entity_id))
        if found is None or found[0] != alert.kind:
            extra += int((alert.entity_kind, alert.entity_id) not in warm)
            continue
        kind = "charge" if found[0] == "usage.daily_charge_limit" else "burst"
        latencies[kind].append(alert.at_ms - found[1])
        raised.append(alert.raised_ms - found[1])
    every = [value for values in latencies.values() for value in values]
    return {
        "rate": rate,
        "triggers": expected,
        "alerts": len(every),
        "missing": expected - len(every),
        "extra": extra,
        "background_events": sent,
        "warm_up_s": warm_up_s,
        "p50_ms": _percentile(every, 0.5),
        "p99_ms": _percentile(every, 0.99),
        "max_ms": max(every, default=float("nan")),
        "to_raised_p50_ms": _percentile(raised, 0.5),
        "to_raised_p99_ms": _percentile(raised, 0.99),
        "by_kind": {
            kind: {"p50_ms": _percentile(v, 0.5), "p99_ms": _percentile(v, 0.99), "n": len(v)}
            for kind, v in latencies.items()
        },
        "latencies_ms": every,
        "load_before": load_before,
        "load_after": load_after,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rates", type=float, nargs="+", default=[200.0, 500.0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=30.0, help="Seconds of triggers.")
    parser.add_argument("--trigger-every", type=float, default=0.5)
    parser.add_argument(
        "--lingers",
        type=float,
        nargs="+",
        default=[0.0, 0.5],
        help="Worker batch lingers to compare (RINGWATCH_INGEST__BATCH_LINGER_S); 0 is the "
        "default, 0.5 s the baseline: wait for a full batch as long as the poll timeout.",
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ringwatch-bench-alerts-"))
    stack = stack_on_free_ports(work / "stack").model_copy(update={"jar_cache": None})
    results: dict[tuple[float, float], list[dict[str, Any]]] = {
        (linger, rate): [] for linger in args.lingers for rate in args.rates
    }
    try:
        manager.up(stack)
        for run, linger, rate in itertools.product(range(args.runs), args.lingers, args.rates):
            base = Settings()
            base = base.model_copy(
                update={"ingest": base.ingest.model_copy(update={"batch_linger_s": linger})}
            )
            result = one_run(
                base,
                stack.neo4j_bolt_uri,
                stack.kafka_bootstrap,
                rate,
                args.duration,
                args.trigger_every,
            )
            results[(linger, rate)].append(result)
            print(
                f"run {run + 1}, linger {linger:g} s, {rate:.0f} events/s: "
                f"p50 {result['p50_ms']:.0f} ms, "
                f"p99 {result['p99_ms']:.0f} ms, max {result['max_ms']:.0f} ms; "
                f"to the alert stored p50 {result['to_raised_p50_ms']:.0f} ms, "
                f"p99 {result['to_raised_p99_ms']:.0f} ms "
                f"({result['alerts']}/{result['triggers']} alerts, {result['extra']} extra; "
                f"load {result['load_before'][0]:.1f} -> {result['load_after'][0]:.1f})",
                flush=True,
            )
    finally:
        manager.down(stack)
        shutil.rmtree(work, ignore_errors=True)

    summary = {
        f"linger {linger:g} s, {rate:.0f} events/s": {
            "p50_ms": median([r["p50_ms"] for r in runs]),
            "p99_ms": median([r["p99_ms"] for r in runs]),
            "runs": [{k: v for k, v in r.items() if k != "latencies_ms"} for r in runs],
            "pooled_p99_ms": _percentile([x for r in runs for x in r["latencies_ms"]], 0.99),
        }
        for (linger, rate), runs in results.items()
    }
    path = save(
        "alert_latency",
        {"duration_s": args.duration, "trigger_every_s": args.trigger_every, "rates": summary},
    )
    hw = hardware()
    print(f"\nhardware: {hw['cpu']}, {hw['cores']} cores, {hw['memory']}")
    print(
        "| batch linger | background events/s | p50 | p99 | p99 of all triggers | "
        "up to the alert stored, "
        "p50 / p99 | runs (p50 / p99) | alerts | p99 < 1 s |\n|---|---|---|---|---|---|---|---|---|"
    )
    for (linger, rate), runs in results.items():
        p50 = median([r["p50_ms"] for r in runs])
        p99 = median([r["p99_ms"] for r in runs])
        pooled = summary[f"linger {linger:g} s, {rate:.0f} events/s"]["pooled_p99_ms"]
        stored = (
            f"{median([r['to_raised_p50_ms'] for r in runs]):.0f} / "
            f"{median([r['to_raised_p99_ms'] for r in runs]):.0f} ms"
        )
        each = ", ".join(f"{r['p50_ms']:.0f} / {r['p99_ms']:.0f}" for r in runs)
        got = sum(r["alerts"] for r in runs)
        wanted = sum(r["triggers"] for r in runs)
        extra = sum(r["extra"] for r in runs)
        print(
            f"| {linger:g} s | {rate:.0f} | {p50:.0f} ms | {p99:.0f} ms | {pooled:.0f} ms "
            f"| {stored} | {each} "
            f"| {got}/{wanted}, {extra} extra | {'yes' if p99 < 1000 else 'no'} |"
        )
    for (linger, rate), runs in results.items():
        for kind in KINDS:
            p50 = median([r["by_kind"][kind]["p50_ms"] for r in runs])
            p99 = median([r["by_kind"][kind]["p99_ms"] for r in runs])
            print(
                f"linger {linger:g} s, {rate:.0f} events/s, {kind}: "
                f"p50 {p50:.0f} ms, p99 {p99:.0f} ms"
            )
    print(f"saved {path}")


if __name__ == "__main__":
    main()
