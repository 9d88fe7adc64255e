"""The Graph Data Science pipeline over the subscriber-identifier graph.

One run projects the graph once into GDS memory and computes, in order:

1. weakly connected components, seeded with each subscriber's ``component_id`` from the last run
   so an unchanged component keeps its id (rings are built on these components);
2. weighted Jaccard similarity between subscribers over the identifiers they share (the
   identifier-type weight is the relationship weight), compared only within a component (the
   rest share nothing), kept as ``SIMILAR_TO {score}`` in Neo4j: "probably the same person";
3. Louvain communities, PageRank and weighted degree on that subscriber-subscriber similarity
   graph;
4. closeness to labelled fraud: PageRank personalised on subscribers labelled fraud, over the
   undirected identity graph (how easily a random walk from known fraud reaches a subscriber);
5. FastRP embeddings of subscribers (features for the GNN).

Only subscribers get the results (``component_id``, ``community_id``, ``pagerank``,
``similarity_degree``, ``fraud_proximity``, ``embedding``), written in one pass at the end.
Identifiers marked as hubs and identifier types with weight 0 are left out of the projection,
so a carrier-NAT IP or a placeholder IMEI never glues thousands of strangers into one ring.

Before each algorithm the memory it needs is estimated with GDS's estimate procedures and the
run stops with a clear error when it would not fit in the heap. The projection is dropped in a
``finally``, whatever fails.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, LiteralString

from graphdatascience import GraphDataScience
from neo4j import Driver, Record
from neo4j.exceptions import TransientError

from ringwatch.config import ScoringConfig
from ringwatch.exceptions import RingwatchError
from ringwatch.graph.writer import IDENTIFIER_SCHEMA
from ringwatch.ingest.normalize import IdentifierKind

log = logging.getLogger(__name__)

GRAPH_NAME = "ringwatch-identity"
_RETRIES = 5
LINK = "LINK"  # subscriber -> identifier, natural orientation (node similarity needs it)
LINK_UNDIRECTED = "LINK_UNDIRECTED"
SIMILAR = "SIMILAR_TO"
SIMILAR_UNDIRECTED = "SIMILAR_UNDIRECTED"
SUBSCRIBER_PROPERTIES = (
    "component_id",
    "component_part",
    "community_id",
    "pagerank",
    "similarity_degree",
    "fraud_proximity",
    "embedding",
)


class AnalyticsError(RingwatchError):
    """The analytics pipeline cannot run (memory, missing GDS, bad state)."""


@dataclass(frozen=True)
class PipelineOptions:
    """Knobs of one run; the defaults suit graphs from thousands to millions of subscribers."""

    graph_name: str = GRAPH_NAME
    similarity_top_k: int = 10
    similarity_cutoff: float = 0.1
    embedding_dimension: int = 32
    random_seed: int = 42
    max_heap_percentage: float = 90.0
    concurrency: int | None = None


@dataclass
class StepTiming:
    name: str
    seconds: float
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class PipelineReport:
    """What the run did and how long each step took."""

    subscribers: int = 0
    projected_nodes: int = 0
    projected_relationships: int = 0
    components: int = 0
    communities: int = 0
    similar_pairs: int = 0
    labelled_fraud: int = 0
    peak_estimate_bytes: int = 0
    steps: list[StepTiming] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(step.seconds for step in self.steps)


def identifier_weights(config: ScoringConfig) -> dict[str, float]:
    """Relationship type -> weight for the identifier types that link subscribers into rings."""
    by_kind = {
        IdentifierKind.ADDRESS: config.weight_address,
        IdentifierKind.PAYMENT: config.weight_payment,
        IdentifierKind.DEVICE: config.weight_device,
        IdentifierKind.PHONE: config.weight_phone,
        IdentifierKind.EMAIL: config.weight_email,
        IdentifierKind.IP: config.weight_ip,
    }
    return {
        IDENTIFIER_SCHEMA[kind].relationship: weight
        for kind, weight in by_kind.items()
        if weight > 0
    }


def link_pattern(config: ScoringConfig) -> LiteralString:
    """``TYPE_A|TYPE_B|...`` of the weighted identifier relationships (types are constants)."""
    types = identifier_weights(config)
    if not types:
        raise AnalyticsError("every identifier weight is 0: nothing can link subscribers")
    # Built only from IDENTIFIER_SCHEMA's constant relationship types, never from input.
    return "|".join(types)


def _projection_query(pattern: str) -> LiteralString:
    return (
        f"MATCH (s:Subscriber)-[r:{pattern}]->(i)\n"
        "WHERE NOT coalesce(i.hub, false)\n"
        "WITH gds.graph.project($name, s, i, {\n"
        "  sourceNodeLabels: ['Subscriber'],\n"
        "  targetNodeLabels: labels(i),\n"
        # -1 means "no seed yet": WCC then gives the node a fresh component id.
        "  sourceNodeProperties: {seed: coalesce(s.component_id, -1),\n"
        "                         fraud: CASE WHEN s.label = 'fraud' THEN 1 ELSE 0 END},\n"
        "  targetNodeProperties: {seed: -1, fraud: 0},\n"
        f"  relationshipType: '{LINK}',\n"
        "  relationshipProperties: {weight: $weights[type(r)]}\n"
        "}) AS g\n"
        "RETURN g.nodeCount AS nodes, g.relationshipCount AS relationships"
    )


# Subscribers that fell out of the projection (all their identifiers became hubs or were
# unlinked) keep no stale results from an earlier run.
def _stale_query(pattern: str) -> LiteralString:
    return (
        "MATCH (s:Subscriber) WHERE s.component_id IS NOT NULL\n"
        f"  AND NOT EXISTS {{ (s)-[:{pattern}]->(i) WHERE NOT coalesce(i.hub, false) }}\n"
        "CALL (s) { SET s.component_id = null, s.community_id = null, s.pagerank = null,\n"
        "  s.similarity_degree = null, s.fraud_proximity = null, s.embedding = null }\n"
        "  IN TRANSACTIONS OF 10000 ROWS\n"
        "RETURN count(s) AS cleared"
    )


_DELETE_SIMILAR: LiteralString = (
    "MATCH (:Subscriber)-[r:SIMILAR_TO]->(:Subscriber)\n"
    "CALL (r) { DELETE r } IN TRANSACTIONS OF 20000 ROWS"
)

_SPLIT_PARTS: LiteralString = (
    "MATCH (s:Subscriber) WHERE s.component_id IS NOT NULL\n"
    "WITH s.component_id AS component, s.component_part AS part, count(*) AS size\n"
    "ORDER BY size DESC, part\n"
    "WITH component, collect(part) AS parts WHERE size(parts) > 1\n"
    "RETURN component, parts[1..] AS others"
)
_MAX_COMPONENT: LiteralString = (
    "MATCH (s:Subscriber) WHERE s.component_id IS NOT NULL RETURN max(s.component_id) AS max"
)
_RENUMBER: LiteralString = (
    "UNWIND $rows AS row\n"
    "MATCH (s:Subscriber) WHERE s.component_part = row.part\n"
    "SET s.component_id = row.id"
)

# Results an algorithm could not produce this run (no similar pairs, no labelled fraud) are
# cleared rather than left over from an earlier run.
_CLEAR_PROPERTY: dict[str, LiteralString] = {
    prop: (
        f"MATCH (s:Subscriber) WHERE s.{prop} IS NOT NULL\n"
        f"CALL (s) {{ SET s.{prop} = null }} IN TRANSACTIONS OF 10000 ROWS"
    )
    for prop in SUBSCRIBER_PROPERTIES
}


class GdsPipeline:
    """Runs the pipeline against one GDS connection."""

    def __init__(
        self,
        gds: GraphDataScience,
        driver: Driver,
        config: ScoringConfig,
        options: PipelineOptions | None = None,
        *,
        database: str = "neo4j",
    ) -> None:
        self.gds = gds
        self.driver = driver
        self.database = database
        self.config = config
        self.options = options or PipelineOptions()
        self.report = PipelineReport()
        # Progress bars are for notebooks; the steps are logged with their timings instead.
        gds.set_show_progress(False)

    def run(self) -> PipelineReport:
        self._require_gds()
        pattern = link_pattern(self.config)
        weights = identifier_weights(self.config)
        name = self.options.graph_name
        self._drop(name)  # a crashed run may have left its projection behind
        try:
            with self._step("estimate projection") as detail:
                estimate = self.gds.graph.project.estimate(
                    ["Subscriber", *_identifier_labels(weights)],
                    {rel: {"orientation": "NATURAL"} for rel in weights},
                )
                detail["bytes_max"] = estimate.bytes_max
                self._fits("projection", estimate.bytes_max, estimate.heap_percentage_max)
            with self._step("project") as detail:
                row = self.gds.run_cypher(
                    _projection_query(pattern), {"name": name, "weights": weights}
                ).iloc[0]
                # With nothing to project, no graph is created and the counts are null.
                self.report.projected_nodes = int(row["nodes"] or 0)
                self.report.projected_relationships = int(row["relationships"] or 0)
                detail.update(nodes=self.report.projected_nodes,
                              relationships=self.report.projected_relationships)  # fmt: skip
            if self.report.projected_relationships == 0:
                log.info("no shared identifiers to analyse")
                self._clear_stale(pattern)
                return self.report
            graph = self.gds.graph.get(name)
            with self._step("undirected copy"):
                self.gds.graph.relationships.to_undirected(graph, LINK, LINK_UNDIRECTED)
            self._components(graph)
            self._similarity(graph)
            self._communities_and_centrality(graph)
            self._fraud_proximity(graph)
            self._embeddings(graph)
            with self._step("write subscriber properties") as detail:
                produced = set(self.gds.graph.get(name).node_properties()["Subscriber"])
                written = [prop for prop in SUBSCRIBER_PROPERTIES if prop in produced]
                result = self.gds.graph.node_properties.write(
                    graph, written, node_labels=["Subscriber"]
                )
                detail["properties_written"] = int(result.properties_written)
                for prop in SUBSCRIBER_PROPERTIES:
                    if prop not in produced:
                        self._auto_commit(_CLEAR_PROPERTY[prop])
            with self._step("renumber split components") as detail:
                detail["renumbered"] = self._split_parts()
            self._clear_stale(pattern)
        finally:
            self._drop(name)
        return self.report

    # ------------------------------------------------------------------------------- steps

    def _components(self, graph: Any) -> None:
        self._estimate("wcc", self.gds.wcc.estimate(graph, seed_property="seed"))
        with self._step("weakly connected components") as detail:
            result = self.gds.wcc.mutate(
                graph,
                mutate_property="component_id",
                seed_property="seed",
                relationship_types=[LINK_UNDIRECTED],
                concurrency=self.options.concurrency,
            )
            self.report.components = int(result.component_count)
            detail["components"] = self.report.components
            # Seeding keeps an unchanged component's id, but when a component splits every
            # part keeps the seed. An unseeded run tells the parts apart (see _split_parts).
            self.gds.wcc.mutate(
                graph,
                mutate_property="component_part",
                relationship_types=[LINK_UNDIRECTED],
                concurrency=self.options.concurrency,
            )

    def _similarity(self, graph: Any) -> None:
        with self._step("node similarity (weighted Jaccard)") as detail:
            result = self.gds.node_similarity.mutate(
                graph,
                mutate_relationship_type=SIMILAR,
                mutate_property="score",
                top_k=self.options.similarity_top_k,
                similarity_cutoff=self.options.similarity_cutoff,
                relationship_weight_property="weight",
                relationship_types=[LINK],
                # Subscribers of different components share no identifier, so comparing only
                # within a component gives the same pairs at a fraction of the work.
                use_components="component_part",
                concurrency=self.options.concurrency,
            )
            self.report.similar_pairs = int(result.relationships_written)
            detail["pairs"] = self.report.similar_pairs
        with self._step("write similarities") as detail:
            self._auto_commit(_DELETE_SIMILAR)
            if self.report.similar_pairs:
                written = self.gds.graph.relationships.write(graph, SIMILAR, ["score"])
                detail["written"] = int(written.relationships_written)
                # Both directions of a mutual pair carry the same score: keep one edge.
                self.gds.graph.relationships.to_undirected(
                    graph, SIMILAR, SIMILAR_UNDIRECTED, aggregation="SINGLE"
                )

    def _communities_and_centrality(self, graph: Any) -> None:
        if not self.report.similar_pairs:
            return  # no subscriber resembles another: nothing to group or rank
        similar = [SIMILAR_UNDIRECTED]
        self._estimate(
            "louvain",
            self.gds.louvain.estimate(
                graph,
                relationship_types=similar,
                node_labels=["Subscriber"],
                relationship_weight_property="score",
            ),
        )
        with self._step("louvain communities") as detail:
            result = self.gds.louvain.mutate(
                graph,
                mutate_property="community_id",
                relationship_types=similar,
                node_labels=["Subscriber"],
                relationship_weight_property="score",
                concurrency=self.options.concurrency,
            )
            self.report.communities = int(result.community_count)
            detail["communities"] = self.report.communities
        with self._step("pagerank"):
            self.gds.page_rank.mutate(
                graph,
                mutate_property="pagerank",
                relationship_types=similar,
                node_labels=["Subscriber"],
                relationship_weight_property="score",
                concurrency=self.options.concurrency,
            )
        with self._step("weighted degree"):
            self.gds.degree.mutate(
                graph,
                mutate_property="similarity_degree",
                relationship_types=similar,
                node_labels=["Subscriber"],
                relationship_weight_property="score",
                concurrency=self.options.concurrency,
            )

    def _fraud_proximity(self, graph: Any) -> None:
        with self._step("closeness to labelled fraud") as detail:
            sources = self.gds.run_cypher(
                "CALL gds.graph.nodeProperty.stream($name, 'fraud', ['Subscriber'])\n"
                "YIELD nodeId, propertyValue WHERE propertyValue = 1\n"
                "RETURN collect(nodeId) AS ids",
                {"name": self.options.graph_name},
            ).iloc[0]["ids"]
            self.report.labelled_fraud = len(sources)
            detail["labelled_fraud"] = len(sources)
            if not sources:
                return  # personalised PageRank needs at least one source
            self.gds.page_rank.mutate(
                graph,
                mutate_property="fraud_proximity",
                relationship_types=[LINK_UNDIRECTED],
                relationship_weight_property="weight",
                source_nodes=[int(node) for node in sources],
                concurrency=self.options.concurrency,
            )

    def _embeddings(self, graph: Any) -> None:
        self._estimate(
            "fastrp",
            self.gds.fast_rp.estimate(
                graph,
                embedding_dimension=self.options.embedding_dimension,
                relationship_types=[LINK_UNDIRECTED],
            ),
        )
        with self._step("fastrp embeddings"):
            self.gds.fast_rp.mutate(
                graph,
                mutate_property="embedding",
                embedding_dimension=self.options.embedding_dimension,
                relationship_types=[LINK_UNDIRECTED],
                relationship_weight_property="weight",
                random_seed=self.options.random_seed,
                iteration_weights=[0.0, 1.0, 1.0, 0.5],
                concurrency=self.options.concurrency,
            )

    # ----------------------------------------------------------------------------- helpers

    def _require_gds(self) -> None:
        try:
            self.gds.run_cypher("RETURN gds.version() AS version")
        except Exception as exc:  # the client wraps driver errors in many types
            raise AnalyticsError(
                "Graph Data Science is not available in this Neo4j (is the GDS plugin loaded?)"
            ) from exc

    def _estimate(self, what: str, estimate: Any) -> None:
        self._fits(what, int(estimate.bytes_max), float(estimate.heap_percentage_max))

    def _fits(self, what: str, bytes_max: int, heap_percentage: float) -> None:
        self.report.peak_estimate_bytes = max(self.report.peak_estimate_bytes, int(bytes_max))
        if heap_percentage > self.options.max_heap_percentage:
            raise AnalyticsError(
                f"{what} needs up to {bytes_max / 2**20:,.0f} MiB, {heap_percentage:.0f}% of "
                f"Neo4j's heap (limit {self.options.max_heap_percentage:.0f}%); give Neo4j more "
                "heap (RINGWATCH_STACK__NEO4J_HEAP) or lower the hub cap"
            )

    def _clear_stale(self, pattern: str) -> None:
        with self._step("clear stale results") as detail:
            detail["cleared"] = int(self._auto_commit(_stale_query(pattern))[0]["cleared"])

    def _split_parts(self) -> int:
        """Give every part of a split component but the largest a new, unused component id."""
        split = self._auto_commit(_SPLIT_PARTS)
        if not split:
            return 0
        next_id = int(self._auto_commit(_MAX_COMPONENT)[0]["max"]) + 1
        rows = []
        for record in split:
            for part in record["others"]:
                rows.append({"part": part, "id": next_id})
                next_id += 1
        with self.driver.session(database=self.database) as session:
            session.execute_write(lambda tx: tx.run(_RENUMBER, {"rows": rows}).consume())
        return len(rows)

    def _auto_commit(self, query: LiteralString) -> list[Record]:
        # Batched writes (CALL ... IN TRANSACTIONS) need an implicit transaction, which the
        # driver does not retry; they are idempotent, so a deadlock with concurrent ingest is
        # retried here.
        for attempt in range(1, _RETRIES + 1):
            try:
                with self.driver.session(database=self.database) as session:
                    return list(session.run(query))
            except TransientError:
                if attempt == _RETRIES:
                    raise
                time.sleep(0.2 * 2**attempt)
        raise AssertionError("unreachable")

    def _drop(self, name: str) -> None:
        self.gds.run_cypher(
            "CALL gds.graph.drop($name, false) YIELD graphName RETURN graphName", {"name": name}
        )

    @contextmanager
    def _step(self, name: str) -> Iterator[dict[str, Any]]:
        detail: dict[str, Any] = {}
        started = time.perf_counter()
        yield detail
        seconds = time.perf_counter() - started
        self.report.steps.append(StepTiming(name, seconds, detail))
        log.info("analytics step %s took %.2f s %s", name, seconds, detail or "")


def _identifier_labels(weights: dict[str, float]) -> list[str]:
    return [schema.label for schema in IDENTIFIER_SCHEMA.values() if schema.relationship in weights]


def run_pipeline(
    gds: GraphDataScience,
    driver: Driver,
    config: ScoringConfig,
    options: PipelineOptions | None = None,
    *,
    database: str = "neo4j",
    on_step: Callable[[StepTiming], None] | None = None,
) -> PipelineReport:
    """Run the whole GDS pipeline once; see the module docstring."""
    report = GdsPipeline(gds, driver, config, options, database=database).run()
    if on_step:
        for step in report.steps:
            on_step(step)
    return report
