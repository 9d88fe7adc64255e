"""Versioned model artefacts on disk, and which one is promoted.

Layout under the models directory (`RINGWATCH_MODELS__DIR`, default ``~/.ringwatch/models``)::

    v0001/manifest.json     version, kind, config, data snapshot summary, metrics, features
    v0001/model.json        feature scaling and calibration (or the anomaly model), plain numbers
    v0001/weights.pt        the network's state dict (GNNs only; loaded with weights_only)
    v0001/trees.npz         the boosted model's trees as plain arrays (no pickle)
    v0001/seen_labels.txt.gz  subscribers whose labels training or validation used
    PROMOTED                the promoted version (replaced atomically)
    promotions.jsonl        every promotion: version, previous, forced, when

A version directory is created whole under a temporary name and renamed into place, so a reader
never sees half an artefact. This module imports no PyTorch until a model is saved or loaded:
the API reads `promoted_version` on its request path, and a boosted model loads and scores
without PyTorch at all.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict

from ringwatch.models.exceptions import ModelError

if TYPE_CHECKING:
    from torch import Tensor
    from torch_geometric.data import HeteroData

    from ringwatch.models.anomaly import AnomalyModel
    from ringwatch.models.boosted import BoostedModel
    from ringwatch.models.training import TrainedModel

PROMOTED = "PROMOTED"
TREES = "trees.npz"  # the boosted model's trees (`TreeEnsemble`)
_VERSION = re.compile(r"^v(\d{4,})$")


class Manifest(BaseModel):
    """What a stored model is, what it was trained on and how well it did."""

    model_config = ConfigDict(extra="ignore")

    version: str
    kind: str
    created_at: datetime
    target: str
    config: dict[str, Any]
    metrics: dict[str, dict[str, Any]]
    data: dict[str, Any]
    node_types: list[str]
    edge_types: list[list[str]]
    in_dims: dict[str, int]
    feature_names: dict[str, list[str]]
    candidates: list[dict[str, Any]] = []
    history: list[dict[str, float]] = []
    best_epoch: int = 0

    @property
    def val_pr_auc(self) -> float | None:
        value = self.metrics.get("val", {}).get("pr_auc")
        return float(value) if value is not None else None


class Scorer(Protocol):
    """Anything that turns a graph and target node indices into scores in [0, 1]."""

    target: str

    def probabilities(self, data: HeteroData, nodes: Tensor) -> np.ndarray: ...

    def score_arrays(
        self,
        x_dict: dict[str, np.ndarray],
        edge_index_dict: dict[tuple[str, str, str], np.ndarray],
        node: int,
    ) -> float: ...


@dataclass
class LoadedModel:
    manifest: Manifest
    scorer: Scorer


@dataclass(frozen=True)
class Promotion:
    version: str
    previous: str | None
    forced: bool
    candidate_pr_auc: float | None
    previous_pr_auc: float | None


class ModelRegistry:
    """The models directory; see the module docstring."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser()

    # ---------------------------------------------------------------------------- reading

    def versions(self) -> list[Manifest]:
        """Every stored model, oldest first."""
        if not self.root.is_dir():
            return []
        names = sorted(
            (p.name for p in self.root.iterdir() if _VERSION.match(p.name)),
            key=lambda name: int(name[1:]),
        )
        return [self.manifest(name) for name in names]

    def manifest(self, version: str) -> Manifest:
        path = self._dir(version) / "manifest.json"
        if not path.is_file():
            raise ModelError(f"no model {version} in {self.root}")
        return Manifest.model_validate_json(path.read_text())

    def promoted_version(self) -> str | None:
        try:
            text = (self.root / PROMOTED).read_text().strip()
        except FileNotFoundError:
            return None
        return text or None

    def seen_labels(self, version: str) -> set[str]:
        path = self._dir(version) / "seen_labels.txt.gz"
        if not path.is_file():
            return set()
        with gzip.open(path, "rt") as handle:
            return {line.strip() for line in handle if line.strip()}

    def _dir(self, version: str) -> Path:
        if not _VERSION.match(version):
            raise ModelError(f"not a model version: {version!r} (expected v0001, v0002, ...)")
        return self.root / version

    # ---------------------------------------------------------------------------- writing

    def save(
        self,
        model: TrainedModel | BoostedModel | AnomalyModel,
        *,
        data: dict[str, Any],
        feature_names: dict[str, list[str]],
        graph: HeteroData,
        seen_labels: Iterable[str] = (),
        candidates: list[dict[str, Any]] | None = None,
        metrics: dict[str, dict[str, Any]] | None = None,
    ) -> Manifest:
        """Store `model` as the next version."""
        from ringwatch.models.anomaly import AnomalyModel
        from ringwatch.models.boosted import BoostedModel

        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
        try:
            if isinstance(model, AnomalyModel):
                kind, config, payload = (
                    "anomaly",
                    {"start": model.start, "cap": model.cap},
                    {"anomaly": model.to_dict()},
                )
                history: list[dict[str, float]] = []
                best_epoch = 0
                scores = metrics or {}
            elif isinstance(model, BoostedModel):
                kind, config, payload = "boosted", model.config.model_dump(), model.payload()
                model.trees.save(staging / TREES)
                history, best_epoch = model.history, model.best_epoch
                scores = {name: m.to_dict() for name, m in model.metrics.items()}
            else:
                import torch

                kind, config = model.config.model, model.config.model_dump()
                payload = {
                    "standardizer": model.standardizer.to_dict(),
                    "calibrator": model.calibrator.to_dict(),
                }
                torch.save(model.net.state_dict(), staging / "weights.pt")
                history, best_epoch = model.history, model.best_epoch
                scores = {name: m.to_dict() for name, m in model.metrics.items()}
            (staging / "model.json").write_text(json.dumps(payload))
            with gzip.open(staging / "seen_labels.txt.gz", "wt") as handle:
                handle.writelines(f"{sid}\n" for sid in sorted(seen_labels))
            node_types, edge_types = graph.metadata()
            while True:
                version = self._next_version()
                manifest = Manifest(
                    version=version,
                    kind=kind,
                    created_at=datetime.now(UTC),
                    target=model.target,
                    config=config,
                    metrics=scores,
                    data=data,
                    node_types=list(node_types),
                    edge_types=[list(et) for et in edge_types],
                    in_dims={nt: int(graph[nt].x.size(1)) for nt in node_types},
                    feature_names=feature_names,
                    candidates=candidates or [],
                    history=history,
                    best_epoch=best_epoch,
                )
                (staging / "manifest.json").write_text(manifest.model_dump_json(indent=2))
                try:
                    # rename() onto a missing name is atomic; a concurrent save took `version`
                    # if it now exists, and the next number is tried.
                    staging.rename(self.root / version)
                except OSError:
                    if (self.root / version).exists():
                        continue
                    raise
                return manifest
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def _next_version(self) -> str:
        numbers = [
            int(m.group(1))
            for p in (self.root.iterdir() if self.root.is_dir() else [])
            if (m := _VERSION.match(p.name))
        ]
        return f"v{max(numbers, default=0) + 1:04d}"

    def promote(self, version: str, *, force: bool = False) -> Promotion:
        """Make `version` the served model if its validation PR-AUC beats the promoted one's.

        Without labels a model has no PR-AUC: it is promoted only when nothing is, or by force.
        """
        candidate = self.manifest(version)
        previous = self.promoted_version()
        previous_score = self.manifest(previous).val_pr_auc if previous else None
        score = candidate.val_pr_auc
        if previous == version:
            raise ModelError(f"{version} is already promoted")
        if previous is not None and not force:
            if score is None:
                raise ModelError(
                    f"{version} has no validation PR-AUC (trained without labels); the "
                    f"promoted {previous} has {_fmt(previous_score)}: use --force to replace it"
                )
            if previous_score is not None and score <= previous_score:
                raise ModelError(
                    f"{version} does not beat the promoted {previous} on validation PR-AUC "
                    f"({_fmt(score)} <= {_fmt(previous_score)}); use --force to promote anyway"
                )
        self.root.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=".promoted-", dir=self.root)
        with os.fdopen(fd, "w") as handle:
            handle.write(version + "\n")
        Path(temporary).replace(self.root / PROMOTED)
        promotion = Promotion(version, previous, force, score, previous_score)
        with (self.root / "promotions.jsonl").open("a") as log:
            log.write(
                json.dumps({**promotion.__dict__, "at": datetime.now(UTC).isoformat()}) + "\n"
            )
        return promotion

    # ---------------------------------------------------------------------------- loading

    def load(self, version: str) -> LoadedModel:
        """The model of `version`, ready to score (imports PyTorch)."""
        manifest = self.manifest(version)
        payload = json.loads((self._dir(version) / "model.json").read_text())
        if manifest.kind == "anomaly":
            from ringwatch.models.anomaly import AnomalyModel

            return LoadedModel(manifest, AnomalyModel.from_dict(payload["anomaly"]))
        if manifest.kind == "boosted":  # NumPy only: no PyTorch import
            from ringwatch.models.boosted import BoostedModel, TreeEnsemble
            from ringwatch.models.config import TrainConfig

            trees = TreeEnsemble.load(self._dir(version) / TREES)
            config = TrainConfig.model_validate(manifest.config)
            boosted = BoostedModel.from_payload(config, manifest.target, payload, trees)
            boosted.best_epoch = manifest.best_epoch
            return LoadedModel(manifest, boosted)
        import torch

        from ringwatch.models.calibration import Calibrator
        from ringwatch.models.config import TrainConfig
        from ringwatch.models.data import Standardizer
        from ringwatch.models.nets import build_model
        from ringwatch.models.training import TrainedModel

        config = TrainConfig.model_validate(manifest.config)
        metadata = (manifest.node_types, [(a, b, c) for a, b, c in manifest.edge_types])
        assert config.model != "boosted"  # loaded above
        net = build_model(
            config.model, metadata, manifest.in_dims, manifest.target,
            hidden=config.hidden, layers=config.layers, dropout=config.dropout,
        )  # fmt: skip
        state = torch.load(self._dir(version) / "weights.pt", weights_only=True)
        net.load_state_dict(state)
        net.eval()
        model = TrainedModel(
            net=net,
            config=config,
            target=manifest.target,
            standardizer=Standardizer.from_dict(payload["standardizer"]),
            calibrator=Calibrator.from_dict(payload["calibrator"]),
            metrics={},
            best_epoch=manifest.best_epoch,
        )
        return LoadedModel(manifest, model)


def _fmt(value: float | None) -> str:
    return "none" if value is None else f"{value:.4f}"
