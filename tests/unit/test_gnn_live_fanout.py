"""Live scoring reads as many users per identifier as the model sampled in training."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from ringwatch.config import ModelsConfig
from ringwatch.graph.gnn_live import DEFAULT_USERS_PER_IDENTIFIER, users_per_identifier
from ringwatch.models.registry import LoadedModel, Manifest


def loaded(config: dict[str, Any]) -> LoadedModel:
    manifest = Manifest(
        version="v0001", kind="sage", created_at=datetime(2026, 1, 1, tzinfo=UTC),
        target="Subscriber", config=config, metrics={}, data={}, node_types=[], edge_types=[],
        in_dims={}, feature_names={},
    )  # fmt: skip
    return LoadedModel(manifest=manifest, scorer=None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fanout", "expected"),
    [([15, 10], 10), ([20, 7, 3], 7), ([12], 12), (None, DEFAULT_USERS_PER_IDENTIFIER)],
)
def test_the_models_second_hop_sample_size_is_read(fanout: list[int] | None, expected: int) -> None:
    config = {} if fanout is None else {"fanout": fanout}
    assert users_per_identifier(ModelsConfig(), loaded(config)) == expected


def test_a_configured_number_wins() -> None:
    model = loaded({"fanout": [15, 10]})
    assert users_per_identifier(ModelsConfig(live_fanout=25), model) == 25
