"""The local runtime without Docker: real Neo4j + GDS + Browser and Kafka from Maven Central.

`ringwatch stack up` resolves the servers' jars with Maven into a cache under the stack home,
writes their configuration, starts them as managed processes (pid files, logs) and waits until
each answers its health check. See docs/operations.md.
"""
