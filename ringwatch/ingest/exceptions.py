"""Errors raised while bringing data in.

Messages name the field and the rule that failed, never the rejected value: they end up in the
dead-letter topic, logs and CLI output, which must not become a copy of personal data.
"""

from __future__ import annotations

from collections.abc import Sequence

from ringwatch.exceptions import RingwatchError


class IngestError(RingwatchError):
    """Input that cannot be brought into the graph."""


class NormalisationError(IngestError):
    """One identifier could not be brought to its canonical form."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    def __reduce__(self) -> tuple[type[NormalisationError], tuple[str, str]]:
        # Keeps the error picklable for process pools in bulk backfill.
        return (type(self), (self.field, self.reason))


class EventValidationError(IngestError):
    """A message is not a valid event; ``problems`` lists each as ``field.path: message``."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("invalid event: " + "; ".join(self.problems))

    def __reduce__(self) -> tuple[type[EventValidationError], tuple[tuple[str, ...]]]:
        return (type(self), (self.problems,))
