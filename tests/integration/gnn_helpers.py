"""A small labelled identity graph and quick training settings, for the GNN integration tests."""

from __future__ import annotations

from typing import Any

from ringwatch.graph.db import Neo4jRunner
from ringwatch.graph.writer import GraphWriter
from ringwatch.models.config import TrainConfig
from tests.factories import identity, label, prepared

QUICK = TrainConfig(epochs=4, hidden=8, batch_size=8, fanout=[10, 5], lr=0.01)
RINGS = 5


def device(number: int) -> str:
    """A valid IMEI (Luhn check digit) per number."""
    body = f"4901542{number:07d}"
    total = 0
    for index, char in enumerate(reversed(body)):
        digit = int(char)
        if index % 2 == 0:
            digit *= 2
            digit -= 9 if digit > 9 else 0
        total += digit
    return body + str((10 - total % 10) % 10)


def register(subscriber: str, **identifiers: list[str]) -> dict[str, Any]:
    event = identity(f"e-{subscriber}", subscriber)
    event["identifiers"] = identifiers
    return event


def write_labelled_graph(graph: Neo4jRunner) -> Neo4jRunner:
    """Five rings of three (email and device shared, all labelled fraud); twelve legitimate
    subscribers in households of two (address shared), labelled legitimate; two unlabelled."""
    events = []
    for ring in range(RINGS):
        for member in range(3):
            sid = f"f{ring}-{member}"
            events.append(register(sid, emails=[f"ring{ring}@example.org"],
                                   devices=[device(ring)]))  # fmt: skip
            events.append(label(f"l-{sid}", sid, "fraud"))
    for person in range(12):
        sid = f"g{person:02d}"
        home = f"{person // 2 + 1} Oak Street, Springfield"
        events.append(
            register(sid, emails=[f"{sid}@example.org"], devices=[device(100 + person)],
                     addresses=[home])
        )  # fmt: skip
        events.append(label(f"l-{sid}", sid, "legitimate"))
    events.append(register("u1", emails=["u1@example.org"]))
    events.append(register("u2", emails=["ring0@example.org"]))
    GraphWriter(graph, hub_cap=50).write(prepared(*events))
    return graph
