"""Errors of alert delivery."""

from ringwatch.exceptions import RingwatchError


class DeliveryError(RingwatchError):
    """A receiver refused an alert where the caller needed it accepted (e.g. a test send)."""
