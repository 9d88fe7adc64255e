"""Detection quality on simulator ground truth: ringwatch's merged risk against two baselines.

A simulated population (`ringwatch.ingest.simulate`) is loaded into a private stack the way a
data engineer would backfill it (identities, then labels, then transactions), analysed with
`ringwatch.graph.analyze.analyze` over the whole simulated period, and three scorers are
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

Protocol: subscribers carrying a label (`Subscriber.label`, from the simulator's label events:
about 30 % of fraudsters, 2 % of legitimate subscribers) are known to the system and are left
out of the evaluation for every scorer. Per pattern, positives are the unlabelled subscribers of
that pattern and negatives the unlabelled legitimate subscribers (other patterns are left out);
overall, every unlabelled fraudster is positive. PR-AUC is scikit-learn's
average_precision_score of the raw score; precision and recall are at each scorer's flag.

Run: .venv/bin/python -m bench.quality [--subscribers 10000] [--months 2]
     [--transactions-per-day 1] [--seed 7] [--reuse]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
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
from ringwatch.graph.schema import migrate
from ringwatch.graph.writer import GraphWriter
from ringwatch.ingest.backfill import backfill
from ringwatch.ingest.prepare import Preparer
from ringwatch.ingest.simulate import (
    FRAUD_PATTERNS,
    GROUND_TRUTH_FILE,
    LEGITIMATE,
    GroundTruth,
    SimulationConfig,
    read_ground_truth,
    simulate_to_directory,
)
from ringwatch.stack import manager

console = Console()

MARKER = "quality-load.json"
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


# ---------------------------------------------------------------------------------- loading


def _load(
    stack: StackConfig, settings: Settings, data: Path, home: Path, writers: int, batch: int
) -> dict[str, dict[str, float]]:
    """Backfill the simulated files, family by family; returns rows and seconds per family."""
    loaded: dict[str, dict[str, float]] = {}
    with create_driver(settings.neo4j) as driver:
        runner = Neo4jRunner(driver)
        migrate(runner)
        writer = GraphWriter(runner, hub_cap=settings.scoring.hub_cap)
        preparer = Preparer(
            pii_hmac_key=settings.scoring.pii_hmac_key,
            default_region=settings.ingest.default_region,
        )
        for family in FAMILIES:
            started = time.perf_counter()
            summary = backfill(
                family,
                [data / f"{family}.jsonl"],
                runner=runner,
                writer=writer,
                preparer=preparer,
                batch_size=batch,
                checkpoint_path=home / f"{family}.checkpoint.json",
                rejects_path=home / f"{family}.rejects.jsonl",
                resume=False,
                writers=writers,
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


def _prepare_home(home: Path) -> None:
    """Start from an empty home; refuse to delete a directory this bench did not make."""
    if home.exists() and any(home.iterdir()) and not (home / "simulation").exists():
        raise SystemExit(f"{home} is not empty and was not made by this bench; choose --home")
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)


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
    scores = {sub: weight[root] / top for root, subs in rings.items() for sub in subs}
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


def evaluate_all(
    truth: Sequence[GroundTruth],
    labelled: set[str],
    scorers: Mapping[str, tuple[Mapping[str, float], Callable[[str], bool]]],
) -> dict[str, dict[str, Metrics]]:
    """Metrics per scorer, overall and per fraud pattern, on unlabelled subscribers only."""
    unlabelled = [t for t in truth if t.subscriber_id not in labelled]

    def positive_of(group: str, t: GroundTruth) -> bool | None:
        """Positive, negative, or None: not part of this group's evaluation."""
        if group == "overall":
            return t.is_fraud
        if t.pattern == group:
            return True
        return False if t.pattern == LEGITIMATE else None

    results: dict[str, dict[str, Metrics]] = {}
    for group in ("overall", *FRAUD_PATTERNS):
        results[group] = {}
        for name, (scores, flagged) in scorers.items():
            cases = []
            for t in unlabelled:
                positive = positive_of(group, t)
                if positive is not None:
                    sid = t.subscriber_id
                    cases.append((positive, scores.get(sid, 0.0), flagged(sid)))
            results[group][name] = evaluate(cases)
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
       s.usage_risk AS usage_risk, s.graph_risk AS graph_risk, s.risk_model AS model
