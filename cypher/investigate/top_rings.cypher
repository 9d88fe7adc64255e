// Top rings by risk.
// Which rings should an analyst open first? The active rings, riskiest first, with their size,
// priority and decision, the identifier types their members share and the reason codes behind
// the risk. Take a ring id from here to ring.cypher, ring_reasons.cypher or ring_lineage.cypher.
// Shows a table.
:param limit => 10;

MATCH (r:Ring {status: 'active'})
RETURN r.id AS ring, r.size AS size, round(r.risk, 3) AS risk, r.priority AS priority,
       r.decision AS decision, r.identifier_types AS shared_types, r.reason_codes AS reasons
ORDER BY coalesce(r.risk, -1.0) DESC, r.size DESC, r.id
LIMIT $limit
