"""The GNN loop on the live graph: train, evaluate, and score every subscriber in batches.

`train_from_graph` exports the identity graph (`gnn_export`), splits the labelled subscribers
into train / validation / test by connected component over non-hub identifiers (a ring's
members are all on one side, so test rings share no member with training rings), trains each
candidate model (`MODEL_KINDS`: the two GNNs and the boosted graph model), stores the best on
validation PR-AUC in the registry (with the others' metrics beside it) and promotes nothing:
promotion is a separate, gated step. With fewer labelled
subscribers of either class than `ModelsConfig.min_labels_per_class` it stores the unsupervised
anomaly fallback instead.

`score_subscribers` runs a stored model over every subscriber and writes ``gnn_risk``,
``gnn_reasons`` (one ``gnn.score`` reason naming the model and the strongest neighbour
evidence: the subscriber sharing one of its identifiers with the highest score or a confirmed
fraud label), ``gnn_model`` and ``gnn_scored_at``, in batches. The merged risk reads
``gnn_risk`` the next time it is computed: `ringwatch analyze` rescores with the promoted model
just before it (`score_if_promoted`), and `ringwatch models score` recomputes it afterwards.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, LiteralString

import numpy as np

from ringwatch.config import ModelsConfig, ScoringConfig
from ringwatch.graph.db import QueryRunner
from ringwatch.graph.gnn_export import (
    IDENTIFIER_COLUMNS,
    KIND_OF_RELATIONSHIP,
    SUBSCRIBER,
    ExportedGraph,
    edge_types,
    export_graph,
    feature_names,
    hub_masks,
)
from ringwatch.models.exceptions import ModelError
from ringwatch.models.registry import Manifest, ModelRegistry
from ringwatch.scoring import reasons as reason_codec
from ringwatch.scoring.graph import IDENTIFIER_NAMES, masked
from ringwatch.scoring.reasons import Reason

if TYPE_CHECKING:
    from ringwatch.models.config import TrainConfig

log = logging.getLogger(__name__)

WRITE_BATCH = 5_000
# Score batches written at once: one statement runs on one core of the server.
WRITERS = 2
MODEL_KINDS: tuple[str, ...] = ("sage", "camouflage", "boosted")

_WRITE_SCORES: LiteralString = """
UNWIND $rows AS row
MATCH (s:Subscriber {id: row.id})
SET s.gnn_risk = row.risk, s.gnn_reasons = row.reasons, s.gnn_model = $version,
    s.gnn_scored_at = $now
