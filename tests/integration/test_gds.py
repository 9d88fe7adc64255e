"""The GDS library and the `graphdatascience` client, checked against answers known in advance.

Every test builds a tiny graph with parameterised Cypher, projects it under a unique name,
runs algorithms through the client and compares their results with a value derived by hand
(the derivation is in the comment next to the expected value). Projections are dropped by the
`with` block that created them, and every test ends by checking the catalog is empty again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pytest
from graphdatascience import GraphDataScience
from graphdatascience.graph.graph_api import Graph
from neo4j.exceptions import ClientError

from ringwatch.graph.db import Neo4jRunner

Partition = set[frozenset[str]]

# Projections of the test graphs: both ignore the stored direction of their relationships.
UNDIRECTED_USES: dict[str, Any] = {"USES": {"orientation": "UNDIRECTED"}}
UNDIRECTED_KNOWS: dict[str, Any] = {"KNOWS": {"orientation": "UNDIRECTED"}}


def _create_subscribers_using(graph: Neo4jRunner, uses: Mapping[str, Iterable[str]]) -> None:
    """`(:Subscriber {id})-[:USES]->(:Device {id})` for every subscriber and its devices."""
    graph.write(
        "UNWIND $rows AS row "
        "MERGE (s:Subscriber {id: row.subscriber}) "
        "WITH s, row UNWIND row.devices AS device "
        "MERGE (d:Device {id: device}) "
        "MERGE (s)-[:USES]->(d)",
        {"rows": [{"subscriber": s, "devices": list(ds)} for s, ds in uses.items()]},
    )


def _create_undirected_edges(graph: Neo4jRunner, edges: Iterable[tuple[str, str]]) -> None:
    """`(:Subscriber)-[:KNOWS]->(:Subscriber)` per pair; projected UNDIRECTED by the tests."""
    graph.write(
        "UNWIND $edges AS edge "
        "MERGE (a:Subscriber {id: edge[0]}) "
        "MERGE (b:Subscriber {id: edge[1]}) "
        "MERGE (a)-[:KNOWS]->(b)",
        {"edges": [list(edge) for edge in edges]},
    )


def _ids(gds: GraphDataScience, node_ids: Iterable[Any], label: str | None = None) -> list[str]:
    """The `id` property of each internal GDS node id, in the same order.

    With `label`, nodes without that label come back as "" (so the list still lines up).
    """
    nodes = gds.util.as_nodes([int(node_id) for node_id in node_ids])
    return [str(node["id"]) if label is None or label in node.labels else "" for node in nodes]


def _partition(members: Iterable[tuple[str, Any]]) -> Partition:
    """{(id, group), ...} -> {frozenset(ids of group), ...}; the group labels themselves vary."""
    groups: dict[Any, set[str]] = {}
    for member, group in members:
        groups.setdefault(group, set()).add(member)
    return {frozenset(group) for group in groups.values()}


def _assert_catalog_empty(gds: GraphDataScience, name: str) -> None:
    assert not gds.graph.exists(name)
    assert gds.graph.list() == []


def test_client_connects_to_open_gds_2_13_over_bolt_without_arrow(
    gds: GraphDataScience, graph: Neo4jRunner
) -> None:
    version = gds.server_version()
    assert (version.major, version.minor) == (2, 13)

    sys_info = gds.debug.sys_info()
    assert sys_info.gds_version == str(version)
    # The open-source build, not the licensed Enterprise one.
    assert sys_info.gds_edition == "OpenGDS"
    assert not gds.is_licensed()  # a numpy bool, despite the `bool` annotation
    assert graph.read("RETURN gds.version() AS version") == [{"version": str(version)}]

    # The client asks `gds.debug.arrow` where an Arrow Flight server listens. Only the Enterprise
    # edition has that procedure; the client treats its absence as "no Arrow" and sends
    # everything as Cypher over Bolt - the `gds` fixture above connected without error.
    with pytest.raises(ClientError) as raised:
        graph.read("CALL gds.debug.arrow()")
    assert raised.value.code == "Neo.ClientError.Procedure.ProcedureNotFound"
    assert "no procedure with the name `gds.debug.arrow`" in str(raised.value.message)


def test_wcc_groups_subscribers_that_share_a_device_or_an_address(
    gds: GraphDataScience, graph: Neo4jRunner, unique_name: Callable[[str], str]
) -> None:
    _create_subscribers_using(
        graph, {"s1": ["d1"], "s2": ["d1"], "s3": ["d1"], "s5": ["d2"], "s6": ["d2"], "s7": ["d3"]}
    )
    graph.write(
        "UNWIND $subscribers AS id "
        "MERGE (s:Subscriber {id: id}) "
        "MERGE (a:Address {id: $address}) "
        "MERGE (s)-[:LIVES_AT]->(a)",
        {"subscribers": ["s3", "s4"], "address": "a1"},
    )
    # s1, s2, s3 share d1 and s3 links s4 through a1, so they form one ring; s5 and s6 share d2;
    # s7 uses d3 that nobody else uses and stays alone. Components (identifiers included):
    # {s1, s2, s3, s4, d1, a1}, {s5, s6, d2}, {s7, d3}.
    expected: Partition = {
        frozenset({"s1", "s2", "s3", "s4"}),
        frozenset({"s5", "s6"}),
        frozenset({"s7"}),
    }
    name = unique_name("g")
    projection = gds.graph.project.native(
        name,
        ["Subscriber", "Device", "Address"],
        {
            "USES": {"orientation": "UNDIRECTED"},
            "LIVES_AT": {"orientation": "UNDIRECTED"},
        },
    )
    with projection as g:
        assert projection.result.node_count == 7 + 4  # seven subscribers, d1-d3 and a1
        streamed = gds.wcc.stream(g)
        ids = _ids(gds, streamed["nodeId"], label="Subscriber")
        members = zip(ids, streamed["componentId"], strict=True)
        assert _partition((id_, component) for id_, component in members if id_) == expected

        # `node_labels` filters the graph before WCC runs, not the output: without the
        # identifier nodes no two subscribers are connected and all seven are alone.
        alone = gds.wcc.stream(g, node_labels=["Subscriber"])
        assert len(alone) == 7
        assert alone["componentId"].nunique() == 7

        written = gds.wcc.write(g, write_property="component")
        assert written.component_count == 3
        assert written.node_properties_written == 11

    rows = graph.read("MATCH (s:Subscriber) RETURN s.id AS id, s.component AS component")
    assert all(row["component"] is not None for row in rows)
    assert _partition((row["id"], row["component"]) for row in rows) == expected
    # Identifiers carry the component of the subscribers that use them.
    [same] = graph.read(
        "MATCH (d:Device {id: $device}), (s:Subscriber {id: $subscriber}) "
        "RETURN d.component = s.component AS same",
        {"device": "d1", "subscriber": "s4"},
    )
    assert same == {"same": True}
    _assert_catalog_empty(gds, name)


def test_louvain_splits_two_cliques_joined_by_one_edge(
    gds: GraphDataScience, graph: Neo4jRunner, unique_name: Callable[[str], str]
) -> None:
    left = ["a1", "a2", "a3", "a4"]
    right = ["b1", "b2", "b3", "b4"]
    cliques = [
        (group[i], group[j]) for group in (left, right) for i in range(4) for j in range(i + 1, 4)
    ]
    _create_undirected_edges(graph, [*cliques, ("a4", "b1")])
    # m = 6 + 6 + 1 = 13 edges. Splitting into the two cliques: each side has 6 internal edges
    # and degree sum 3 * 4 + 1 = 13, so Q = 2 * (6/13 - (13/26)^2) = 11/26 ~ 0.4231, the best
    # split of this graph (all in one community gives Q = 0).
    name = unique_name("g")
    with gds.graph.project.native(name, "Subscriber", UNDIRECTED_KNOWS) as g:
        streamed = gds.louvain.stream(g)
        communities = _partition(
            zip(_ids(gds, streamed["nodeId"]), streamed["communityId"], strict=True)
        )
        assert communities == {frozenset(left), frozenset(right)}

        stats = gds.louvain.stats(g)
        assert stats.community_count == 2
        assert stats.modularity == pytest.approx(11 / 26, rel=1e-6)
    _assert_catalog_empty(gds, name)


def test_node_similarity_is_the_jaccard_index_of_shared_devices(
    gds: GraphDataScience, graph: Neo4jRunner, unique_name: Callable[[str], str]
) -> None:
    _create_subscribers_using(
        graph, {"A": ["d1", "d2"], "B": ["d1", "d2"], "C": ["d1"], "D": ["d3"]}
    )
    # Jaccard |N(x) & N(y)| / |N(x) | N(y)|: A-B = 2/2 = 1.0, A-C = B-C = 1/2 = 0.5, and D shares
    # nothing with anyone (0, below any positive cutoff), so D is in no pair at all. The stream
    # reports each pair in both directions; devices have no outgoing USES and are never compared.
    expected = {
        ("A", "B"): 1.0,
        ("B", "A"): 1.0,
        ("A", "C"): 0.5,
        ("C", "A"): 0.5,
        ("B", "C"): 0.5,
        ("C", "B"): 0.5,
    }
    name = unique_name("g")
    with gds.graph.project.native(name, ["Subscriber", "Device"], "USES") as g:
        streamed = gds.node_similarity.stream(g, similarity_cutoff=0.1, top_k=10)
        pairs = dict(
            zip(
                zip(_ids(gds, streamed["node1"]), _ids(gds, streamed["node2"]), strict=True),
                (float(value) for value in streamed["similarity"]),
                strict=True,
            )
        )
        assert len(pairs) == len(streamed)  # no pair reported twice
        assert pairs == pytest.approx(expected)
    _assert_catalog_empty(gds, name)


def test_page_rank_and_degree_of_an_undirected_star(
    gds: GraphDataScience, graph: Neo4jRunner, unique_name: Callable[[str], str]
) -> None:
    leaves = ["l1", "l2", "l3"]
    _create_undirected_edges(graph, [("hub", leaf) for leaf in leaves])
    # GDS PageRank is unnormalised: PR(v) = (1 - d) + d * sum(PR(u) / deg(u) for u ~ v), d = 0.85.
    # Leaf: L = 0.15 + 0.85 * H / 3; hub: H = 0.15 + 0.85 * 3 * L = 0.15 + 2.55 * L.
    # So L = 0.15 + 0.0425 + 0.7225 * L, L = 0.1925 / 0.2775 = 0.693694 and
    # H = 0.15 + 2.55 * 0.693694 = 1.918919 (the four scores sum to the node count, 4).
    # The star is bipartite, so the error only shrinks by about 0.85 per iteration: reaching the
    # tolerance takes over a hundred iterations, far more than the default max_iterations of 20.
    leaf_rank = 0.1925 / 0.2775
    hub_rank = 0.15 + 2.55 * leaf_rank
    assert (round(leaf_rank, 6), round(hub_rank, 6)) == (0.693694, 1.918919)
    name = unique_name("g")
    with gds.graph.project.native(name, "Subscriber", UNDIRECTED_KNOWS) as g:
        ranks = gds.page_rank.stream(g, damping_factor=0.85, max_iterations=200, tolerance=1e-10)
        by_id = dict(zip(_ids(gds, ranks["nodeId"]), ranks["score"], strict=True))
        assert by_id == pytest.approx(
            {"hub": hub_rank, "l1": leaf_rank, "l2": leaf_rank, "l3": leaf_rank}, rel=1e-3
        )
        stats = gds.page_rank.stats(g, damping_factor=0.85, max_iterations=200, tolerance=1e-10)
        assert stats.did_converge

        # Degree in the undirected projection: the hub touches three leaves, each leaf one hub.
        degrees = gds.degree.stream(g)
        assert dict(zip(_ids(gds, degrees["nodeId"]), degrees["score"], strict=True)) == {
            "hub": 3.0,
            "l1": 1.0,
            "l2": 1.0,
            "l3": 1.0,
        }
    _assert_catalog_empty(gds, name)


def _fast_rp(gds: GraphDataScience, g: Graph, dimension: int, seed: int) -> dict[str, list[float]]:
    result = gds.fast_rp.stream(g, embedding_dimension=dimension, random_seed=seed)
    return {
        node: [float(value) for value in embedding]
        for node, embedding in zip(_ids(gds, result["nodeId"]), result["embedding"], strict=True)
    }


def test_fast_rp_is_reproducible_and_equal_for_nodes_with_the_same_neighbours(
    gds: GraphDataScience, graph: Neo4jRunner, unique_name: Callable[[str], str]
) -> None:
    # The path a - b - c with a tail b - d - e. FastRP averages the neighbours' vectors, and the
    # default iteration weights [0, 1, 1] give the node's own random vector no weight, so a and c
    # (whose only neighbour is b) get exactly the same embedding; d (neighbours b and e) does not.
    _create_undirected_edges(graph, [("a", "b"), ("b", "c"), ("b", "d"), ("d", "e")])
    dimension = 16
    name = unique_name("g")
    with gds.graph.project.native(name, "Subscriber", UNDIRECTED_KNOWS) as g:
        first = _fast_rp(gds, g, dimension, seed=42)
        second = _fast_rp(gds, g, dimension, seed=42)
        other_seed = _fast_rp(gds, g, dimension, seed=7)

    assert set(first) == {"a", "b", "c", "d", "e"}
    assert all(len(vector) == dimension for vector in first.values())
    assert all(math.isfinite(value) for vector in first.values() for value in vector)
    assert any(value != 0.0 for vector in first.values() for value in vector)
    assert first == second
    assert first != other_seed
    assert first["a"] == first["c"]
    assert first["a"] != first["d"]
    _assert_catalog_empty(gds, name)


def test_wcc_memory_estimate_is_positive(
    gds: GraphDataScience, graph: Neo4jRunner, unique_name: Callable[[str], str]
) -> None:
    _create_subscribers_using(graph, {"s1": ["d1"], "s2": ["d1"], "s3": ["d2"]})
    name = unique_name("g")
    with gds.graph.project.native(name, ["Subscriber", "Device"], UNDIRECTED_USES) as g:
        estimate = gds.wcc.estimate(g)
        # Three subscribers and two devices; three USES edges, each stored in both directions.
        assert (estimate.node_count, estimate.relationship_count) == (5, 6)
        assert 0 < estimate.bytes_min <= estimate.bytes_max
        assert estimate.required_memory
    _assert_catalog_empty(gds, name)
