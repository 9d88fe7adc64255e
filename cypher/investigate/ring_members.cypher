// Members of a ring.
// Every member of the ring, riskiest first: account status and age, merged risk, priority,
// decision, label (fraud / legitimate when confirmed), the reason codes of its risk, and how many
// other members it shares a (non-hub) identifier with. Pick two members here for
// path_between_subscribers.cypher.
// Shows a table.
:param ringId => 'R-1';

MATCH (r:Ring {id: $ringId})<-[:MEMBER_OF]-(s:Subscriber)
RETURN s.id AS subscriber, s.status AS status, s.created_at AS created_at,
       round(s.risk, 3) AS risk, s.priority AS priority, s.decision AS decision,
       s.label AS label, s.risk_reason_codes AS reasons,
       COUNT {
         MATCH (s)-[:USES_DEVICE|HAS_ADDRESS|PAYS_WITH|HAS_PHONE|HAS_EMAIL|USES_IP]->(i)<-[:USES_DEVICE|HAS_ADDRESS|PAYS_WITH|HAS_PHONE|HAS_EMAIL|USES_IP]-(o:Subscriber)-[:MEMBER_OF]->(r)
         WHERE o <> s AND NOT coalesce(i.hub, false)
         RETURN DISTINCT o
       } AS linked_members
ORDER BY coalesce(s.risk, -1.0) DESC, s.id