"""


@dataclass
class TrainReport:
    manifest: Manifest
    candidates: list[dict[str, Any]]
    export: dict[str, Any]
    split: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class ScoreReport:
    version: str
    subscribers: int
    seconds: float
    by_band: dict[str, int]
    # Seconds per step: export, forward (the model), evidence (strongest neighbours, reasons),
    # write (waiting for the last writes; the others overlap with building the rows).
    steps: dict[str, float] = field(default_factory=dict)


def train_from_graph(
    runner: QueryRunner,
    registry: ModelRegistry,
    config: ModelsConfig,
    *,
    kinds: Sequence[str] = MODEL_KINDS,
    base: TrainConfig | None = None,
    seed: int = 0,
) -> TrainReport:
    """Export, split, train each kind, store the best; see the module docstring."""
    from ringwatch.models.anomaly import fit_anomaly
    from ringwatch.models.config import TrainConfig
    from ringwatch.models.data import NodeTask, connected_groups, group_split
    from ringwatch.models.training import train_model

    started = time.perf_counter()
    exported = export_graph(runner)
    data = exported.data
    y = data[SUBSCRIBER].y
    summary = exported.summary.to_dict()
    fraud, legitimate = int((y == 1).sum()), int((y == 0).sum())
    if min(fraud, legitimate) < config.min_labels_per_class:
        log.warning("%d fraud and %d legitimate labels: fitting the unsupervised fallback",
                    fraud, legitimate)  # fmt: skip
        fallback = fit_anomaly(data, SUBSCRIBER)
        manifest = registry.save(fallback, data=summary, feature_names=feature_names(), graph=data)
        return TrainReport(manifest, [], summary, seconds=time.perf_counter() - started)

    groups = connected_groups(data, SUBSCRIBER, skip=hub_masks(data))
    split = group_split(y, groups, seed=seed)
    for name, mask in (("training", split.train), ("validation", split.val)):
        classes = set(y[mask].tolist())
        if classes != {0, 1}:
            labelled_groups = groups[(y >= 0).numpy()]
            largest = int(np.bincount(np.unique(labelled_groups, return_inverse=True)[1]).max())
            raise ModelError(
                f"the {name} split has no labelled {'fraud' if 1 not in classes else 'legitimate'}"
                f" subscriber: {fraud} fraud and {legitimate} legitimate labels fall into "
                f"{len(np.unique(labelled_groups))} connected components (the largest holds "
                f"{largest}), too few to hold whole rings out; label more subscribers"
            )
    task = NodeTask(data, SUBSCRIBER, split)
    # The boosted model's aggregates skip hubs and count neighbours from the export's
    # identifier features.
    base = (base or TrainConfig(seed=seed)).model_copy(update=IDENTIFIER_COLUMNS)
    trained = []
    candidates: list[dict[str, Any]] = []
    for kind in kinds:
        began = time.perf_counter()
        model = train_model(task, base.model_copy(update={"model": kind}))
        trained.append(model)
        kept = model.history[model.best_epoch - 1] if model.history else {}
        candidates.append(
            {
                "kind": kind,
                "best_epoch": model.best_epoch,
                "epochs": len(model.history),
                # What was kept: the best epoch of those run, or the trees and leaves chosen.
                "fit": f"{int(kept['trees'])} trees of {int(kept['leaves'])} leaves"
                if "trees" in kept
                else f"epoch {model.best_epoch} of {len(model.history)}",
                "seconds": round(sum(h["seconds"] for h in model.history), 2),
                "wall_seconds": round(time.perf_counter() - began, 2),
                "metrics": {k: m.to_dict() for k, m in model.metrics.items()},
            }
        )
        log.info("%s: validation PR-AUC %s", kind, model.metrics["val"].pr_auc)
    best = max(trained, key=lambda m: m.metrics["val"].pr_auc or -1.0)
    seen = task.labelled(split.train | split.val).tolist()
    manifest = registry.save(
        best,
        data={**summary, "split": split.sizes(y)},
        feature_names=feature_names(),
        graph=data,
        seen_labels=[exported.subscriber_ids[i] for i in seen],
        candidates=candidates,
    )
    return TrainReport(manifest, candidates, summary, split.sizes(y),
                       time.perf_counter() - started)  # fmt: skip


_LABEL_COUNT: LiteralString = """
MATCH (s:Subscriber) WHERE s.label IN ['fraud', 'legitimate']
RETURN count(s) AS labelled
"""


def new_labels(runner: QueryRunner, registry: ModelRegistry) -> int | None:
    """Labelled subscribers now, minus those in the snapshot of the promoted model (or of the
    newest one when none is promoted); None when there is no model yet."""
    version = registry.promoted_version()
    if version is None:
        stored = registry.versions()
        if not stored:
            return None
        version = stored[-1].version
    data = registry.manifest(version).data
    before = int(data.get("labelled_fraud", 0)) + int(data.get("labelled_legitimate", 0))
    return int(runner.read(_LABEL_COUNT)[0]["labelled"]) - before


def evaluate_version(
    runner: QueryRunner, registry: ModelRegistry, version: str
) -> dict[str, dict[str, Any]]:
    """Metrics of `version` on today's labelled subscribers: all of them, and those whose
    labels it never saw in training or validation (its test split and labels added since)."""
    from ringwatch.models.training import metrics_of

    loaded = registry.load(version)
    exported = export_graph(runner)
    import torch

    y = exported.data[SUBSCRIBER].y
    labelled = torch.nonzero(y >= 0).flatten()
    scores = loaded.scorer.probabilities(exported.data, labelled)
    labels = y[labelled].numpy()
    seen = registry.seen_labels(version)
    unseen = np.array([exported.subscriber_ids[i] not in seen for i in labelled.tolist()], bool)
    return {
        "all labelled": metrics_of(scores, labels).to_dict(),
        "unseen labels": metrics_of(scores[unseen], labels[unseen]).to_dict(),
    }


def strongest_neighbours(
    exported: ExportedGraph, scores: np.ndarray
) -> list[tuple[int, str, int, float] | None]:
    """Per subscriber: (neighbour, relationship, identifier index, evidence) of the other
    subscriber with the strongest evidence sharing one of its non-hub identifiers, or None.
    Evidence is the neighbour's score, or 1 for a confirmed fraud label; of equal evidence the
    first relationship type (in `edge_types` order) and identifier wins. Array operations
    only: a million subscribers have several million links."""
    data = exported.data
    evidence = np.maximum(scores, (data[SUBSCRIBER].y.numpy() == 1).astype(np.float64))
    relationships: list[str] = []
    candidates: list[tuple[np.ndarray, ...]] = []  # (subscriber, other, type, identifier)
    for number, (src, rel, dst) in enumerate(edge_types()):
        relationships.append(rel)
        edge_index = data[src, rel, dst].edge_index.numpy()
        keep = ~data[dst].hub.numpy()[edge_index[1]]
        subs, idents = edge_index[0][keep], edge_index[1][keep]
        if subs.size == 0:
            continue
        # Per identifier its two strongest users: a subscriber's best other is the first unless
        # that is itself.
        order = np.lexsort((-evidence[subs], idents))
        subs, idents = subs[order], idents[order]
        first = np.ones(subs.size, dtype=bool)
        first[1:] = idents[1:] != idents[:-1]
        starts = np.flatnonzero(first)
        seconds = starts + 1
        seconds = seconds[(seconds < subs.size) & (~first[np.minimum(seconds, subs.size - 1)])]
        top = np.full(int(data[dst].num_nodes), -1, dtype=np.int64)
        top[idents[starts]] = subs[starts]
        runner_up = np.full_like(top, -1)
        runner_up[idents[seconds]] = subs[seconds]
        other = np.where(top[idents] != subs, top[idents], runner_up[idents])
        found = other >= 0
        candidates.append(
            (subs[found], other[found], np.full(int(found.sum()), number), idents[found])
        )
    best: list[tuple[int, str, int, float] | None] = [None] * len(scores)
    if not candidates:
        return best
    columns = zip(*candidates, strict=True)
    subs, others, types, idents = (np.concatenate(column) for column in columns)
    values = evidence[others]
    # Strongest first per subscriber; of equal evidence, the earliest candidate.
    order = np.lexsort((np.arange(subs.size), -values, subs))
    winners = order[np.r_[True, subs[order][1:] != subs[order][:-1]]]
    for sub, other, number, ident, value in zip(
        subs[winners].tolist(), others[winners].tolist(), types[winners].tolist(),
        idents[winners].tolist(), values[winners].tolist(), strict=True,
    ):  # fmt: skip
        best[sub] = (other, relationships[number], ident, value)
    return best


def gnn_reason(
    manifest: Manifest,
    risk: float,
    neighbour: tuple[str, str, str, float, bool] | None,
) -> Reason:
    """The one reason of a GNN score: model, probability, strongest neighbour evidence."""
    what = "anomaly score" if manifest.kind == "anomaly" else "fraud probability"
    text = f"GNN {manifest.version} ({manifest.kind}): {what} {risk:.2f}"
    evidence: dict[str, Any] = {"model": manifest.version, "kind": manifest.kind}
    if neighbour is not None:
        other, rel, ident, value, fraud = neighbour
        kind = KIND_OF_RELATIONSHIP.get(rel)
        name = IDENTIFIER_NAMES.get(rel, kind.value if kind else rel)
        status = "confirmed fraud" if fraud else f"GNN {value:.2f}"
        text += f"; strongest neighbour: {other} ({status}) shares {name} {masked(ident)}"
        evidence.update(neighbour=other, neighbour_score=round(value, 4), via=rel,
                        identifier=masked(ident), neighbour_fraud=fraud)  # fmt: skip
    return Reason("gnn.score", text, round(risk, 4), evidence)


def score_if_promoted(
    runner: QueryRunner, config: ModelsConfig, scoring: ScoringConfig
) -> ScoreReport | None:
    """Batch GNN scores with the promoted model, or None when nothing is promoted (or the gnn
    extra is missing: then the stored scores stay and the log says why)."""
    registry = ModelRegistry(config.dir)
    if registry.promoted_version() is None:
        return None
    try:
        return score_subscribers(runner, registry, scoring=scoring)
    except ImportError as exc:
        log.warning("a GNN is promoted but cannot run here (%s): keeping stored scores", exc)
        return None


def score_subscribers(
    runner: QueryRunner,
    registry: ModelRegistry,
    *,
    version: str | None = None,
    scoring: ScoringConfig | None = None,
    now: datetime | None = None,
) -> ScoreReport:
    """Score every subscriber with `version` (default: the promoted one) and write it back."""
    import torch

    from ringwatch.scoring.risk import priority

    version = version or registry.promoted_version()
    if version is None:
        raise ModelError("no model is promoted: train one, then `ringwatch models promote`")
    started = time.perf_counter()
    steps: dict[str, float] = {}
    loaded = registry.load(version)
    exported = export_graph(runner)
    steps["export"] = time.perf_counter() - started
    count = len(exported.subscriber_ids)
    began = time.perf_counter()
    scores = loaded.scorer.probabilities(exported.data, torch.arange(count))
    steps["forward"] = time.perf_counter() - began
    began = time.perf_counter()
    neighbours = strongest_neighbours(exported, scores)
    labels = exported.data[SUBSCRIBER].y.numpy()
    label_of_relationship = {rel: dst for _, rel, dst in edge_types()}
    now = now or datetime.now(UTC)
    config = scoring or ScoringConfig()
    by_band: dict[str, int] = {}
    rows: list[dict[str, Any]] = []
    # Batches are written on other threads while the next ones are built: the server's work
    # overlaps with this loop's Python, and once the loop is done the writes of different
    # subscribers (no shared locks) run side by side. At most WRITERS batches wait.
    with ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="gnn-write") as writer:
        pending: deque[Future[Any]] = deque()

        def write(batch: list[dict[str, Any]]) -> None:
            if len(pending) >= WRITERS:
                pending.popleft().result()  # a failed write stops the run here, not at the end
            params = {"rows": batch, "version": version, "now": now}
            pending.append(writer.submit(runner.write, _WRITE_SCORES, params))

        for index, sid in enumerate(exported.subscriber_ids):
            risk = float(scores[index])
            found = neighbours[index]
            named = None
            if found is not None:
                other, rel, ident, value = found
                ident_id = exported.identifier_ids[label_of_relationship[rel]][ident]
                named = (exported.subscriber_ids[other], rel, ident_id, value,
                         bool(labels[other] == 1))  # fmt: skip
            reason = gnn_reason(loaded.manifest, risk, named)
            band = priority(risk, config).value
            by_band[band] = by_band.get(band, 0) + 1
            rows.append({"id": sid, "risk": risk, "reasons": reason_codec.dumps([reason])})
            if len(rows) >= WRITE_BATCH:
                write(rows)
                rows = []
        if rows:
            write(rows)
        steps["evidence"] = time.perf_counter() - began
        began = time.perf_counter()
        while pending:
            pending.popleft().result()
    steps["write"] = time.perf_counter() - began
    seconds = time.perf_counter() - started
    log.info("scored %d subscribers in %.1f s (%s)", count, seconds,
             ", ".join(f"{step} {s:.1f} s" for step, s in steps.items()))  # fmt: skip
    return ScoreReport(version, count, seconds, by_band, steps)
