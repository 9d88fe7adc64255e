"""Reason codes: the evidence behind a score, in a form both people and programs can read.

Every score ringwatch stores comes with a list of reasons. A reason names *what* fired (a stable
machine code such as ``usage.daily_charge_limit``), says it in one sentence a fraud analyst can
act on, weighs how much it moved the score, and keeps the evidence (ids, amounts, windows) so an
API or a Browser query can show it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Reason:
    """One piece of evidence behind a score."""

    code: str
    text: str
    weight: float = 0.0
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        # Built directly: `dataclasses.asdict` deep-copies recursively, which dominated writing
        # a million GNN reasons. The evidence is copied one level, enough for a caller to edit.
        return {"code": self.code, "text": self.text, "weight": self.weight,
                "evidence": dict(self.evidence)}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reason:
        return cls(
            code=str(data["code"]),
            text=str(data["text"]),
            weight=float(data.get("weight", 0.0)),
            evidence=dict(data.get("evidence") or {}),
        )


def ranked(reasons: Iterable[Reason], limit: int | None = None) -> list[Reason]:
    """Strongest first; ties keep their order."""
    ordered = sorted(reasons, key=lambda reason: -reason.weight)
    return ordered if limit is None else ordered[:limit]


def dumps(reasons: Sequence[Reason]) -> str:
    """Reasons as the JSON string stored on a node (Neo4j properties cannot hold maps)."""
    return json.dumps([reason.to_dict() for reason in reasons], separators=(",", ":"))


def loads(text: str | None) -> list[Reason]:
    """The inverse of `dumps`; a missing property means no reasons."""
    if not text:
        return []
    return [Reason.from_dict(item) for item in json.loads(text)]


def weights(text: str | None) -> list[tuple[str, float]]:
    """(code, weight) of each stored reason, without building `Reason`s (bulk feature reads)."""
    if not text:
        return []
    return [(str(item["code"]), float(item.get("weight", 0.0))) for item in json.loads(text)]


def codes(reasons: Sequence[Reason]) -> list[str]:
    """The codes alone, stored as a string list so Cypher can filter on them."""
    return [reason.code for reason in reasons]
