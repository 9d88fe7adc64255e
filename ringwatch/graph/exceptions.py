"""Errors of the graph layer."""

from ringwatch.exceptions import RingwatchError


class GraphError(RingwatchError):
    """The graph could not be reached or a statement failed in a way a person must fix."""


class SchemaError(GraphError):
    """The schema file is missing or a migration statement failed."""


class InvestigationKitError(GraphError):
    """A file of the Browser investigation kit (`cypher/investigate/`) cannot be used."""
