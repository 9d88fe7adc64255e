// Recent alerts.
// The newest alerts with a given status ('open', 'acknowledged', 'resolved', or 'any') and at
// least a given priority (P1 is the highest): when, what kind, about which subscriber or ring
// (and that subscriber's ring), risk and reason codes.
// Shows a table.
:param status => 'open';
:param priorityAtLeast => 'P3';
:param limit => 25;

MATCH (a:Alert)
WHERE ($status = 'any' OR a.status = $status) AND a.priority <= $priorityAtLeast
OPTIONAL MATCH (a)-[:ABOUT]->(entity)
RETURN a.created_at AS created_at, a.priority AS priority, a.kind AS kind,
       a.entity_kind AS about, a.entity_id AS entity,
       coalesce(entity.ring_id, CASE WHEN entity:Ring THEN entity.id END) AS ring,
       round(a.risk, 3) AS risk, a.reason_codes AS reasons, a.status AS status, a.id AS alert
ORDER BY a.created_at DESC, a.priority, a.id
LIMIT $limit
