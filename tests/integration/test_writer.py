"""The graph writer on the real server: exact, idempotent, hub-safe."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from ringwatch.graph.db import Neo4jRunner
from ringwatch.graph.schema import migrate
from ringwatch.graph.usage import Window, usage_windows
from ringwatch.graph.writer import GraphWriter
from tests.factories import T0, identity, label, prepared, transaction

CARD = "4111 1111 1111 1111"


def _snapshot(graph: Neo4jRunner) -> dict[str, Any]:
    """Everything a redelivery could change: node and relationship counts and all properties.

    Rings formed by live tracking are compared by membership only: their ids and lineage
    records depend on how events were batched, the members they end up with do not. Alerts the
    ingest worker raises live are left out (they are about rings, whose ids vary the same way);
    `test_live_alerts` checks them.
    """
    nodes = graph.read(
        "MATCH (n) WHERE NOT n:Ring AND NOT n:RingEvent AND NOT n:Sequence AND NOT n:Alert "
        "RETURN labels(n)[0] AS label, n.id AS id, n {.*, ring_id: null} AS props "
        "ORDER BY label, id"
    )
    rels = graph.read(
        "MATCH (a)-[r]->(b) WHERE NOT type(r) IN ['MEMBER_OF', 'OF'] AND NOT a:Alert "
        "RETURN a.id AS a, type(r) AS type, b.id AS b, properties(r) AS props "
        "ORDER BY a, type, b"
    )
    rings = graph.read(
        "MATCH (s:Subscriber)-[:MEMBER_OF]->(r:Ring) WITH r, s ORDER BY s.id "
        "WITH collect(s.id) AS members RETURN members ORDER BY members"
    )
    return {"nodes": nodes, "rels": rels, "rings": [row["members"] for row in rings]}


def _writer(graph: Neo4jRunner, hub_cap: int = 50) -> GraphWriter:
    migrate(graph)
    return GraphWriter(graph, hub_cap=hub_cap)


def test_identity_events_link_normalised_identifiers(graph: Neo4jRunner) -> None:
    writer = _writer(graph)
    result = writer.write(
        prepared(
            identity("e1", "s1", emails=["John.Doe+promo@Gmail.com"], devices=["490154203237518"]),
            identity("e2", "s2", emails=["johndoe@googlemail.com"], payment_methods=[CARD]),
            identity("e3", "s3", payment_methods=["4111-1111-1111-1111"], hours=1),
        )
    )
    assert (result.identity, result.duplicates) == (3, 0)
    shared_email = graph.read(
        "MATCH (s:Subscriber)-[:HAS_EMAIL]->(e:Email) RETURN e.id AS email, "
        "collect(s.id) AS subs, e.subscribers AS n"
    )
    assert shared_email == [{"email": "johndoe@gmail.com", "subs": ["s1", "s2"], "n": 2}]
    payment = graph.read(
        "MATCH (s:Subscriber)-[:PAYS_WITH]->(p:PaymentMethod) "
        "RETURN p.id AS id, collect(s.id) AS subs"
    )
    assert len(payment) == 1 and sorted(payment[0]["subs"]) == ["s2", "s3"]
    assert "4111" not in payment[0]["id"]  # a fingerprint, never the number


def test_redelivering_a_batch_changes_nothing(graph: Neo4jRunner) -> None:
    writer = _writer(graph)
    batch = prepared(
        identity("e1", "s1", devices=["490154203237518"], ips=["10.0.0.1"]),
        identity("e2", "s1", type="device.seen", hours=2, devices=["490154203237518"]),
        transaction("t1", "s1", type="payment", amount=120.0, device="490154203237518"),
        transaction("t2", "s1", type="call", hours=3),
        transaction("t3", "s1", type="data_usage", hours=3.5, amount=5.0),
        label("l1", "s1", "fraud", hours=4),
    )
    first = writer.write(batch)
    assert (first.identity, first.transactions, first.labels) == (2, 3, 1)
    before = _snapshot(graph)
    again = writer.write(batch)
    assert again.written == 0 and again.duplicates == len(batch)
    assert _snapshot(graph) == before
    device_link = graph.read(
        "MATCH (:Subscriber {id: 's1'})-[r:USES_DEVICE]->(:Device) RETURN r.count AS n"
    )
    # Two identity events and one transaction used the device.
    assert device_link == [{"n": 3}]


def test_duplicates_inside_one_batch_count_once(graph: Neo4jRunner) -> None:
    writer = _writer(graph)
    payment = transaction("t1", "s1", amount=50.0)
    result = writer.write(prepared(payment, payment, payment))
    assert (result.transactions, result.duplicates) == (1, 2)
    day = graph.read(
        "MATCH (b:UsageBucket {subscriber_id: 's1', grain: 'day'}) RETURN b.count AS n, "
        "b.spend AS spend"
    )
    assert day == [{"n": 1, "spend": 50.0}]


def test_usage_windows_are_exact_across_batches_and_redelivery(graph: Neo4jRunner) -> None:
    writer = _writer(graph)
    events = [
        transaction("p0", "s1", amount=70.0, hours=-30),  # yesterday: 7 d and 30 d only
        transaction("p1", "s1", amount=300.0, hours=0.1),
        transaction("p2", "s1", amount=250.0, hours=0.5),
        transaction("p3", "s1", amount=40.0, hours=1.2),
        transaction("u1", "s1", type="topup", amount=100.0, hours=1.3),
        transaction("c1", "s1", type="call", hours=1.4, duration_s=4.0),
        transaction("d1", "s1", type="data_usage", hours=1.5, amount=None, data_mb=512.0),
    ]
    # Split over batches, then everything delivered again: each transaction counts once.
    writer.write(prepared(*events[:3]))
    writer.write(prepared(*events[3:]))
    writer.write(prepared(*events))
    usage = usage_windows(graph, "s1", T0 + timedelta(hours=2))
    hour, day, week = usage.windows["1h"], usage.windows["24h"], usage.windows["7d"]
    assert (hour.count, hour.spend, hour.topup, hour.data_mb) == (4, 40.0, 100.0, 512.0)
    assert (hour.calls, hour.short_calls, hour.distinct_counterparties) == (1, 1, 2)
    assert (day.count, day.spend) == (6, 590.0)
    assert (week.count, week.spend) == (7, 660.0)
    assert [(d.day.day, d.count, d.spend) for d in usage.daily] == [(31, 1, 70.0), (1, 6, 590.0)]
    buckets = graph.read("MATCH (:Subscriber {id: 's1'})-[:HAS_USAGE]->(b) RETURN count(b) AS n")
    assert buckets == [{"n": 2}]


def test_usage_windows_count_night_calls_and_distinct_devices_ips_and_counterparties(
    graph: Neo4jRunner,
) -> None:
    writer = _writer(graph)
    phone_a, phone_b = "490154203237518", "356938035643809"
    writer.write(prepared(
        # 02:00 the same day: a night call, inside 24 h, outside 1 h.
        transaction("n1", "s1", type="call", hours=-10, duration_s=120.0, device=phone_a,
                    ip="198.51.100.7"),
        transaction("n2", "s1", type="sms", hours=-9, device=phone_a, ip="198.51.100.7",
                    counterparty={"kind": "number", "id": "+12015550999"}),
        transaction("d1", "s1", type="call", hours=1.5, duration_s=3.0, device=phone_b,
                    ip="203.0.113.9"),
        # Eight days before: 30 d only.
        transaction("o1", "s1", type="transfer", hours=-200, amount=75.0, device=phone_b,
                    counterparty={"kind": "subscriber", "id": "s9"}),
        # After the end of the windows: in none.
        transaction("f1", "s1", type="payment", hours=3, amount=999.0),
    ))  # fmt: skip
    windows = usage_windows(graph, "s1", T0 + timedelta(hours=2)).windows

    def shape(name: str) -> tuple[int, int, int, int, int, int, int, int]:
        w = windows[name]
        return (w.count, w.calls, w.short_calls, w.night_calls, w.sms, w.distinct_devices,
                w.distinct_ips, w.distinct_counterparties)  # fmt: skip

    assert shape("1h") == (1, 1, 1, 0, 0, 1, 1, 1)
    assert shape("24h") == (3, 2, 1, 1, 1, 2, 2, 2)
    assert shape("7d") == shape("24h")
    assert shape("30d") == (4, 2, 1, 1, 1, 2, 2, 3)
    assert windows["30d"].spend == 75.0 and windows["7d"].spend == 0.0
    # A subscriber with nothing in the windows gets all-zero windows, not missing ones.
    assert vars(usage_windows(graph, "nobody", T0).windows["30d"]) == vars(Window())


def test_status_and_label_follow_the_newest_event_in_any_arrival_order(
    graph: Neo4jRunner,
) -> None:
    writer = _writer(graph)
    closed = identity("e3", "s1", type="subscriber.closed", hours=10)
    registered = identity("e1", "s1", hours=0)
    writer.write(prepared(closed))
    writer.write(prepared(registered))
    writer.write(prepared(label("l2", "s1", "legitimate", hours=5)))
    writer.write(prepared(label("l1", "s1", "fraud", hours=1)))
    row = graph.read(
        "MATCH (s:Subscriber {id: 's1'}) RETURN s.status AS status, s.label AS label, "
        "toString(s.created_at) AS created, toString(s.closed_at) AS closed"
    )
    assert row == [
        {
            "status": "closed",
            "label": "legitimate",
            "created": "2026-11-01T12:00:00Z",
            "closed": "2026-11-01T22:00:00Z",
        }
    ]


def test_identifier_over_the_cap_becomes_a_hub_and_placeholders_start_as_hubs(
    graph: Neo4jRunner,
) -> None:
    writer = _writer(graph, hub_cap=5)
    writer.write(prepared(*(identity(f"e{i}", f"s{i}", ips=["100.64.0.1"]) for i in range(5))))
    assert graph.read("MATCH (i:IP) RETURN i.hub AS hub, i.subscribers AS n") == [
        {"hub": False, "n": 5}
    ]
    writer.write(prepared(identity("e5", "s5", ips=["100.64.0.1"])))
    assert graph.read("MATCH (i:IP) RETURN i.hub AS hub, i.subscribers AS n") == [
        {"hub": True, "n": 6}
    ]
    writer.write(prepared(identity("z1", "s9", devices=["000000000000000"])))
    assert graph.read("MATCH (d:Device) RETURN d.hub AS hub") == [{"hub": True}]


def test_thousands_sharing_one_identifier_from_parallel_writers(graph: Neo4jRunner) -> None:
    """A carrier-NAT IP shared by 4,000 subscribers, written by 4 concurrent writers."""
    writer = _writer(graph, hub_cap=50)
    batches = [
        prepared(
            *(
                identity(f"e{w}-{i}", f"s{w}-{i}", ips=["100.64.0.1"], devices=["356938035643809"])
                for i in range(b * 250, (b + 1) * 250)
            )
        )
        for w in range(4)
        for b in range(4)
    ]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(writer.write, batches))
    assert sum(r.identity for r in results) == 4000
    for label_name in ("IP", "Device"):
        rows = graph.read(
            "MATCH (i) WHERE $label IN labels(i) RETURN i.subscribers AS n, i.hub AS hub",
            {"label": label_name},
        )
        assert rows == [{"n": 4000, "hub": True}]
