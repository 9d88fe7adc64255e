// Hub identifiers.
// Which identifiers are shared by so many subscribers that they say nothing about fraud
// (carrier-NAT IPs, placeholder IMEIs, a dormitory address, a payment processor's test card)?
// They are stored but left out of ring detection. Most shared first.
// Shows a table.
:param limit => 25;

CALL () {
  MATCH (i:Device) WHERE i.hub = true RETURN i
  UNION ALL
  MATCH (i:Address) WHERE i.hub = true RETURN i
  UNION ALL
  MATCH (i:PaymentMethod) WHERE i.hub = true RETURN i
  UNION ALL
  MATCH (i:Phone) WHERE i.hub = true RETURN i
  UNION ALL
  MATCH (i:Email) WHERE i.hub = true RETURN i
  UNION ALL
  MATCH (i:IP) WHERE i.hub = true RETURN i
}
RETURN labels(i)[0] AS kind, i.id AS identifier, i.subscribers AS subscribers,
       i.first_seen AS first_seen
ORDER BY subscribers DESC, kind, identifier
LIMIT $limit
