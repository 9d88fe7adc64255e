"""ringwatch: identity-fraud rings and risk on a Neo4j identity graph."""

__version__ = "0.1.0"
