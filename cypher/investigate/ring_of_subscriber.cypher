// Ring of a subscriber.
// Is this subscriber part of a ring, and with whom? The subscriber's ring, all its members and
// the identifiers that at least two members share (hubs left out). No rows: the subscriber is in
// no ring (shared_identifiers.cypher still shows who it shares identifiers with).
// Shows a graph.
:param subscriberId => 'sub-000123';

MATCH (:Subscriber {id: $subscriberId})-[:MEMBER_OF]->(r:Ring)
MATCH (r)<-[membership:MEMBER_OF]-(member:Subscriber)
OPTIONAL MATCH (member)-[link:USES_DEVICE|HAS_ADDRESS|PAYS_WITH|HAS_PHONE|HAS_EMAIL|USES_IP]->(identifier)
  WHERE NOT coalesce(identifier.hub, false)
    AND EXISTS {
      MATCH (identifier)<-[:USES_DEVICE|HAS_ADDRESS|PAYS_WITH|HAS_PHONE|HAS_EMAIL|USES_IP]-(other:Subscriber)-[:MEMBER_OF]->(r)
      WHERE other <> member
    }
RETURN r, membership, member, link, identifier
