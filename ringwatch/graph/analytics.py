"""The Graph Data Science pipeline over the subscriber-identifier graph.

One run projects the graph once into GDS memory and computes, in order:

1. weakly connected components, seeded with each subscriber's ``component_id`` from the last run
   so an unchanged component keeps its id (rings are built on these components);
2. weighted Jaccard similarity between subscribers over the identifiers they share (the
   identifier-type weight is the relationship weight), compared only within a component (the
   rest share nothing); each subscriber's ten most similar others stay in GDS memory for step 3,
   its single most similar other is kept as ``SIMILAR_TO {score}`` in Neo4j ("probably the same
   person"; the similarity is symmetric, so that edge also carries the subscriber's highest
   score). A recomputation compares the stored edges with the new ones and changes only those
   that differ, in the background while the next algorithms run;
3. Leiden communities, PageRank and weighted degree on that subscriber-subscriber similarity
   graph;
4. closeness to labelled fraud: PageRank personalised on subscribers labelled fraud, over the
   undirected identity graph (how easily a random walk from known fraud reaches a subscriber);
5. FastRP embeddings of subscribers (features for the GNN).

Only subscribers get the results (``component_id``, ``community_id``, ``pagerank``,
``similarity_degree``, ``fraud_proximity``, ``embedding``), written in one pass at the end.
Identifiers marked as hubs and identifier types with weight 0 are left out of the projection,
so a carrier-NAT IP or a placeholder IMEI never glues thousands of strangers into one ring.

The projection is native (GDS reads the store directly, several times faster than a Cypher
projection): every subscriber and identifier, each weighted identifier type as stored, its
weight as a default value. Hubs carry a ``Hub`` label (synchronised with their ``hub`` flag at
the start of each run) and a filtered copy without them is what the algorithms see, with an
undirected copy of each link type derived in memory. Subscribers left with no link still get
results, which the last step clears.

Before each algorithm the memory it needs is estimated with GDS's estimate procedures and the
run stops with a clear error when it would not fit in the heap. The projection is dropped in a
``finally``, whatever fails.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
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
# Identifiers with `hub = true` also carry this label, kept in step at the start of every run:
# the native projection reads labels, not property values, so hubs are filtered out by label.
HUB_LABEL = "Hub"
# A relationship property key no relationship carries: the native projection gives every link
# its type's weight as the default value. GDS accepts only keys the database knows, so the key
# is created (as a name, with no data) before projecting.
WEIGHT_KEY = "ringwatch_link_weight"
# Each subscriber's top-k most similar others live in GDS memory only (communities, centrality);
# its single most similar other is what Neo4j stores, as SIMILAR_TO: the "likely the same
# person" evidence, and by symmetry of the similarity also every subscriber's highest score.
SIMILAR_TOP_K = "SIMILAR_TOP_K"
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


def _node_projection(labels: list[str]) -> dict[str, Any]:
    # -1 means "no seed yet": WCC then gives the node a fresh component id. Only subscribers
    # ever carry a component id; identifiers take the default.
    seed = {"seed": {"property": "component_id", "defaultValue": -1}}
    return {label: {"label": label, "properties": seed} for label in labels}


def _relationship_projection(weights: dict[str, float]) -> dict[str, Any]:
    """Each identifier type as stored (subscriber -> identifier), with its weight: node
    similarity compares subscribers by these outgoing links. The undirected copies that
    closeness and embeddings walk are derived in memory after the hub filter (several seconds
    faster at 1M subscribers than reading every link from the store twice)."""
    projection: dict[str, Any] = {}
    for rel, weight in weights.items():
        # No relationship carries WEIGHT_KEY, so every link takes its type's weight.
        properties = {"weight": {"property": WEIGHT_KEY, "defaultValue": weight}}
        projection[rel] = {"type": rel, "orientation": "NATURAL", "properties": properties}
    return projection


def undirected(rel: str) -> str:
    return f"{rel}_UNDIRECTED"


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


_LABELLED_FRAUD: LiteralString = (
    "MATCH (s:Subscriber) WHERE s.label = 'fraud' RETURN elementId(s) AS id"
)
_COUNT_SIMILAR: LiteralString = "MATCH ()-[r:SIMILAR_TO]->() RETURN count(r) AS stored"
_SIMILAR_OUT = "similar_out"
_WRITE_SIMILAR: LiteralString = (
    "CALL gds.graph.relationshipProperties.write($pairs, $type, ['score'], {})\n"
    "YIELD relationshipsWritten RETURN relationshipsWritten AS written"
)
# Per subscriber with pairs this run, compared with what it has stored: when they differ, its
# stored edges to anyone else go and its pairs are merged (an unchanged score writes nothing).
# Most subscribers' pairs survive a recomputation and are only read: the comparison runs
# before the batched writes, so unchanged subscribers open no transaction (at 1M subscribers,
# half the time of comparing inside them).
_UPDATE_SIMILAR: LiteralString = (
    "CALL gds.graph.relationshipProperty.stream($pairs, 'score', [$type])\n"
    "YIELD sourceNodeId, targetNodeId, propertyValue\n"
    "WITH sourceNodeId, collect([gds.util.asNode(targetNodeId), propertyValue]) AS pairs\n"
    "WITH gds.util.asNode(sourceNodeId) AS s, pairs\n"
    "WITH s, pairs, [(s)-[r:SIMILAR_TO]->(o) | [o, r.score]] AS stored\n"
    # Scores are compared to 1e-9: a new projection may sum the same weights in another order.
    "WHERE size(stored) <> size(pairs) OR any(pair IN pairs WHERE none(old IN stored\n"
    "      WHERE old[0] = pair[0] AND abs(old[1] - pair[1]) <= 1e-9))\n"
    "CALL (s, pairs) {\n"
    "  CALL (s, pairs) {\n"
    "    MATCH (s)-[old:SIMILAR_TO]->(o) WHERE NOT o IN [p IN pairs | p[0]]\n"
    "    DELETE old\n"
    "  }\n"
    "  UNWIND pairs AS pair\n"
    "  WITH s, pair[0] AS o, pair[1] AS score\n"
    "  MERGE (s)-[r:SIMILAR_TO]->(o)\n"
    "  SET r.score = score\n"
    "} IN TRANSACTIONS OF 2000 ROWS"
)
# Subscribers with no pair this run lose the edges they had.
_DROP_SIMILAR_OF_UNPAIRED: LiteralString = (
    "MATCH (s:Subscriber)-[old:SIMILAR_TO]->()\n"
    f"WHERE gds.util.nodeProperty($pairs, s, '{_SIMILAR_OUT}', 'Subscriber') = 0\n"
    "CALL (old) { DELETE old } IN TRANSACTIONS OF 20000 ROWS\n"
    "RETURN count(*) AS dropped"
)
_DROP_GRAPH: LiteralString = "CALL gds.graph.drop($name, false) YIELD graphName RETURN graphName"
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

_MARK_HUBS: dict[str, LiteralString] = {
    schema.label: (
        # The hint: left alone, the planner scans every identifier without the label (a
        # million at 1M subscribers) rather than seek the few hundred hubs in the index.
        f"MATCH (i:{schema.label}) USING INDEX i:{schema.label}(hub)\n"
        f"WHERE i.hub = true AND NOT i:{HUB_LABEL} SET i:{HUB_LABEL}"
    )
    for schema in IDENTIFIER_SCHEMA.values()
}
_UNMARK_HUBS: LiteralString = (
    f"MATCH (i:{HUB_LABEL}) WHERE NOT coalesce(i.hub, false) REMOVE i:{HUB_LABEL}"
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
        self.split = False
        self._heap_bytes: int | None = None
        self._fraud_ids: list[str] = []
        self._pairs_copy = f"{self.options.graph_name}-pairs"
        # Progress bars are for notebooks; the steps are logged with their timings instead.
        gds.set_show_progress(False)

    def run(self) -> PipelineReport:
        self._require_gds()
        pattern = link_pattern(self.config)
        weights = identifier_weights(self.config)
        self.links = list(weights)
        self.links_undirected: list[str] = []
        name = self.options.graph_name
        everything = f"{name}-with-hubs"
        self._drop(name)  # a crashed run may have left its projections behind
        self._drop(everything)
        self._drop(self._pairs_copy)
        try:
            labels = ["Subscriber", *_identifier_labels(weights), HUB_LABEL]
            nodes, relationships = _node_projection(labels), _relationship_projection(weights)
            with self._step("estimate projection") as detail:
                estimate = self.gds.graph.project.estimate(nodes, relationships)
                detail["bytes_max"] = estimate.bytes_max
                # An upper bound: at 1M subscribers it was above the heap that the projection
                # and its copy without hubs used together, so it is checked once.
                self._fits("projection", int(estimate.bytes_max))
            with self._step("project") as detail:
                # Read before projecting: ingest goes on meanwhile, and personalised PageRank
                # refuses a source that arrived after the projection.
                self._fraud_ids = [str(row["id"]) for row in self._auto_commit(_LABELLED_FRAUD, {})]
                self._sync_hub_labels(weights)
                self._create_tokens(labels, list(weights))
                self.gds.run_cypher(
                    "CALL gds.graph.project($name, $nodes, $relationships) YIELD nodeCount",
                    {"name": everything, "nodes": nodes, "relationships": relationships},
                )
                row = self.gds.run_cypher(
                    f"CALL gds.graph.filter($name, $from, 'NOT n:{HUB_LABEL}', '*')\n"
                    "YIELD nodeCount, relationshipCount",
                    {"name": name, "from": everything},
                ).iloc[0]
                self._drop(everything)
                self.report.projected_nodes = int(row["nodeCount"])
                self.report.projected_relationships = int(row["relationshipCount"])
                detail.update(nodes=self.report.projected_nodes,
                              relationships=self.report.projected_relationships)  # fmt: skip
                graph = self.gds.graph.get(name)
                # The filtered copy leaves out identifier types with no links left.
                present = set(graph.relationship_types())
                self.links = [rel for rel in self.links if rel in present]
                self.links_undirected = [undirected(rel) for rel in self.links]
                for rel in self.links:
                    self.gds.graph.relationships.to_undirected(graph, rel, undirected(rel))
            if self.report.projected_relationships == 0:
                log.info("no shared identifiers to analyse")
                self._clear_stale(pattern)
                return self.report
            self._components(graph)
            self._similarity(graph)
            # Storing the similarity edges is Neo4j's work (mostly reading, on a recomputation)
            # and the next algorithms are GDS's: they overlap. Nothing else in this run writes
            # to Neo4j until the store is done, so the run never waits on its own locks.
            pending = self._start_similarity_write(graph)
            try:
                self._communities_and_centrality(graph)
                self._fraud_proximity(graph)
                self._embeddings(graph)
            finally:
                # Timed as the wait that is left; the store's own time is in the detail.
                with self._step("write similarities") as detail:
                    detail.update(pending.result())
            with self._step("write subscriber properties") as detail:
                produced = set(self.gds.graph.get(name).node_properties()["Subscriber"])
                if not self.split:
                    # Only split detection reads the parts: with no split, not worth writing.
                    produced.discard("component_part")
                written = [prop for prop in SUBSCRIBER_PROPERTIES if prop in produced]
                result = self.gds.graph.node_properties.write(
                    graph, written, node_labels=["Subscriber"]
                )
                detail["properties_written"] = int(result.properties_written)
                for prop in SUBSCRIBER_PROPERTIES:
                    if prop not in produced and prop != "component_part":
                        self._auto_commit(_CLEAR_PROPERTY[prop])
            if self.split:
                with self._step("renumber split components") as detail:
                    detail["renumbered"] = self._split_parts()
            self._clear_stale(pattern)
        finally:
            self._drop(everything)
            self._drop(self._pairs_copy)
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
                # WCC ignores direction, so the links as stored connect the same nodes as
                # their undirected copies (and are read once instead of twice).
                relationship_types=self.links,
                concurrency=self.options.concurrency,
            )
            self.report.components = int(result.component_count)
            detail["components"] = self.report.components
            # Seeding keeps an unchanged component's id, but when a component splits every
            # part keeps the seed. An unseeded run tells the parts apart (see _split_parts).
            parts = self.gds.wcc.mutate(
                graph,
                mutate_property="component_part",
                relationship_types=self.links,
                concurrency=self.options.concurrency,
            )
            # Connected subscribers always share a seeded id, so the parts refine the seeded
            # components: more parts than components means some component split.
            self.split = int(parts.component_count) != self.report.components
            detail["split"] = self.split

    def _similarity(self, graph: Any) -> None:
        with self._step("node similarity (weighted Jaccard)") as detail:
            for kept, top_k in ((SIMILAR_TOP_K, self.options.similarity_top_k), (SIMILAR, 1)):
                result = self.gds.node_similarity.mutate(
                    graph,
                    mutate_relationship_type=kept,
                    mutate_property="score",
                    top_k=top_k,
                    similarity_cutoff=self.options.similarity_cutoff,
                    relationship_weight_property="weight",
                    relationship_types=self.links,
                    # Subscribers of different components share no identifier, so comparing
                    # only within a component gives the same pairs at a fraction of the work.
                    use_components="component_part",
                    # Among equally similar others, parallel threads pick one by timing; one
                    # thread picks the same one every run, so a stored edge only changes when
                    # the graph does (and an unchanged graph rewrites nothing).
                    concurrency=1 if kept == SIMILAR else self.options.concurrency,
                )
                detail[kept] = int(result.relationships_written)
            self.report.similar_pairs = detail[SIMILAR_TOP_K]
        if self.report.similar_pairs:
            # Both directions of a mutual pair carry the same score: keep one edge.
            self.gds.graph.relationships.to_undirected(
                graph, SIMILAR_TOP_K, SIMILAR_UNDIRECTED, aggregation="SINGLE"
            )

    def _start_similarity_write(self, graph: Any) -> Future[dict[str, Any]]:
        stored = int(self._auto_commit(_COUNT_SIMILAR)[0]["stored"])
        if self.report.similar_pairs:
            self.gds.degree.mutate(
                graph,
                mutate_property=_SIMILAR_OUT,
                relationship_types=[SIMILAR],
                orientation="NATURAL",
                node_labels=["Subscriber"],
            )
            # The background reads only this copy (subscribers, the pairs to store and their
            # count per subscriber), never the projection the next algorithms mutate; and
            # streaming pairs from it is several times faster than from the whole projection.
            self.gds.run_cypher(
                f"CALL gds.graph.filter($copy, $name, 'n:Subscriber', 'r:{SIMILAR}')\n"
                "YIELD nodeCount RETURN nodeCount",
                {"copy": self._pairs_copy, "name": self.options.graph_name},
            )
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="similarity-write")
        future = executor.submit(self._write_similarities, stored)
        executor.shutdown(wait=False)
        return future

    def _write_similarities(self, stored: int) -> dict[str, Any]:
        """Store this run's pairs as SIMILAR_TO edges (runs in the background; only the
        thread-safe driver is used here, never the GDS client)."""
        started = time.perf_counter()
        detail: dict[str, Any] = {"stored_before": stored}
        if not self.report.similar_pairs:
            self._auto_commit(_DELETE_SIMILAR)
            detail["background_s"] = round(time.perf_counter() - started, 2)
            return detail
        params = {"pairs": self._pairs_copy, "type": SIMILAR}
        try:
            if stored == 0:
                # Nothing to compare with (a first run): GDS writes every pair at once.
                # Not retried: a second attempt after a partial write would duplicate edges.
                with self.driver.session(database=self.database) as session:
                    written = session.run(_WRITE_SIMILAR, params).single(strict=True)[0]
                detail["written"] = int(written)
            else:
                # A recomputation keeps most pairs: compare, and touch only what changed,
                # which costs far less than deleting and recreating a million edges.
                self._auto_commit(_UPDATE_SIMILAR, params)
                dropped = self._auto_commit(_DROP_SIMILAR_OF_UNPAIRED, params)
                detail["dropped_unpaired"] = int(dropped[0]["dropped"])
        finally:
            self._auto_commit(_DROP_GRAPH, {"name": self._pairs_copy})
        detail["background_s"] = round(time.perf_counter() - started, 2)
        return detail

    def _communities_and_centrality(self, graph: Any) -> None:
        if not self.report.similar_pairs:
            return  # no subscriber resembles another: nothing to group or rank
        similar = [SIMILAR_UNDIRECTED]
        community_config: dict[str, Any] = {
            "relationship_types": similar,
            "node_labels": ["Subscriber"],
            "relationship_weight_property": "score",
        }
        self._estimate("leiden", self.gds.leiden.estimate(graph, **community_config))
        # Leiden rather than Louvain: the same modularity on the similarity graph in half the
        # time at 1M subscribers, and its refinement step never leaves a community internally
        # disconnected (Louvain can).
        with self._step("leiden communities") as detail:
            result = self.gds.leiden.mutate(
                graph,
                mutate_property="community_id",
                random_seed=self.options.random_seed,
                concurrency=self.options.concurrency,
                **community_config,
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
            config: dict[str, Any] = {
                "mutateProperty": "fraud_proximity",
                "relationshipTypes": self.links_undirected,
                "relationshipWeightProperty": "weight",
            }
            if self.options.concurrency:
                config["concurrency"] = self.options.concurrency
            # Every subscriber that existed when the graph was projected is in it (the hub
            # filter keeps them all); with no source, personalised PageRank cannot run.
            labelled = self.gds.run_cypher(
                "MATCH (s:Subscriber) WHERE elementId(s) IN $ids\n"
                "WITH collect(s) AS sources\n"
                "OPTIONAL CALL (sources) {\n"
                "  WITH sources WHERE size(sources) > 0\n"
                "  WITH sources, $config AS config\n"
                "  CALL gds.pageRank.mutate($name, config {.*, sourceNodes: sources})\n"
                "  YIELD nodePropertiesWritten RETURN nodePropertiesWritten\n"
                "}\n"
                "RETURN size(sources) AS labelled",
                {"name": self.options.graph_name, "config": config, "ids": self._fraud_ids},
            )
            count = int(labelled.iloc[0]["labelled"])
            self.report.labelled_fraud = count
            detail["labelled_fraud"] = count

    def _embeddings(self, graph: Any) -> None:
        self._estimate(
            "fastrp",
            self.gds.fast_rp.estimate(
                graph,
                embedding_dimension=self.options.embedding_dimension,
                relationship_types=self.links_undirected,
            ),
        )
        with self._step("fastrp embeddings"):
            self.gds.fast_rp.mutate(
                graph,
                mutate_property="embedding",
                embedding_dimension=self.options.embedding_dimension,
                relationship_types=self.links_undirected,
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
        self._fits(what, int(estimate.bytes_max))

    def _fits(self, what: str, bytes_max: int) -> None:
        self.report.peak_estimate_bytes = max(self.report.peak_estimate_bytes, int(bytes_max))
        # The estimates' own heapPercentageMax is a ratio rounded to one decimal (0.4 for 40 %),
        # too coarse to check against; the heap's size is read once instead.
        if self._heap_bytes is None:
            self._heap_bytes = int(
                self.gds.run_cypher(
                    "CALL gds.debug.sysInfo() YIELD key, value\n"
                    "WHERE key = 'heapMaxInBytes' RETURN value"
                ).iloc[0]["value"]
            )
        heap_percentage = 100.0 * bytes_max / self._heap_bytes
        if heap_percentage > self.options.max_heap_percentage:
            raise AnalyticsError(
                f"{what} needs up to {bytes_max / 2**20:,.0f} MiB, {heap_percentage:.0f}% of "
                f"Neo4j's heap (limit {self.options.max_heap_percentage:.0f}%); give Neo4j more "
                "heap (RINGWATCH_STACK__NEO4J_HEAP) or lower the hub cap"
            )

    def _create_tokens(self, labels: list[str], types: list[str]) -> None:
        # A native projection refuses names the database has never seen (a store with no hub
        # yet, no analysis yet); creating a name stores no data and is a no-op when it exists.
        self.gds.run_cypher(
            "UNWIND $labels AS label CALL db.createLabel(label)\n"
            "WITH count(*) AS done UNWIND $types AS type CALL db.createRelationshipType(type)\n"
            "WITH count(*) AS done UNWIND $keys AS key CALL db.createProperty(key)\n"
            "RETURN count(*) AS created",
            {"labels": labels, "types": types, "keys": [WEIGHT_KEY, "component_id"]},
        )

    def _sync_hub_labels(self, weights: dict[str, float]) -> None:
        for label in _identifier_labels(weights):
            self._auto_commit(_MARK_HUBS[label])
        self._auto_commit(_UNMARK_HUBS)

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

    def _auto_commit(
        self, query: LiteralString, params: dict[str, Any] | None = None
    ) -> list[Record]:
        # Batched writes (CALL ... IN TRANSACTIONS) need an implicit transaction, which the
        # driver does not retry; they are idempotent, so a deadlock with concurrent ingest is
        # retried here.
        for attempt in range(1, _RETRIES + 1):
            try:
                with self.driver.session(database=self.database) as session:
                    return list(session.run(query, params))
            except TransientError:
                if attempt == _RETRIES:
                    raise
                time.sleep(0.2 * 2**attempt)
        raise AssertionError("unreachable")

    def _drop(self, name: str) -> None:
        self.gds.run_cypher(_DROP_GRAPH, {"name": name})

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
