"""Hyper-parameters of a training run, without PyTorch: a stored boosted model is loaded and
scored by processes that never import it (the API)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ringwatch.models.calibration import Method


class TrainConfig(BaseModel):
    """Hyper-parameters of one training run (stored with the model)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: Literal["sage", "camouflage", "boosted"] = "sage"
    hidden: int = Field(default=64, ge=4)
    layers: int = Field(default=2, ge=1, le=4)
    dropout: float = Field(default=0.2, ge=0.0, lt=1.0)
    fanout: list[int] = Field(default=[15, 10], description="Neighbours sampled per hop.")
    batch_size: int = Field(default=512, ge=1)
    epochs: int = Field(default=60, ge=1)
    patience: int = Field(default=8, ge=1, description="Epochs without a better validation PR-AUC.")
    lr: float = Field(default=0.005, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    aux_weight: float = Field(default=0.5, ge=0, description="Suspicion loss (camouflage model).")
    calibration: Method = "auto"
    trees: int = Field(
        default=300,
        ge=1,
        description="Boosted model: most trees (the number kept is chosen "
        "on validation PR-AUC, like the GNNs' epochs).",
    )
    hub_feature: int | None = Field(
        default=None,
        ge=0,
        description="Boosted model: the column of the other node types' "
        "features that flags hubs, which its neighbour aggregates do not pass through.",
    )
    users_feature: int | None = Field(
        default=None,
        ge=0,
        description="Boosted model: the column of the other node types' features holding "
        "log1p of their users of the target type (neighbour counts, exact in live scoring).",
    )
    seed: int = 0
    threads: int = Field(
        default=1,
        ge=1,
        description="PyTorch intra-op threads. Batches are small: more threads mostly wait on "
        "each other, badly so on a busy machine (a scatter took 75x longer with 2 than 1).",
    )
