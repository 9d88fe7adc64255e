"""Detection quality on simulator ground truth: ringwatch's scores against baselines.

A simulated population (`ringwatch.ingest.simulate`) is loaded into a private stack the way a
data engineer would backfill it (identities, then labels, then transactions), analysed with
`ringwatch.graph.analyze.analyze` over the whole simulated period, and these scorers are
compared on every fraud pattern:

(a) the shared-identifier rule: connected components of subscribers linked by non-hub devices,
    addresses, payment methods, phone numbers and emails, computed here (Cypher reads the
    links, union-find in Python) independently of ringwatch's pipeline. A subscriber in a
    component of 3 or more scores the component's summed identifier-type weight over its shared
    identifiers (address 0.4, payment 0.35, device 0.25, phone 0.3, email 0.3), divided by the
    largest component's sum; everyone else scores 0. Flagged: in a component of 3 or more.
(b) IsolationForest (scikit-learn, fixed random_state) on per-subscriber usage features.
    Flagged: its own `predict() == -1` (contamination "auto").
(c) ringwatch's merged risk (`Subscriber.risk`). Flagged: risk >= the REVIEW threshold
    (`settings.scoring.decision_review`).
(d) a tabular model (HistGradientBoosting, balanced class weights) on the GNN's own subscriber
    feature matrix (`gnn_export`), with no message passing. Held-out protocol only.
(e) ringwatch's graph models (the GNNs HeteroSAGE and the camouflage model, the boosted graph
    model: trees over own and neighbour-aggregated features, and the one `ringwatch train` would
    keep: the best on validation PR-AUC), trained with ringwatch's training code. Held-out
    protocol only. (d) and (e) are flagged at calibrated probability >= the REVIEW threshold.

Protocol "unlabelled" (the first published table): subscribers carrying a label
(`Subscriber.label`, from the simulator's label events: about 30 % of fraudsters, 2 % of
legitimate subscribers) are known to the system and are left out of the evaluation for every
scorer. Per pattern, positives are the unlabelled subscribers of that pattern and negatives the
unlabelled legitimate subscribers (other patterns are left out); overall, every unlabelled
fraudster is positive. PR-AUC is scikit-learn's average_precision_score of the raw score;
precision and recall are at each scorer's flag.

Protocol "heldout": subscribers are grouped by shared-identifier connected component
(`component_id`) joined with the simulator's ring ids, and whole groups are dealt into five
folds (`bench.heldout`). Each rotation trains (d) and (e) on the ground truth of three folds,
selects, early-stops and calibrates on the fourth and scores the fifth; over the five rotations
every subscriber gets one held-out score. All scorers are then evaluated as in "unlabelled" on
the test folds' subscribers, per rotation (mean and deviation over rotations, with
cluster-bootstrap intervals of each GNN's difference from (c) and (d)) and pooled. The PR-AUC
of (d) and (e) is of their Platt log-odds (their own ranking; the served isotonic probability
ties subscribers). (a) and (b) use no labels; (c) was computed by `analyze` with the label
events of the whole population, test folds included; the row "overall, no labelled fraud in
its group" leaves out the groups where those labels help (c).

The population includes camouflaged rings (`--camouflaged-rings`, 1 % of subscribers by
default): accounts that look like ordinary customers of real households until they move to
shared handsets, the case where a subscriber's own row says least and its neighbours most.

Run: .venv/bin/python -m bench.quality [--subscribers 10000] [--months 2]
     [--transactions-per-day 1] [--seed 7] [--camouflaged-rings 0.01] [--reuse]
     [--protocol both|unlabelled|heldout]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, LiteralString

import numpy as np
from graphdatascience import GraphDataScience
from rich.console import Console
from rich.table import Table
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score

from bench.common import hardware, median, save, stack_on_free_ports
from ringwatch.config import Neo4jConfig, Settings, StackConfig
from ringwatch.graph.analyze import analyze
from ringwatch.graph.db import Neo4jRunner, create_driver
from ringwatch.graph.gnn_run import MODEL_KINDS
from ringwatch.graph.schema import migrate
from ringwatch.graph.writer import GraphWriter
from ringwatch.ingest.backfill import backfill
from ringwatch.ingest.offline_import import offline_import
from ringwatch.ingest.prepare import Preparer
from ringwatch.ingest.simulate import (
    FRAUD_PATTERNS,
    GROUND_TRUTH_FILE,
    LEGITIMATE,
    FraudRates,
    GroundTruth,
    SimulationConfig,
    read_ground_truth,
    simulate_to_directory,
)
from ringwatch.stack import manager

console = Console()

MARKER = "quality-load.json"
SIMULATION_RECORD = "simulation.json"
FAMILIES = ("identity", "labels", "transactions")  # the load order

# The baseline's identifier-type weights: the product specification's defaults, fixed here so
# the baseline does not move when ringwatch's configuration does.
RULE_WEIGHTS: dict[str, float] = {
    "HAS_ADDRESS": 0.4,
    "PAYS_WITH": 0.35,
    "USES_DEVICE": 0.25,
    "HAS_PHONE": 0.3,
    "HAS_EMAIL": 0.3,
}
RULE_MIN_COMPONENT = 3
FOREST_SEED = 0

SCORERS = ("rule", "forest", "merged")
SCORER_TITLES = {
    "rule": "(a) shared-identifier rule",
    "forest": "(b) IsolationForest, usage",
    "merged": "(c) ringwatch merged risk",
}
HELDOUT_SCORERS = ("rule", "forest", "merged", "tabular", "sage", "camouflage", "boosted", "gnn")
HELDOUT_TITLES = {
    "rule": "(a) rule",
    "forest": "(b) IsolationForest",
    "merged": "(c) merged risk",
    "tabular": "(d) gradient boosting",
    "sage": "(e) HeteroSAGE",
    "camouflage": "(e) camouflage",
    "boosted": "(e) boosted graph model",
    "gnn": "(e) as picked",
}


# ---------------------------------------------------------------------------------- loading


def _load(
    stack: StackConfig,
    settings: Settings,
    data: Path,
    home: Path,
    args: argparse.Namespace,
) -> dict[str, dict[str, float]]:
    """Load the simulated files; returns rows and seconds per family.

    Online: backfill family by family. Offline: identities and transactions through the offline
    import into the empty store (the same graph, checked by the offline import's tests), then
    labels online.
    """
    loaded: dict[str, dict[str, float]] = {}
    preparer = Preparer(
        pii_hmac_key=settings.scoring.pii_hmac_key,
        default_region=settings.ingest.default_region,
    )
    families: Sequence[str] = FAMILIES
    if args.load == "offline":
        started = time.perf_counter()
        imported = offline_import(
            [data / "identity.jsonl"],
            transaction_paths=[data / "transactions.jsonl"],
            stack=stack,
            preparer=preparer,
            hub_cap=settings.scoring.hub_cap,
            work_dir=home / "import",
            rejects_path=home / "offline.rejects.jsonl",
        )
        shutil.rmtree(home / "import", ignore_errors=True)
        seconds = time.perf_counter() - started
        loaded["identity+transactions (offline)"] = {
            "rows": imported.rows_read,
            "written": imported.events,
            "rejected": imported.rejected,
            "seconds": seconds,
            "import_seconds": imported.import_seconds,
            "per_s": imported.rows_read / seconds if seconds else 0.0,
        }
        console.print(
            f"imported {imported.rows_read:,} identity and transaction events offline in "
            f"{seconds:.0f} s (neo4j-admin {imported.import_seconds:.0f} s, "
            f"{imported.rejected:,} rejected)"
        )
        families = ("labels",)
    with create_driver(settings.neo4j) as driver:
        runner = Neo4jRunner(driver)
        migrate(runner)
        writer = GraphWriter(runner, hub_cap=settings.scoring.hub_cap)
        for family in families:
            started = time.perf_counter()
            summary = backfill(
                family,
                [data / f"{family}.jsonl"],
                runner=runner,
                writer=writer,
                preparer=preparer,
                batch_size=args.batch_size,
                checkpoint_path=home / f"{family}.checkpoint.json",
                rejects_path=home / f"{family}.rejects.jsonl",
                resume=False,
                writers=args.writers,
            )
            seconds = time.perf_counter() - started
            loaded[family] = {
                "rows": summary.rows_read,
                "written": summary.written,
                "rejected": summary.rejected,
                "seconds": seconds,
                "per_s": summary.rows_read / seconds if seconds else 0.0,
            }
            console.print(
                f"loaded {summary.rows_read:,} {family} events in {seconds:.0f} s "
                f"({loaded[family]['per_s']:,.0f}/s, {summary.rejected:,} rejected)"
            )
    return loaded


def _subscriber_count(settings: Settings) -> int:
    with create_driver(settings.neo4j) as driver:
        rows = Neo4jRunner(driver).read("MATCH (s:Subscriber) RETURN count(s) AS n")
    return int(rows[0]["n"])


def _simulation(home: Path, sim: SimulationConfig) -> tuple[dict[str, int], float]:
    """Empty the home but for the simulated files when they are of this very simulation.

    The simulator is seeded, so files recorded with the same configuration are the ones it would
    write again; at 100,000 subscribers that saves several minutes and 3.5 GB of writing.
    Returns the files' row counts and the seconds simulating took (when it was run).
    """
    if home.exists() and any(home.iterdir()) and not (home / "simulation").exists():
        raise SystemExit(f"{home} is not empty and was not made by this bench; choose --home")
    data = home / "simulation"
    record_path = data / SIMULATION_RECORD
    record = json.loads(record_path.read_text()) if record_path.exists() else None
    if record and record["simulation"] == sim.model_dump(mode="json"):
        for path in home.iterdir():
            if path != data:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        console.print(f"reusing the simulated files in {data}")
        return record["counts"], record["seconds"]
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    started = time.perf_counter()
    counts = simulate_to_directory(sim, data)
    seconds = time.perf_counter() - started
    record = {"simulation": sim.model_dump(mode="json"), "counts": counts, "seconds": seconds}
    record_path.write_text(json.dumps(record) + "\n")
    console.print(f"simulated {counts} in {seconds:.0f} s")
    return counts, seconds


# ------------------------------------------------------------------------------- baselines


class UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, node: str) -> str:
        root = node
        while self.parent.setdefault(root, root) != root:
            root = self.parent[root]
        while self.parent[node] != root:
            self.parent[node], node = root, self.parent[node]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[ra] = rb


_RULE_LINKS: LiteralString = """
MATCH (s:Subscriber)-[r:USES_DEVICE|HAS_ADDRESS|PAYS_WITH|HAS_PHONE|HAS_EMAIL]->(i)
WHERE coalesce(i.hub, false) = false
RETURN s.id AS subscriber, type(r) AS type, elementId(i) AS identifier
"""


def rule_scores(runner: Neo4jRunner) -> tuple[dict[str, float], dict[str, Any]]:
    """Baseline (a): shared-identifier components of 3 or more, scored by summed weight."""
    holders: dict[str, set[str]] = defaultdict(set)
    kind: dict[str, str] = {}
    for row in runner.read(_RULE_LINKS):
        holders[row["identifier"]].add(row["subscriber"])
        kind[row["identifier"]] = row["type"]
    shared = {ident: subs for ident, subs in holders.items() if len(subs) > 1}
    components = UnionFind()
    for subscribers in shared.values():
        first, *rest = sorted(subscribers)
        components.find(first)
        for other in rest:
            components.union(first, other)
    members: dict[str, list[str]] = defaultdict(list)
    for subscriber in list(components.parent):
        members[components.find(subscriber)].append(subscriber)
    weight: dict[str, float] = defaultdict(float)
    for ident, subscribers in shared.items():
        weight[components.find(next(iter(subscribers)))] += RULE_WEIGHTS[kind[ident]]
    rings = {root: subs for root, subs in members.items() if len(subs) >= RULE_MIN_COMPONENT}
    top = max((weight[root] for root in rings), default=1.0)
    # Rounded: sums of the same weights added in another order (the store's read order) must
    # tie exactly, or average precision would break the ties differently from run to run.
    scores = {sub: round(weight[root] / top, 9) for root, subs in rings.items() for sub in subs}
    detail = {
        "shared_identifiers": len(shared),
        "components": len(members),
        "components_of_3_or_more": len(rings),
        "largest_component": max((len(s) for s in members.values()), default=0),
        "flagged_subscribers": len(scores),
    }
    return scores, detail


_BUCKET_FEATURES: LiteralString = """
MATCH (b:UsageBucket) WHERE b.grain = 'day'
WITH b.subscriber_id AS id, count(b) AS active_days, sum(b.count) AS transactions,
     sum(b.spend) AS spend, sum(b.topup) AS topup, sum(b.data_mb) AS data_mb,
     sum(b.calls) AS calls, sum(b.short_calls) AS short_calls,
     sum(b.night_calls) AS night_calls, sum(b.call_s) AS call_s, sum(b.sms) AS sms,
     max(b.count) AS max_day_transactions, max(b.spend) AS max_day_spend,
     max(b.data_mb) AS max_day_data_mb, max(b.calls) AS max_day_calls,
     max(b.sms) AS max_day_sms
RETURN *
"""


def bucket_features(runner: Neo4jRunner) -> dict[str, dict[str, float]]:
    """Per-subscriber usage aggregates over the whole period, from the day buckets."""
    features: dict[str, dict[str, float]] = {}
    for row in runner.read(_BUCKET_FEATURES):
        days = max(1, int(row["active_days"]))
        calls = float(row["calls"] or 0)

        def per_day(name: str, row: Mapping[str, Any] = row, days: int = days) -> float:
            return float(row[name] or 0) / days

        features[str(row["id"])] = {
            "active_days": float(row["active_days"]),
            "transactions_per_day": per_day("transactions"),
            "spend_per_day": per_day("spend"),
            "topup_per_day": per_day("topup"),
            "data_mb_per_day": per_day("data_mb"),
            "calls_per_day": per_day("calls"),
            "sms_per_day": per_day("sms"),
            "max_day_transactions": float(row["max_day_transactions"] or 0),
            "max_day_spend": float(row["max_day_spend"] or 0),
            "max_day_data_mb": float(row["max_day_data_mb"] or 0),
            "max_day_calls": float(row["max_day_calls"] or 0),
            "max_day_sms": float(row["max_day_sms"] or 0),
            "spend_spike": float(row["max_day_spend"] or 0) / max(1.0, per_day("spend")),
            "data_spike": float(row["max_day_data_mb"] or 0) / max(1.0, per_day("data_mb")),
            "short_call_ratio": float(row["short_calls"] or 0) / calls if calls else 0.0,
            "night_call_ratio": float(row["night_calls"] or 0) / calls if calls else 0.0,
            "mean_call_s": float(row["call_s"] or 0) / calls if calls else 0.0,
        }
    return features


def forest_scores(
    features: Mapping[str, Mapping[str, float]], ids: Sequence[str]
) -> tuple[dict[str, float], dict[str, bool]]:
    """Baseline (b): IsolationForest over every subscriber (no labels), scored by anomaly."""
    names = sorted({name for row in features.values() for name in row})
    # Heavy tails (spend, data) would leave most random splits in the empty upper range.
    matrix = np.array(
        [[math.log1p(max(0.0, features.get(sid, {}).get(n, 0.0))) for n in names] for sid in ids]
    )
    forest = IsolationForest(n_estimators=200, random_state=FOREST_SEED, contamination="auto")
    forest.fit(matrix)
    anomaly = -forest.score_samples(matrix)  # higher is more anomalous, in (0, 1]
    flagged = forest.predict(matrix) == -1
    return (
        {sid: float(a) for sid, a in zip(ids, anomaly, strict=True)},
        {sid: bool(f) for sid, f in zip(ids, flagged, strict=True)},
    )


# ------------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class Metrics:
    positives: int
    negatives: int
    flagged: int
    precision: float
    recall: float
    pr_auc: float

    def row(self) -> dict[str, float]:
        return {
            "positives": self.positives,
            "negatives": self.negatives,
            "flagged": self.flagged,
            "precision": self.precision,
            "recall": self.recall,
            "pr_auc": self.pr_auc,
        }


def evaluate(
    cases: Iterable[tuple[bool, float, bool]],
) -> Metrics:
    """(is positive, score, flagged) per subscriber -> precision/recall at the flag, PR-AUC."""
    truth: list[int] = []
    scores: list[float] = []
    flags: list[bool] = []
    for positive, score, flag in cases:
        truth.append(int(positive))
        scores.append(score)
        flags.append(flag)
    positives = sum(truth)
    true_flags = sum(1 for t, f in zip(truth, flags, strict=True) if t and f)
    flagged = sum(flags)
    return Metrics(
        positives=positives,
        negatives=len(truth) - positives,
        flagged=flagged,
        precision=true_flags / flagged if flagged else 0.0,
        recall=true_flags / positives if positives else 0.0,
        pr_auc=float(average_precision_score(truth, scores)) if positives else math.nan,
    )


Scorer = tuple[Mapping[str, float], Callable[[str], bool]]


def evaluation_cases(
    truth: Sequence[GroundTruth],
    labelled: set[str],
    *,
    include: Container[str] | None = None,
    subsets: Mapping[str, Container[str]] | None = None,
) -> dict[str, list[tuple[str, bool]]]:
    """(subscriber, is positive) per evaluation group: overall, each of `subsets` (an overall
    row restricted to the subscribers it contains) and each fraud pattern (its subscribers
    against legitimate ones; a pattern the population lacks has no group). Only unlabelled
    subscribers, and only those in `include` when given."""
    present = {t.pattern for t in truth}
    unlabelled = [
        t
        for t in truth
        if t.subscriber_id not in labelled and (include is None or t.subscriber_id in include)
    ]

    def positive_of(group: str, t: GroundTruth) -> bool | None:
        """Positive, negative, or None: not part of this group's evaluation."""
        if group == "overall":
            return t.is_fraud
        if subsets and group in subsets:
            return t.is_fraud if t.subscriber_id in subsets[group] else None
        if t.pattern == group:
            return True
        return False if t.pattern == LEGITIMATE else None

    cases: dict[str, list[tuple[str, bool]]] = {}
    patterns = [pattern for pattern in FRAUD_PATTERNS if pattern in present]
    for group in ("overall", *(subsets or {}), *patterns):
        cases[group] = []
        for t in unlabelled:
            positive = positive_of(group, t)
            if positive is not None:
                cases[group].append((t.subscriber_id, positive))
    return cases


def evaluate_all(
    truth: Sequence[GroundTruth],
    labelled: set[str],
    scorers: Mapping[str, Scorer],
    *,
    include: Container[str] | None = None,
    subsets: Mapping[str, Container[str]] | None = None,
) -> dict[str, dict[str, Metrics]]:
    """Metrics per scorer on each group of `evaluation_cases`."""
    results: dict[str, dict[str, Metrics]] = {}
    groups = evaluation_cases(truth, labelled, include=include, subsets=subsets)
    for group, members in groups.items():
        results[group] = {
            name: evaluate(
                (positive, scores.get(sid, 0.0), flagged(sid)) for sid, positive in members
            )
            for name, (scores, flagged) in scorers.items()
        }
    return results


# ---------------------------------------------------------------------------------- running


def _analyse(
    settings: Settings, stack: StackConfig, days: int
) -> tuple[float, list[dict[str, Any]], Any]:
    with create_driver(settings.neo4j) as driver:
        gds = GraphDataScience(stack.neo4j_bolt_uri, auth=None)
        try:
            started = time.perf_counter()
            report = analyze(driver, gds, settings, as_of=None, lookback_days=days, publish=False)
            seconds = time.perf_counter() - started
        finally:
            gds.close()
    steps = [{"name": s.name, "seconds": s.seconds, "detail": s.detail} for s in report.steps]
    steps += [
        {"name": f"GDS: {s.name}", "seconds": s.seconds, "detail": s.detail}
        for s in report.pipeline.steps
    ]
    return seconds, steps, report


_SCORES: LiteralString = """
MATCH (s:Subscriber)
RETURN s.id AS id, s.label AS label, s.risk AS risk, s.decision AS decision,
       s.usage_risk AS usage_risk, s.graph_risk AS graph_risk, s.risk_model AS model,
       s.gnn_risk AS gnn_risk, s.component_id AS component_id
"""


def run(args: argparse.Namespace) -> dict[str, Any]:
    sim = SimulationConfig(
        subscribers=args.subscribers,
        months=args.months,
        seed=args.seed,
        transactions_per_day=args.transactions_per_day,
        fraud=FraudRates(camouflaged_ring=args.camouflaged_rings),
    )
    home: Path = args.home
    stack = stack_on_free_ports(home / "stack").model_copy(
        update={
            "neo4j_heap": args.heap,
            "neo4j_pagecache": args.pagecache,
            # A busy shared machine can take minutes to start a server.
            "start_timeout_s": 900.0,
        }
    )
    base = Settings()
    settings = Settings(
        neo4j=Neo4jConfig(uri=stack.neo4j_bolt_uri),
        scoring=base.scoring,
        ingest=base.ingest,
        stack=stack,
        # The bench's own (empty) models directory: a GNN promoted on this machine must not
        # enter the merged risk being measured.
        models=base.models.model_copy(update={"dir": home / "models"}),
    )
    marker = home / MARKER
    previous = json.loads(marker.read_text()) if marker.exists() else None
    # Validated, so a record written before a config field existed takes that field's default.
    reuse = bool(
        args.reuse and previous and SimulationConfig.model_validate(previous["simulation"]) == sim
    )
    if args.runs == 0 and not reuse:
        raise SystemExit("--runs 0 reads the scores of an earlier analysis: it needs --reuse")
    data = home / "simulation"
    if not reuse:
        manager.down(stack)
        counts, simulate_s = _simulation(home, sim)
    heldout_wanted = args.protocol in ("heldout", "both")
    exported: Any = None
    export_s = 0.0
    manager.up(stack)
    try:
        if reuse:
            assert previous is not None
            if _subscriber_count(settings) != previous["subscribers"]:
                raise SystemExit(
                    "the database does not hold the recorded load; run without --reuse"
                )
            console.print(f"reusing the loaded simulation in {home}")
            load = previous
        else:
            loaded = _load(stack, settings, data, home, args)
            load = {
                "simulation": sim.model_dump(mode="json"),
                "simulate_s": simulate_s,
                "events": counts,
                "load_mode": args.load,
                "loaded": loaded,
                "subscribers": _subscriber_count(settings),
            }
            marker.write_text(json.dumps(load, indent=2) + "\n")
        truth = read_ground_truth(data / GROUND_TRUTH_FILE)
        ids = [t.subscriber_id for t in truth]

        analyses: list[dict[str, Any]] = []
        for number in range(args.runs):
            seconds, steps, report = _analyse(settings, stack, sim.days)
            console.print(
                f"analysis run {number + 1}: {seconds:.1f} s (model {report.scoring.model})"
            )
            analyses.append({"seconds": seconds, "steps": steps, "model": report.scoring.model})

        with create_driver(settings.neo4j) as driver:
            runner = Neo4jRunner(driver)
            rows = {str(r["id"]): r for r in runner.read(_SCORES)}
            started = time.perf_counter()
            rule, rule_detail = rule_scores(runner)
            rule_s = time.perf_counter() - started
            started = time.perf_counter()
            features = bucket_features(runner)
            forest, forest_flags = forest_scores(features, ids)
            forest_s = time.perf_counter() - started
            if heldout_wanted:
                from ringwatch.graph.gnn_export import export_graph

                started = time.perf_counter()
                exported = export_graph(runner)
                export_s = time.perf_counter() - started
                console.print(f"exported the graph for the models in {export_s:.1f} s")
    finally:
        if not args.keep_running:
            manager.down(stack)

    labelled = {sid for sid, row in rows.items() if row["label"] is not None}
    review = settings.scoring.decision_review

    def risk_of(name: str) -> dict[str, float]:
        return {sid: float(row[name] or 0.0) for sid, row in rows.items()}

    merged = risk_of("risk")
    scorers: dict[str, Scorer] = {
        "rule": (rule, lambda sid: sid in rule),
        "forest": (forest, lambda sid: forest_flags.get(sid, False)),
        "merged": (merged, lambda sid: merged.get(sid, 0.0) >= review),
    }
    unscored = sum(1 for sid in ids if rows.get(sid, {}).get("risk") is None)
    result: dict[str, Any] = {
        "command": args.command,
        "protocol": args.protocol,
        "simulation": sim.model_dump(mode="json"),
        "load": load,
        "reused_load": reuse,
        "neo4j_heap": args.heap,
        "neo4j_pagecache": args.pagecache,
        "scoring": settings.scoring.model_dump(mode="json", exclude={"pii_hmac_key"}),
        "analysis": analyses,
        "analysis_median_s": median([a["seconds"] for a in analyses]) if analyses else None,
        "gnn_in_merged_risk": sum(1 for row in rows.values() if row["gnn_risk"] is not None),
        "baseline_seconds": {"rule": rule_s, "forest": forest_s},
        "rule": rule_detail,
        "forest": {
            "feature_source": "UsageBucket day aggregates (Cypher)",
            "features": sorted({n for row in features.values() for n in row}),
            "n_estimators": 200,
            "random_state": FOREST_SEED,
            "threshold": "predict() == -1 (contamination 'auto')",
        },
        "review_threshold": review,
        "subscribers": len(ids),
        "labelled_excluded": len(labelled & set(ids)),
        "unscored_by_ringwatch": unscored,
        "protocols": _protocols(),
    }
    if args.protocol in ("unlabelled", "both"):
        # ringwatch's own parts, for the record (flag at the same REVIEW threshold).
        usage, graph = risk_of("usage_risk"), risk_of("graph_risk")
        parts: dict[str, Scorer] = {
            "usage_risk": (usage, lambda sid: usage.get(sid, 0.0) >= review),
            "graph_risk": (graph, lambda sid: graph.get(sid, 0.0) >= review),
        }
        metrics = evaluate_all(truth, labelled, scorers)
        part_metrics = evaluate_all(truth, labelled, parts)
        result["metrics"] = {g: {s: m.row() for s, m in by.items()} for g, by in metrics.items()}
        result["ringwatch_parts"] = {
            g: {s: m.row() for s, m in by.items()} for g, by in part_metrics.items()
        }
    if heldout_wanted:
        result["heldout"] = heldout(args, exported, truth, rows, labelled, scorers, review)
        result["heldout"]["export_s"] = export_s
    return result


def _protocols() -> dict[str, str]:
    """The protocol paragraphs of this module's docstring, by name."""
    out = {}
    for paragraph in (__doc__ or "").split("\n\n"):
        if paragraph.startswith("Protocol "):
            name = paragraph.split('"', 2)[1]
            out[name] = " ".join(paragraph.split())
    return out


# ---------------------------------------------------------------------------- held-out rings

NO_LABELLED_MATE = "overall, no labelled fraud in its group"


def heldout(
    args: argparse.Namespace,
    exported: Any,
    truth: Sequence[GroundTruth],
    rows: Mapping[str, Mapping[str, Any]],
    labelled: set[str],
    baselines: Mapping[str, Scorer],
    review: float,
) -> dict[str, Any]:
    """Protocol "heldout": (d) and (e) trained per rotation of whole-component folds, every
    scorer evaluated on the test folds' unlabelled subscribers."""
    from bench.heldout import (
        HeldOutScores,
        Rotation,
        assign_folds,
        bootstrap_differences,
        component_groups,
        mean_interval,
        train_gnn,
        train_tabular,
    )
    from ringwatch.graph.gnn_export import SUBSCRIBER, SUBSCRIBER_FEATURES

    kinds: list[str] = list(args.gnn_models)
    ids: list[str] = list(exported.subscriber_ids)
    truth_of = {t.subscriber_id: t for t in truth}
    y = np.array([int(truth_of[sid].is_fraud) for sid in ids], dtype=np.int64)
    groups = component_groups(
        ids,
        {sid: rows[sid]["component_id"] for sid in ids},
        {sid: truth_of[sid].ring_id for sid in ids},
    )
    fold_of = assign_folds(groups, y, args.folds, args.split_seed)
    x = exported.data[SUBSCRIBER].x.numpy().astype(np.float64)
    shared_ip = _ip_neighbours(exported)

    names = ("tabular", *kinds, "gnn")
    probability: dict[str, dict[str, float]] = {name: {} for name in names}
    ranking: dict[str, dict[str, float]] = {name: {} for name in names}
    rotations: list[dict[str, Any]] = []
    evaluated: set[str] = set()
    for number in range(args.rotations):
        rotation = Rotation.of(fold_of, number, args.folds)
        test_ids = [ids[i] for i in np.flatnonzero(rotation.test)]
        trained: dict[str, HeldOutScores] = {
            "tabular": train_tabular(x, y, rotation, seed=args.model_seed)
        }
        for kind in kinds:
            trained[kind] = train_gnn(
                exported.data, SUBSCRIBER, y, rotation, kind=kind, seed=args.model_seed,
                epochs=args.epochs,
            )  # fmt: skip
        # What `ringwatch train` compares: validation PR-AUC of the calibrated scores.
        picked = max(kinds, key=lambda k: _or_minus_one(trained[k].detail["calibrated_val_pr_auc"]))
        trained["gnn"] = trained[picked]
        for name, scores in trained.items():
            probability[name].update(zip(test_ids, scores.probability.tolist(), strict=True))
            ranking[name].update(zip(test_ids, scores.ranking.tolist(), strict=True))
        evaluated.update(test_ids)
        test_index = np.flatnonzero(rotation.test)
        train_index = set(np.flatnonzero(rotation.train).tolist())
        linked = [i for i in test_index if shared_ip.get(int(i), set()) & train_index]
        rotations.append(
            {
                "rotation": number,
                "test_fold": number,
                "validation_fold": (number + 1) % args.folds,
                "sizes": rotation.sizes(y),
                "picked": picked,
                "models": {
                    name: {"val_pr_auc": scores.val_pr_auc, **scores.detail}
                    for name, scores in trained.items()
                    if name != "gnn"
                },
                "test_sharing_an_ip_with_training": len(linked),
                "test_fraud_sharing_an_ip_with_training": int(y[linked].sum()) if linked else 0,
            }
        )
        console.print(
            f"rotation {number + 1}/{args.rotations}: "
            + ", ".join(
                f"{name} val PR-AUC {scores.val_pr_auc:.3f}"
                for name, scores in trained.items()
                if name != "gnn"
            )
            + f"; picked {picked}"
        )

    # PR-AUC of the models on their Platt log-odds (their own ranking, see `HeldOutScores`),
    # flags on the probability ringwatch would serve.
    scorers: dict[str, Scorer] = dict(baselines)
    served: dict[str, Scorer] = {}
    for name in names:
        flag = _at_least(probability[name], review)
        scorers[name] = (ranking[name], flag)
        served[name] = (probability[name], flag)
    fraud_groups = {int(groups[i]) for i, sid in enumerate(ids) if rows[sid]["label"] == "fraud"}
    no_mate = {sid for i, sid in enumerate(ids) if int(groups[i]) not in fraud_groups}
    metrics = evaluate_all(
        truth, labelled, scorers, include=evaluated, subsets={NO_LABELLED_MATE: no_mate}
    )
    served_metrics = evaluate_all(
        truth, labelled, served, include=evaluated, subsets={NO_LABELLED_MATE: no_mate}
    )
    # Per rotation (each test fold alone, one model each): no pooling of scores across models.
    per_rotation: dict[str, dict[str, list[float]]] = {}
    for number in range(args.rotations):
        fold = {ids[i] for i in np.flatnonzero(fold_of == number)}
        by_group = evaluate_all(
            truth, labelled, scorers, include=fold, subsets={NO_LABELLED_MATE: no_mate}
        )
        for group, by in by_group.items():
            for name, m in by.items():
                per_rotation.setdefault(group, {}).setdefault(name, []).append(m.pr_auc)
    # Cluster-bootstrap intervals of the per-rotation mean PR-AUC difference of each GNN
    # against (c) and (d): each rotation's test fold is resampled by whole groups.
    pairs = [(g, other) for g in (*kinds, "gnn") for other in ("merged", "tabular")]
    group_of = {sid: int(groups[i]) for i, sid in enumerate(ids)}
    draws: dict[str, dict[tuple[str, str], list[np.ndarray]]] = {}
    started = time.perf_counter()
    for number in range(args.rotations):
        fold = {ids[i] for i in np.flatnonzero(fold_of == number)}
        cases = evaluation_cases(truth, labelled, include=fold, subsets={NO_LABELLED_MATE: no_mate})
        for group, members in cases.items():
            labels = np.array([positive for _, positive in members], dtype=bool)
            arrays = {
                name: np.array([scorers[name][0].get(sid, 0.0) for sid, _ in members])
                for name in {n for pair in pairs for n in pair}
            }
            found = bootstrap_differences(
                labels,
                np.array([group_of[sid] for sid, _ in members]),
                arrays,
                pairs,
                draws=args.bootstrap,
                seed=args.split_seed + number,
            )
            for pair, values in found.items():
                draws.setdefault(group, {}).setdefault(pair, []).append(values)
    intervals = {
        group: {f"{a}-{b}": list(mean_interval(by[(a, b)])) for a, b in pairs}
        for group, by in draws.items()
    }
    bootstrap_s = time.perf_counter() - started
    group_sizes = np.bincount(groups)
    return {
        "folds": args.folds,
        "rotations_run": args.rotations,
        "split_seed": args.split_seed,
        "model_seed": args.model_seed,
        "gnn_models": kinds,
        "epochs": args.epochs,
        "features": list(SUBSCRIBER_FEATURES),
        "groups": int(group_sizes.size),
        "largest_group": int(group_sizes.max()),
        "fold_sizes": {
            str(f): {"subscribers": int((fold_of == f).sum()), "fraud": int(y[fold_of == f].sum())}
            for f in range(args.folds)
        },
        "evaluated_subscribers": len(evaluated),
        "evaluated_unlabelled": len(evaluated - labelled),
        "no_labelled_mate_unlabelled": len((no_mate & evaluated) - labelled),
        "flag": f"calibrated probability >= {review} (REVIEW) for the models",
        "model_pr_auc_on": "Platt log-odds of the raw score, fitted on validation (ranking)",
        "rotations": rotations,
        "metrics": {g: {s: m.row() for s, m in by.items()} for g, by in metrics.items()},
        "served_probability_pr_auc": {
            g: {s: m.pr_auc for s, m in by.items()} for g, by in served_metrics.items()
        },
        "pr_auc_per_rotation": per_rotation,
        "bootstrap": {"draws": args.bootstrap, "seconds": bootstrap_s, "intervals": intervals},
        "scores": {
            sid: {
                "fold": int(fold_of[i]),
                "group": int(groups[i]),
                "pattern": truth_of[sid].pattern,
                "label": rows[sid]["label"],
                **{name: scorers[name][0].get(sid) for name in scorers},
                **{f"{name}_served": probability[name].get(sid) for name in names},
            }
            for i, sid in enumerate(ids)
        },
    }


def _at_least(scores: Mapping[str, float], threshold: float) -> Callable[[str], bool]:
    return lambda sid: scores.get(sid, 0.0) >= threshold


def _or_minus_one(value: float | None) -> float:
    return -1.0 if value is None or math.isnan(value) else value


def _ip_neighbours(exported: Any) -> dict[int, set[int]]:
    """Subscribers sharing a non-hub IP with each subscriber (the split ignores IPs, as
    ringwatch's components do: households and offices share routers)."""
    from ringwatch.graph.gnn_export import SUBSCRIBER

    data = exported.data
    edge_index = data[SUBSCRIBER, "USES_IP", "IP"].edge_index.numpy()
    hub = data["IP"].hub.numpy()
    users: dict[int, list[int]] = defaultdict(list)
    for sub, ip in zip(edge_index[0].tolist(), edge_index[1].tolist(), strict=True):
        if not hub[ip]:
            users[ip].append(sub)
    out: dict[int, set[int]] = defaultdict(set)
    for subs in users.values():
        if len(subs) > 1:
            for sub in subs:
                out[sub].update(s for s in subs if s != sub)
    return out


# --------------------------------------------------------------------------------- printing


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"


def _verdicts(metrics: Mapping[str, Mapping[str, Mapping[str, float]]]) -> dict[str, str]:
    verdicts = {}
    for group, by in metrics.items():
        merged = by["merged"]["pr_auc"]
        lost = [
            SCORER_TITLES[s].split(" ", 1)[0]
            for s in ("rule", "forest")
            if not merged > by[s]["pr_auc"]
        ]
        verdicts[group] = "yes" if not lost else f"no: {' '.join(lost)} ≥"
    return verdicts


def _gnn_verdicts(intervals: Mapping[str, Mapping[str, Sequence[float]]]) -> dict[str, str]:
    """The GNN `ringwatch train` would keep against the merged risk (c) and the tabular model
    (d): better or worse when the bootstrap interval of the difference excludes 0, else ≈."""
    verdicts = {}
    for group, by in intervals.items():
        words = []
        for other in ("merged", "tabular"):
            low, high = by[f"gnn-{other}"]
            word = "better" if low > 0 else "worse" if high < 0 else "≈"
            words.append(f"{HELDOUT_TITLES[other].split(' ', 1)[0]} {word}")
        verdicts[group] = ", ".join(words)
    return verdicts


def _mean(values: Sequence[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return statistics.mean(kept) if kept else math.nan


def _cells(by: Mapping[str, Mapping[str, float]], scorers: Sequence[str], bold: str) -> list[str]:
    return [
        f"{_fmt(by[s]['precision'])} / {_fmt(by[s]['recall'])} / "
        + bold.format(_fmt(by[s]["pr_auc"]))
        for s in scorers
    ]


def print_results(result: Mapping[str, Any]) -> None:
    """The "unlabelled" protocol's table: (a)-(c) on every unlabelled subscriber."""
    metrics = result["metrics"]
    verdicts = _verdicts(metrics)
    table = Table(title="Detection quality on unlabelled subscribers (P / R at flag, PR-AUC)")
    table.add_column("pattern")
    table.add_column("pos", justify="right")
    for scorer in SCORERS:
        table.add_column(SCORER_TITLES[scorer], justify="right")
    table.add_column("merged beats both")
    for group, by in metrics.items():
        cells = _cells(by, SCORERS, "[bold]{}[/]")
        table.add_row(group, f"{by['merged']['positives']:,}", *cells, verdicts[group])
    console.print(table)
    parts = result["ringwatch_parts"]
    console.print(
        "ringwatch's parts, PR-AUC overall: usage_risk "
        f"{_fmt(parts['overall']['usage_risk']['pr_auc'])}, graph_risk "
        f"{_fmt(parts['overall']['graph_risk']['pr_auc'])}"
    )
    console.print("\nMarkdown:\n")
    header = "| Pattern | Positives | " + " | ".join(SCORER_TITLES[s] for s in SCORERS)
    print(header + " | Merged beats both |")
    print("|---|---|" + "---|" * len(SCORERS) + "---|")
    for group, by in metrics.items():
        cells = _cells(by, SCORERS, "**{}**")
        print(
            f"| {group} | {by['merged']['positives']:,} | {' | '.join(cells)} | {verdicts[group]} |"
        )


def _mean_sd(values: Sequence[float]) -> str:
    kept = [v for v in values if not math.isnan(v)]
    if not kept:
        return "n/a"
    sd = statistics.stdev(kept) if len(kept) > 1 else 0.0
    return f"{statistics.mean(kept):.3f} ± {sd:.3f}"


def _rotation_wins(by: Mapping[str, Sequence[float]], other: str) -> str:
    """Rotations in which the picked GNN's PR-AUC is above / equal to / below `other`'s."""
    pairs = [(g, o) for g, o in zip(by["gnn"], by[other], strict=True)
             if not (math.isnan(g) or math.isnan(o))]  # fmt: skip
    better = sum(1 for g, o in pairs if g > o)
    worse = sum(1 for g, o in pairs if g < o)
    return f"{better}/{len(pairs) - better - worse}/{worse}"


def print_heldout(result: Mapping[str, Any]) -> None:
    """The "heldout" protocol's tables: (a)-(e) on the test folds' unlabelled subscribers."""
    held = result["heldout"]
    metrics = held["metrics"]
    per_rotation = held["pr_auc_per_rotation"]
    scorers = [s for s in HELDOUT_SCORERS if s in metrics["overall"]]
    verdicts = _gnn_verdicts(held["bootstrap"]["intervals"])
    table = Table(title="Held-out rings: PR-AUC per rotation (mean over the test folds)")
    table.add_column("pattern")
    table.add_column("pos", justify="right")
    for scorer in scorers:
        table.add_column(HELDOUT_TITLES[scorer], justify="right")
    table.add_column("as picked vs (c), (d)")
    for group, by in per_rotation.items():
        cells = [_fmt(_mean(by[s])) for s in scorers]
        positives = metrics[group]["merged"]["positives"]
        table.add_row(group, f"{positives:,}", *cells, verdicts[group])
    console.print(table)
    picked = [r["picked"] for r in held["rotations"]]
    console.print(f"picked per rotation: {', '.join(picked)}")

    console.print("\nMarkdown (PR-AUC per rotation, mean ± standard deviation):\n")
    print("| Pattern | Positives | " + " | ".join(HELDOUT_TITLES[s] for s in scorers)
          + " | As picked against (c), (d) | Rotations better/equal/worse |")  # fmt: skip
    print("|---|---|" + "---|" * len(scorers) + "---|---|")
    for group, by in per_rotation.items():
        positives = metrics[group]["merged"]["positives"]
        cells = [_mean_sd(by[s]) for s in scorers]
        wins = f"(c) {_rotation_wins(by, 'merged')}, (d) {_rotation_wins(by, 'tabular')}"
        print(f"| {group} | {positives:,} | {' | '.join(cells)} | {verdicts[group]} | {wins} |")
    intervals = held["bootstrap"]["intervals"]
    pairs = list(next(iter(intervals.values())))
    console.print(
        "\nMarkdown (difference of the per-rotation mean PR-AUC, 95 % cluster-bootstrap "
        f"interval, {held['bootstrap']['draws']} draws per rotation):\n"
    )
    print("| Pattern | " + " | ".join(pairs) + " |")
    print("|---|" + "---|" * len(pairs))
    for group, by in intervals.items():
        cells = []
        for pair in pairs:
            a, b = pair.split("-")
            difference = _mean(per_rotation[group][a]) - _mean(per_rotation[group][b])
            low, high = by[pair]
            cells.append(f"{difference:+.3f} [{low:+.3f}, {high:+.3f}]")
        print(f"| {group} | {' | '.join(cells)} |")
    console.print("\nMarkdown (PR-AUC pooled over the test folds):\n")
    print("| Pattern | Positives | " + " | ".join(HELDOUT_TITLES[s] for s in scorers) + " |")
    print("|---|---|" + "---|" * len(scorers))
    for group, by in metrics.items():
        cells = [_fmt(by[s]["pr_auc"]) for s in scorers]
        print(f"| {group} | {by['merged']['positives']:,} | {' | '.join(cells)} |")
    served = held["served_probability_pr_auc"]
    models = [s for s in scorers if s in served["overall"]]
    console.print("\nMarkdown (PR-AUC pooled, of the served calibrated probability):\n")
    print("| Pattern | " + " | ".join(HELDOUT_TITLES[s] for s in models) + " |")
    print("|---|" + "---|" * len(models))
    for group, by in served.items():
        print(f"| {group} | {' | '.join(_fmt(by[s]) for s in models)} |")
    console.print("\nMarkdown (precision / recall at each flag, pooled):\n")
    print("| Pattern | " + " | ".join(HELDOUT_TITLES[s] for s in scorers) + " |")
    print("|---|" + "---|" * len(scorers))
    for group, by in metrics.items():
        cells = [f"{_fmt(by[s]['precision'])} / {_fmt(by[s]['recall'])}" for s in scorers]
        print(f"| {group} | {' | '.join(cells)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--months", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--transactions-per-day", type=float, default=1.0)
    parser.add_argument(
        "--camouflaged-rings",
        type=float,
        default=0.01,
        help="Share of subscribers in camouflaged rings (the simulator's default is 0; "
        "0 reproduces the populations measured before the pattern existed).",
    )
    parser.add_argument("--runs", type=int, default=1, help="Analysis runs (median time).")
    parser.add_argument(
        "--home",
        type=Path,
        default=Path(tempfile.gettempdir()) / "ringwatch-bench-quality",
        help="Stack, simulated files and load record live here.",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="Skip simulating and loading when --home already holds this simulation.",
    )
    parser.add_argument(
        "--keep-running", action="store_true", help="Leave the stack up afterwards."
    )
    parser.add_argument("--heap", default="3g")
    parser.add_argument("--pagecache", default="2g")
    parser.add_argument(
        "--load",
        choices=("offline", "online"),
        default="offline",
        help="offline (default): identities and transactions through the offline import, "
        "labels online; online: every family through the online backfill.",
    )
    parser.add_argument("--writers", type=int, default=2, help="Backfill writer threads.")
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument(
        "--protocol",
        choices=("both", "unlabelled", "heldout"),
        default="both",
        help="unlabelled: (a)-(c) on every unlabelled subscriber (the first published table); "
        "heldout: (a)-(e) on held-out folds of whole components; both (default).",
    )
    parser.add_argument("--folds", type=int, default=5, help="Folds of whole components.")
    parser.add_argument(
        "--rotations",
        type=int,
        default=None,
        help="Rotations to run (test fold k, validation fold k+1); default all folds. "
        "1 is a single 60/20/20 split with five folds.",
    )
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--model-seed", type=int, default=0)
    parser.add_argument(
        "--bootstrap", type=int, default=500, help="Cluster-bootstrap draws for the intervals."
    )
    parser.add_argument(
        "--epochs", type=int, default=None, help="GNN epoch cap (default: TrainConfig's)."
    )
    parser.add_argument(
        "--gnn-models",
        nargs="+",
        default=list(MODEL_KINDS),
        choices=MODEL_KINDS,
        help="Graph models trained per rotation (default: all that `ringwatch train` trains).",
    )
    args = parser.parse_args()
    if args.folds < 3:
        parser.error("--folds must be at least 3 (train, validation and test)")
    args.rotations = args.folds if args.rotations is None else args.rotations
    if not 1 <= args.rotations <= args.folds:
        parser.error("--rotations must be between 1 and --folds")
    args.command = "python -m bench.quality " + " ".join(
        f"--{k.replace('_', '-')} {v}"
        for k, v in (
            ("subscribers", args.subscribers),
            ("months", args.months),
            ("transactions_per_day", args.transactions_per_day),
            ("seed", args.seed),
            ("camouflaged_rings", args.camouflaged_rings),
        )
    )
    logging.getLogger("neo4j.notifications").setLevel(logging.ERROR)
    load_before = os.getloadavg()[0]
    result = run(args)
    result["load_average"] = {"before": load_before, "after": os.getloadavg()[0]}
    path = save("quality", result)
    hw = hardware()
    console.print(f"\nhardware: {hw['cpu']}, {hw['cores']} cores, {hw['memory']}")
    analysis = result["analysis_median_s"]
    console.print(
        f"{result['subscribers']:,} subscribers, {result['labelled_excluded']:,} labelled and "
        "excluded; analysis "
        + (f"{analysis:.0f} s (median of {len(result['analysis'])})" if analysis else "reused")
        + f"; IsolationForest features: {result['forest']['feature_source']}"
    )
    if "metrics" in result:
        print_results(result)
    if "heldout" in result:
        print_heldout(result)
    console.print(f"saved {path}")


if __name__ == "__main__":
    main()
