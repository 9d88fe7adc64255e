"""A tiny, fixed sample that shows the graph working end to end: written, then read back.

Three subscribers share one device and two of them one address (a small ring); a fourth shares
nothing. Everything is MERGEd on ids starting with ``demo-``, so running it twice changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from ringwatch.graph.db import QueryRunner

SAMPLE_SUBSCRIBERS = [
    {"id": "demo-sub-1", "device": "demo-imei-356938035643809", "address": "demo-addr-12 main st"},
    {"id": "demo-sub-2", "device": "demo-imei-356938035643809", "address": "demo-addr-12 main st"},
    {"id": "demo-sub-3", "device": "demo-imei-356938035643809", "address": "demo-addr-7 oak ave"},
    {"id": "demo-sub-4", "device": "demo-imei-490154203237518", "address": "demo-addr-1 elm rd"},
]

_WRITE_SAMPLE = """
UNWIND $rows AS row
MERGE (s:Subscriber {id: row.id})
  ON CREATE SET s.created_at = datetime(), s.status = 'active'
MERGE (d:Device {id: row.device})
MERGE (a:Address {id: row.address})
MERGE (s)-[u:USES_DEVICE]->(d)
  ON CREATE SET u.first_seen = datetime(), u.count = 0
SET u.last_seen = datetime(), u.count = u.count + 1
MERGE (s)-[l:HAS_ADDRESS]->(a)
  ON CREATE SET l.first_seen = datetime(), l.count = 0
SET l.last_seen = datetime(), l.count = l.count + 1
"""

_SHARED_DEVICES = """
MATCH (s:Subscriber)-[:USES_DEVICE]->(d:Device)
WHERE s.id STARTS WITH $prefix
WITH d, collect(s.id) AS subscribers
WHERE size(subscribers) > 1
RETURN d.id AS device, subscribers ORDER BY device
"""


@dataclass(frozen=True)
class SharedIdentifier:
    identifier: str
    subscribers: list[str]


def write_sample(runner: QueryRunner) -> int:
    runner.write(_WRITE_SAMPLE, {"rows": SAMPLE_SUBSCRIBERS})
    return len(SAMPLE_SUBSCRIBERS)


def read_shared_devices(runner: QueryRunner, prefix: str = "demo-") -> list[SharedIdentifier]:
    rows = runner.read(_SHARED_DEVICES, {"prefix": prefix})
    return [SharedIdentifier(row["device"], sorted(row["subscribers"])) for row in rows]


BROWSER_QUERY = "MATCH p=(s:Subscriber)-[]->(i) WHERE s.id STARTS WITH 'demo-' RETURN p"
