"""The offline import builds exactly the graph the online writer builds, into an empty store.

It stops and starts Neo4j, so it runs on a throwaway stack of its own, never the shared one.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ringwatch.config import Neo4jConfig, StackConfig
from ringwatch.graph.db import Neo4jRunner, create_driver
from ringwatch.graph.schema import migrate
from ringwatch.graph.writer import GraphWriter
from ringwatch.ingest.exceptions import IngestError
from ringwatch.ingest.offline_import import offline_import
from ringwatch.ingest.prepare import Preparer
from ringwatch.stack import manager
from tests.cli_helpers import free_port
from tests.factories import identity, prepared, transaction
from tests.integration.test_writer import _snapshot

CARD = "4111 1111 1111 1111"
EVENTS = [
    identity("e1", "s1", emails=["John.Doe+x@Gmail.com"], devices=["490154203237518"],
             addresses=["12 Main Street"], payment_methods=[CARD]),
    identity("e2", "s2", hours=1, emails=["johndoe@googlemail.com"],
             addresses=["12 main st."], ips=["10.0.0.1"]),
    identity("e3", "s3", hours=2, devices=["490154203237518"], payment_methods=[CARD]),
    identity("e4", "s1", type="subscriber.closed", hours=5),
    identity("e5", "s2", type="device.seen", hours=3, devices=["356938035643809"]),
    identity("e6", "s4", hours=4, devices=["000000000000000"]),  # a placeholder: a hub at once
    identity("e1", "s1", emails=["John.Doe+x@Gmail.com"]),  # a redelivered event id
]  # fmt: skip
# Every kind of transaction and counterparty, devices and IPs (one seen only here), two days,
# night and very short calls, an unknown subscriber, a subscriber counterparty never registered.
TRANSACTIONS = [
    transaction("t1", "s1", amount=12.5, device="490154203237518", ip="10.0.0.1"),
    transaction("t2", "s1", type="call", hours=13, duration_s=4.0, ip="10.0.0.9"),
    transaction("t3", "s1", type="call", hours=14, duration_s=300.0),  # 02:00 next day: night
    transaction("t4", "s2", type="sms", hours=1),
    transaction("t5", "s2", type="data_usage", hours=2, amount=0.75, device="356938035643809"),
    transaction("t6", "s2", type="topup", hours=3, amount=20.0),
    transaction("t7", "s3", type="transfer", hours=4, amount=50.0,
                counterparty={"kind": "subscriber", "id": "s1"}),
    transaction("t8", "s3", type="transfer", hours=5, amount=5.0,
                counterparty={"kind": "subscriber", "id": "s-outside"}),
    transaction("t9", "s-new", type="sms", hours=6,
                counterparty={"kind": "number", "id": "+1 (201) 555-0199"}),
    transaction("t1", "s1", amount=12.5),  # a redelivered transaction
]  # fmt: skip


@pytest.fixture
def throwaway_stack(tmp_path: Path) -> Iterator[StackConfig]:
    config = StackConfig(
        home=tmp_path / "stack",
        jar_cache=StackConfig().lib_root,
        neo4j_bolt_port=free_port(),
        neo4j_http_port=free_port(),
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        start_timeout_s=180,
    )
    manager.up(config)
    yield config
    manager.down(config)
    shutil.rmtree(tmp_path / "stack", ignore_errors=True)


def test_offline_import_equals_the_online_load(
    graph: Neo4jRunner, throwaway_stack: StackConfig, tmp_path: Path
) -> None:
    migrate(graph)
    writer = GraphWriter(graph, hub_cap=50)
    writer.write(prepared(*EVENTS))
    writer.write(prepared(*TRANSACTIONS[:4]))
    writer.write(prepared(*TRANSACTIONS[4:]))
    online = _snapshot(graph)
    assert {"Transaction", "UsageBucket", "Merchant"} <= {n["label"] for n in online["nodes"]}

    data = tmp_path / "identity.jsonl"
    lines = [json.dumps(event) for event in EVENTS]
    lines.insert(2, "{broken json")
    data.write_text("\n".join(lines) + "\n")
    usage = tmp_path / "transactions.jsonl"
    lines = [json.dumps(t) for t in TRANSACTIONS]
    lines.insert(1, json.dumps({**TRANSACTIONS[0], "transaction_id": "t0", "amount": -1}))
    usage.write_text("\n".join(lines) + "\n")
    rejects = tmp_path / "rejects.jsonl"
    summary = offline_import(
        [data],
        transaction_paths=[usage],
        stack=throwaway_stack,
        preparer=Preparer(),
        hub_cap=50,
        work_dir=tmp_path / "work",
        rejects_path=rejects,
    )
    assert (summary.events, summary.transactions, summary.duplicates) == (15, 9, 2)
    assert summary.rejected == 2
    rejected = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [(Path(r["file"]).name, r["line"]) for r in rejected] == [
        ("identity.jsonl", 3),
        ("transactions.jsonl", 2),
    ]
    with create_driver(Neo4jConfig(uri=throwaway_stack.neo4j_bolt_uri)) as driver:
        offline_graph = Neo4jRunner(driver)
        assert _snapshot(offline_graph) == online
        constraints = offline_graph.read("SHOW CONSTRAINTS YIELD name RETURN count(*) AS n")
        assert constraints[0]["n"] >= 10  # the schema was applied after the import

        # A second import would overwrite what is there: refused.
        with pytest.raises(IngestError, match="empty database"):
            offline_import(
                [data],
                stack=throwaway_stack,
                preparer=Preparer(),
                hub_cap=50,
                work_dir=tmp_path / "work2",
                rejects_path=rejects,
            )
