"""Errors of the local stack; each message is one line a person can act on."""

from ringwatch.exceptions import RingwatchError


class StackError(RingwatchError):
    """Something stopped the local stack from starting, stopping or answering."""


class PrerequisiteMissingError(StackError):
    """Java or Maven is missing or too old."""


class PortInUseError(StackError):
    """A port the stack needs is held by a process the stack did not start."""


class ArtifactResolutionError(StackError):
    """Maven could not resolve the servers' jars."""


class ServerStartError(StackError):
    """A server exited or stayed unhealthy while starting."""
