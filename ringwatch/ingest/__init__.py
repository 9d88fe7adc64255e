"""Kafka consumers, bulk backfill and event models: everything that brings data in."""
