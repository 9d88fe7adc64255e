"""Errors of the models package."""

from __future__ import annotations

from ringwatch.exceptions import RingwatchError


class ModelError(RingwatchError):
    """A model cannot be trained, stored, promoted or used as asked."""
