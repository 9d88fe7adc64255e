// One ring as a picture.
// The ring, its members, and the identifiers that at least two of its members share (hub
// identifiers are left out, as they are when rings are found). Click a node for its properties:
// risk, priority, reasons.
// Shows a graph.
:param ringId => 'R-1';

MATCH (r:Ring {id: $ringId})<-[membership:MEMBER_OF]-(member:Subscriber)
OPTIONAL MATCH (member)-[link:USES_DEVICE|HAS_ADDRESS|PAYS_WITH|HAS_PHONE|HAS_EMAIL|USES_IP]->(identifier)
  WHERE NOT coalesce(identifier.hub, false)
    AND EXISTS {
      MATCH (identifier)<-[:USES_DEVICE|HAS_ADDRESS|PAYS_WITH|HAS_PHONE|HAS_EMAIL|USES_IP]-(other:Subscriber)-[:MEMBER_OF]->(r)
      WHERE other <> member
    }
RETURN r, membership, member, link, identifier
