"""The identity graph exported to a PyG `HeteroData` from the real Neo4j: shapes, edges, values."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

pytest.importorskip("torch_geometric", reason="the gnn extra is not installed")

from graphdatascience import GraphDataScience
from neo4j import Driver

from ringwatch.config import ScoringConfig
from ringwatch.graph import gnn_live
from ringwatch.graph.analytics import run_pipeline
from ringwatch.graph.db import Neo4jRunner
from ringwatch.graph.gnn_export import (
    IDENTIFIER_LABELS,
    SUBSCRIBER_FEATURES,
    SUBSCRIBER_FIELDS,
    ExportedGraph,
    GraphBuilder,
    export_graph,
)
from ringwatch.graph.rings import reconcile_rings
from ringwatch.graph.writer import GraphWriter
from ringwatch.ingest.normalize import IdentifierKind
from ringwatch.scoring import reasons as reason_codec
from ringwatch.scoring.reasons import Reason
from tests.factories import T0, identity, label, prepared

CONFIG = ScoringConfig()
DEVICE = "490154203237518"
HUB_IP = "100.64.0.1"


def register(writer: GraphWriter, subscriber: str, hours: float = 0.0,
             **identifiers: list[str]) -> None:  # fmt: skip
    event = identity(f"e-{subscriber}", subscriber, hours=hours)
    event["identifiers"] = identifiers
    writer.write(prepared(event))


@pytest.fixture
def known_graph(graph: Neo4jRunner, gds: GraphDataScience, driver: Driver) -> Neo4jRunner:
    """r1..r3 share an email and a device; r3 and q1 share an address (one ring of four);
    r1 also uses an ordinary IP; h1..h3 share only an IP that is a hub (cap 2). r1 is labelled
    fraud, q1 legitimate; r2 carries a stored usage reason."""
    writer = GraphWriter(graph, hub_cap=50)
    register(writer, "r1", emails=["ring@example.org"], devices=[DEVICE], ips=["198.51.100.7"])
    register(writer, "r2", hours=24, emails=["ring@example.org"], devices=[DEVICE])
    register(writer, "r3", emails=["ring@example.org"], devices=[DEVICE],
             addresses=["1 Main Street, Springfield"])  # fmt: skip
    register(writer, "q1", emails=["quiet@example.org"], addresses=["1 Main Street, Springfield"])
    small_cap = GraphWriter(graph, hub_cap=2)
    for name in ("h1", "h2", "h3"):
        register(small_cap, name, ips=[HUB_IP])
    writer.write(prepared(label("l-r1", "r1", "fraud"), label("l-q1", "q1", "legitimate")))
    run_pipeline(gds, driver, CONFIG)
    reconcile_rings(graph, min_ring_size=CONFIG.min_ring_size)
    reasons = [Reason("usage.daily_charge_limit", "charges $640 in 24 h", 0.45)]
    graph.write(
        "MATCH (s:Subscriber {id: 'r2'}) SET s.usage_risk = 0.45, s.usage_reasons = $reasons",
        {"reasons": reason_codec.dumps(reasons)},
    )
    return graph


def test_export_has_the_known_shapes_edges_labels_and_features(known_graph: Neo4jRunner) -> None:
    as_of = T0 + timedelta(days=10)
    exported = export_graph(known_graph, as_of=as_of, page=3)  # three pages of at most 3
    data = exported.data
    summary = exported.summary
    assert exported.subscriber_ids == ["h1", "h2", "h3", "q1", "r1", "r2", "r3"]
    assert summary.pages == 3 and summary.subscribers == 7
    assert data["Subscriber"].x.shape == (7, len(SUBSCRIBER_FEATURES))
    counts = {lb: int(data[lb].num_nodes) for lb in IDENTIFIER_LABELS}
    assert counts == {"Device": 1, "Address": 1, "PaymentMethod": 0, "Phone": 0, "Email": 2,
                      "IP": 2}  # fmt: skip
    edges = {rel: int(data[src, rel, dst].edge_index.size(1)) for src, rel, dst in data.edge_types}
    assert edges == {
        "USES_DEVICE": 3, "HAS_ADDRESS": 2, "PAYS_WITH": 0, "HAS_PHONE": 0, "HAS_EMAIL": 4,
        "USES_IP": 4, "rev_USES_DEVICE": 3, "rev_HAS_ADDRESS": 2, "rev_PAYS_WITH": 0,
        "rev_HAS_PHONE": 0, "rev_HAS_EMAIL": 4, "rev_USES_IP": 4,
    }  # fmt: skip
    assert summary.edges["HAS_EMAIL"] == 4 and summary.hubs == 1
    assert data["Subscriber"].y.tolist() == [-1, -1, -1, 0, 1, -1, -1]
    assert (summary.labelled_fraud, summary.labelled_legitimate) == (1, 1)

    # The reverse edges mirror the forward ones.
    forward = data["Subscriber", "HAS_EMAIL", "Email"].edge_index
    backward = data["Email", "rev_HAS_EMAIL", "Subscriber"].edge_index
    assert sorted(map(tuple, forward.t().tolist())) == sorted(
        map(tuple, backward.flip(0).t().tolist())
    )
    # The ring email links r1, r2 and r3.
    ring_email = exported.identifier_ids["Email"].index("ring@example.org")
    users = sorted(exported.subscriber_ids[s] for s, e in forward.t().tolist() if e == ring_email)
    assert users == ["r1", "r2", "r3"]

    index = exported.index_of()
    feature = {name: i for i, name in enumerate(SUBSCRIBER_FEATURES)}
    r2 = data["Subscriber"].x[index["r2"]].tolist()
    stored = known_graph.read("MATCH (s:Subscriber {id: 'r2'}) RETURN s.embedding AS e")[0]["e"]
    assert r2[feature["usage_risk"]] == pytest.approx(0.45)
    assert r2[feature["usage.daily_charge_limit"]] == pytest.approx(0.45)
    assert r2[feature["usage.burst"]] == 0.0
    assert r2[feature["links.device"]] == pytest.approx(math.log1p(1))
    assert r2[feature["shared.device"]] == pytest.approx(math.log1p(1))
    assert r2[feature["shared.email"]] == pytest.approx(math.log1p(1))
    assert r2[feature["links.ip"]] == 0.0 and r2[feature["hub_links"]] == 0.0
    assert r2[feature["max_sharing"]] == pytest.approx(math.log1p(3))
    assert r2[feature["account_age_days"]] == pytest.approx(math.log1p(9.0))  # registered day 2
    assert r2[feature["ring_size"]] == pytest.approx(math.log1p(4))
    assert r2[feature["gds_missing"]] == 0.0
    start = feature["fastrp.0"]
    assert r2[start : start + 32] == pytest.approx(stored)

    h1 = data["Subscriber"].x[index["h1"]].tolist()
    assert h1[feature["hub_links"]] == pytest.approx(math.log1p(1))
    assert h1[feature["shared.ip"]] == 0.0 and h1[feature["max_sharing"]] == 0.0
    assert h1[feature["gds_missing"]] == 1.0  # only a hub: outside the projection
    assert h1[feature["ring_size"]] == 0.0

    hub = exported.identifier_ids["IP"].index(HUB_IP)
    assert data["IP"].x[hub].tolist() == pytest.approx([math.log1p(3), 1.0])
    assert bool(data["IP"].hub[hub]) and not bool(data["Device"].hub[0])
    assert data["Device"].x[0].tolist() == pytest.approx([math.log1p(3), 0.0])

    # Live scoring reads the same values a subscriber at a time (`SUBSCRIBER_FIELDS`) instead of
    # in columns: the feature rows it builds are the export's, exactly.
    rows = known_graph.read("MATCH (s:Subscriber) RETURN " + SUBSCRIBER_FIELDS + " AS s")
    builder = GraphBuilder(int(as_of.timestamp() * 1000))
    for row in sorted((row["s"] for row in rows), key=lambda row: str(row["id"])):
        builder.add_subscriber(row)
    assert builder.subscriber_ids == exported.subscriber_ids
    assert (builder.subscriber_features() == data["Subscriber"].x.numpy()).all()


def test_live_neighbourhood_rows_carry_every_link_of_each_neighbour(
    known_graph: Neo4jRunner,
) -> None:
    # Live scoring reads a neighbour's values through the identifier that reached it; each
    # neighbour's row must still hold all its links (its features and its other edges to the
    # target's identifiers come from them), as the export's rows do.
    stored = {
        row["s"]["id"]: sorted(map(tuple, row["s"]["links"]))
        for row in known_graph.read("MATCH (s:Subscriber) RETURN " + SUBSCRIBER_FIELDS + " AS s")
    }
    (existing,) = known_graph.read(gnn_live._SUBSCRIBER_NEIGHBOURHOOD, {"id": "r3", "fanout": 10})
    prospect = known_graph.read(
        gnn_live._identifiers_query((IdentifierKind.EMAIL,)),
        {"email": ["ring@example.org"], "fanout": 10},
    )
    for found in (existing["found"], prospect):
        users = {user["id"]: user for identifier in found for user in identifier["users"]}
        assert {"r1", "r2"} <= users.keys()
        for sid, user in users.items():
            assert sorted(map(tuple, user["links"])) == stored[sid], sid
    assert len(stored["r1"]) == 3  # email, device and its own IP


@pytest.mark.parametrize("readers", [2, 3])
def test_an_export_read_in_ranges_side_by_side_has_every_subscriber_once_with_the_same_values(
    known_graph: Neo4jRunner, readers: int
) -> None:
    as_of = T0 + timedelta(days=10)
    whole = export_graph(known_graph, as_of=as_of, page=1, readers=1)
    split = export_graph(known_graph, as_of=as_of, page=1, readers=readers)
    assert sorted(split.subscriber_ids) == whole.subscriber_ids  # one range: in id order
    assert split.subscriber_ids != whole.subscriber_ids  # pages from each range in turn
    again = export_graph(known_graph, as_of=as_of, page=1, readers=readers)
    assert again.subscriber_ids == split.subscriber_ids  # the same order every time
    assert split.summary.pages == whole.summary.pages == 7
    rows = {
        sid: split.data["Subscriber"].x[i].tolist() for i, sid in enumerate(split.subscriber_ids)
    }
    for i, sid in enumerate(whole.subscriber_ids):
        assert rows[sid] == whole.data["Subscriber"].x[i].tolist()

    def links(exported: ExportedGraph) -> set[tuple[str, str, str]]:
        data = exported.data
        return {
            (rel, exported.subscriber_ids[s], exported.identifier_ids[dst][i])
            for src, rel, dst in data.edge_types if src == "Subscriber"
            for s, i in data[src, rel, dst].edge_index.t().tolist()
        }  # fmt: skip

    assert links(split) == links(whole)
