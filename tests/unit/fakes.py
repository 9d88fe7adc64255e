"""A recording `QueryRunner` for unit tests: keeps every statement with its parameters."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, LiteralString, TypeVar

from ringwatch.graph.db import Record, Tx

T = TypeVar("T")

Responder = Callable[[str, Mapping[str, Any]], list[Record]]


@dataclass
class RecordingRunner:
    responder: Responder = field(default=lambda _q, _p: [])
    reads: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    writes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def read(self, query: LiteralString, params: Mapping[str, Any] | None = None) -> list[Record]:
        self.reads.append((query, dict(params or {})))
        return self.responder(query, params or {})

    def write(self, query: LiteralString, params: Mapping[str, Any] | None = None) -> list[Record]:
        self.writes.append((query, dict(params or {})))
        return self.responder(query, params or {})

    def write_transaction(self, work: Callable[[Tx], T]) -> T:
        return work(_RecordingTx(self))


@dataclass
class _RecordingTx:
    runner: RecordingRunner

    def run(self, query: LiteralString, params: Mapping[str, Any] | None = None) -> list[Record]:
        return self.runner.write(query, params)
