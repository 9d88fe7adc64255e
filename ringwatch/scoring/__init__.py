"""Scores and their explanations: usage/velocity, graph, merged risk, alert candidates.

Pure logic lives here (no Neo4j, no Kafka); reading features from the graph and writing scores
back is done by `ringwatch.graph` modules that call into this package.
"""
