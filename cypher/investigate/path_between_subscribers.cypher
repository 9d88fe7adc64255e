// Shortest path between two subscribers over shared identifiers.
// How are these two subscribers connected? The shortest chain subscriber - identifier -
// subscriber - ... between them, through devices, addresses, payment methods, phones, emails and
// IPs, never through a hub identifier, at most 6 subscriber-to-subscriber steps. No rows: they
// are not connected that way.
// Shows a graph.
:param fromId => 'sub-000123';
:param toId => 'sub-000456';

MATCH path = SHORTEST 1 (:Subscriber {id: $fromId})
  (()-[:USES_DEVICE|HAS_ADDRESS|PAYS_WITH|HAS_PHONE|HAS_EMAIL|USES_IP]-(step) WHERE NOT coalesce(step.hub, false)){1,12}
  (:Subscriber {id: $toId})
RETURN path
