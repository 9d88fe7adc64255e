"""The root of every error ringwatch raises on purpose.

Edges translate these: the CLI prints the message on one line and exits 1, the API answers JSON.
Anything else that escapes is a bug.
"""


class RingwatchError(Exception):
    """Base class for errors with a message meant for a person."""


class ConfigurationError(RingwatchError):
    """Settings are missing, inconsistent, or unsafe for the environment."""