"""


def run(args: argparse.Namespace) -> dict[str, Any]:
    sim = SimulationConfig(
        subscribers=args.subscribers,
        months=args.months,
        seed=args.seed,
        transactions_per_day=args.transactions_per_day,
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
    )
    marker = home / MARKER
    previous = json.loads(marker.read_text()) if marker.exists() else None
    reuse = bool(args.reuse and previous and previous["simulation"] == sim.model_dump(mode="json"))
    data = home / "simulation"
    if not reuse:
        manager.down(stack)
        _prepare_home(home)
        started = time.perf_counter()
        counts = simulate_to_directory(sim, data)
        simulate_s = time.perf_counter() - started
        console.print(f"simulated {counts} in {simulate_s:.0f} s")
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
            loaded = _load(stack, settings, data, home, args.writers, args.batch_size)
            load = {
                "simulation": sim.model_dump(mode="json"),
                "simulate_s": simulate_s,
                "events": counts,
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
    finally:
        if not args.keep_running:
            manager.down(stack)

    labelled = {sid for sid, row in rows.items() if row["label"] is not None}
    review = settings.scoring.decision_review

    def risk_of(name: str) -> dict[str, float]:
        return {sid: float(row[name] or 0.0) for sid, row in rows.items()}

    merged = risk_of("risk")
    scorers: dict[str, tuple[Mapping[str, float], Callable[[str], bool]]] = {
        "rule": (rule, lambda sid: sid in rule),
        "forest": (forest, lambda sid: forest_flags.get(sid, False)),
        "merged": (merged, lambda sid: merged.get(sid, 0.0) >= review),
    }
    # ringwatch's own parts, for the record (flag at the same REVIEW threshold).
    usage, graph = risk_of("usage_risk"), risk_of("graph_risk")
    parts: dict[str, tuple[Mapping[str, float], Callable[[str], bool]]] = {
        "usage_risk": (usage, lambda sid: usage.get(sid, 0.0) >= review),
        "graph_risk": (graph, lambda sid: graph.get(sid, 0.0) >= review),
    }
    metrics = evaluate_all(truth, labelled, scorers)
    part_metrics = evaluate_all(truth, labelled, parts)
    unscored = sum(1 for sid in ids if rows.get(sid, {}).get("risk") is None)
    return {
        "command": args.command,
        "simulation": sim.model_dump(mode="json"),
        "load": load,
        "reused_load": reuse,
        "neo4j_heap": args.heap,
        "neo4j_pagecache": args.pagecache,
        "scoring": settings.scoring.model_dump(mode="json", exclude={"pii_hmac_key"}),
        "analysis": analyses,
        "analysis_median_s": median([a["seconds"] for a in analyses]),
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
        "protocol": __doc__.split("Protocol: ", 1)[1].split("\n\nRun:", 1)[0].replace("\n", " ")
        if __doc__
        else "",
        "metrics": {g: {s: m.row() for s, m in by.items()} for g, by in metrics.items()},
        "ringwatch_parts": {
            g: {s: m.row() for s, m in by.items()} for g, by in part_metrics.items()
        },
    }


# --------------------------------------------------------------------------------- printing


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


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


def print_results(result: Mapping[str, Any]) -> None:
    metrics = result["metrics"]
    verdicts = _verdicts(metrics)
    table = Table(title="Detection quality on unlabelled subscribers (P / R at flag, PR-AUC)")
    table.add_column("pattern")
    table.add_column("pos", justify="right")
    for scorer in SCORERS:
        table.add_column(SCORER_TITLES[scorer], justify="right")
    table.add_column("merged beats both")
    for group, by in metrics.items():
        cells = [
            f"{_fmt(by[s]['precision'])} / {_fmt(by[s]['recall'])} / "
            f"[bold]{_fmt(by[s]['pr_auc'])}[/]"
            for s in SCORERS
        ]
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
        cells = [
            f"{_fmt(by[s]['precision'])} / {_fmt(by[s]['recall'])} / **{_fmt(by[s]['pr_auc'])}**"
            for s in SCORERS
        ]
        print(
            f"| {group} | {by['merged']['positives']:,} | {' | '.join(cells)} | {verdicts[group]} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--months", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--transactions-per-day", type=float, default=1.0)
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
    parser.add_argument("--writers", type=int, default=2, help="Backfill writer threads.")
    parser.add_argument("--batch-size", type=int, default=5000)
    args = parser.parse_args()
    args.command = "python -m bench.quality " + " ".join(
        f"--{k.replace('_', '-')} {v}"
        for k, v in (
            ("subscribers", args.subscribers),
            ("months", args.months),
            ("transactions_per_day", args.transactions_per_day),
            ("seed", args.seed),
        )
    )
    logging.getLogger("neo4j.notifications").setLevel(logging.ERROR)
    load_before = os.getloadavg()[0]
    result = run(args)
    result["load_average"] = {"before": load_before, "after": os.getloadavg()[0]}
    path = save("quality", result)
    hw = hardware()
    console.print(f"\nhardware: {hw['cpu']}, {hw['cores']} cores, {hw['memory']}")
    console.print(
        f"{result['subscribers']:,} subscribers, {result['labelled_excluded']:,} labelled and "
        f"excluded; analysis {result['analysis_median_s']:.0f} s (median of "
        f"{len(result['analysis'])}); IsolationForest features: "
        f"{result['forest']['feature_source']}"
    )
    print_results(result)
    console.print(f"saved {path}")


if __name__ == "__main__":
    main()
