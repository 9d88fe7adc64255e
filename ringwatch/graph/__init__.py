"""The identity graph in Neo4j: driver, schema, repositories and GDS analytics."""
