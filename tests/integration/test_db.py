"""The runner's record conversion against the real server: the same values as `Record.data()`."""

from __future__ import annotations

from neo4j import Driver, RoutingControl

from ringwatch.graph.db import Neo4jRunner, plain_record

# Every kind of value a statement can return, nested the ways ringwatch's statements nest them.
_EVERY_KIND = """
CREATE p = (a:PlainValueProbe {id: 'a', scores: [0.5, 1.5], at: datetime('2026-01-02T03:04:05Z')})
          -[r:PROBED {weight: 2}]->(b:PlainValueProbe {id: 'b', tags: ['x', 'y']})
RETURN a, r, p, b.id AS id, [a, b] AS nodes, {node: a, path: p, n: 1} AS nested,
       [1, 2.5, 'three', true, null] AS mixed, [[1, 2], ['a', null]] AS lists,
       {embedding: [0.1, 0.2], count: 3} AS projection, [] AS empty, {} AS empty_map,
       date('2026-01-02') AS day, duration('P1D') AS span,
       point({x: 1.0, y: 2.0}) AS spot, null AS nothing, [a.at, b.id] AS temporal_list
"""


def test_plain_records_equal_the_drivers_data(driver: Driver, graph: Neo4jRunner) -> None:
    try:
        records, _, _ = driver.execute_query(_EVERY_KIND, routing_=RoutingControl.WRITE)
        assert len(records) == 1
        record = records[0]
        converted = plain_record(record)
        assert converted == record.data()
        assert list(converted) == list(record.keys())
        assert converted["a"] == {"id": "a", "scores": [0.5, 1.5], "at": record["a"]["at"]}
        assert converted["r"][1] == "PROBED"
        assert [type(v) for v in converted["nested"].values()] == [dict, list, int]
        # The runner returns the same conversion.
        read = graph.read(
            "MATCH p = (a:PlainValueProbe)-[:PROBED]->(b) RETURN a, p, [a, b] AS nodes"
        )
        assert read == [{"a": converted["a"], "p": converted["p"], "nodes": converted["nodes"]}]
    finally:
        graph.write("MATCH (n:PlainValueProbe) DETACH DELETE n")
