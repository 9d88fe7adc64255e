// Lineage of a ring.
// How did this ring come to be? Every change to the ring and to the rings merged into it, oldest
// first: created, grew, shrank, merged, split, dissolved, whether the batch run or live ingest
// saw it, the members added and removed, and the rings it came from or went into. A ring created
// by a split names its parent in split_from: run this again with that id for the earlier story.
// Shows a table.
:param ringId => 'R-1';

MATCH (r:Ring {id: $ringId})
OPTIONAL MATCH (absorbed:Ring {merged_into: r.id})
WITH r, collect(absorbed) AS absorbed
UNWIND [r] + absorbed AS ring
MATCH (event:RingEvent)-[:OF]->(ring)
RETURN event.at AS at, ring.id AS ring, event.kind AS kind, event.source AS source,
       event.size AS size_after, event.members_added AS added,
       event.members_removed AS removed, event.from_rings AS from_rings,
       event.into_ring AS into_ring, event.into_rings AS split_into,
       event.split_from AS split_from
ORDER BY at, ring, kind
