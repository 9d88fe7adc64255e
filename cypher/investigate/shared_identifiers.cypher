// Shared identifiers of a subscriber.
// Every device, address, payment method, phone, email and IP the subscriber uses, with how many
// other subscribers use it too and who they are (first 20, with their ring in brackets). Hubs
// (identifiers shared by more subscribers than the hub cap: carrier NAT, placeholder IMEIs, a
// dormitory) are marked `hub = true`: stored, but left out of rings. An identifier nobody else
// uses shows 0.
// Shows a table.
:param subscriberId => 'sub-000123';

MATCH (s:Subscriber {id: $subscriberId})-[link:USES_DEVICE|HAS_ADDRESS|PAYS_WITH|HAS_PHONE|HAS_EMAIL|USES_IP]->(identifier)
RETURN labels(identifier)[0] AS kind, identifier.id AS identifier,
       coalesce(identifier.hub, false) AS hub,
       COUNT {
         MATCH (identifier)<-[:USES_DEVICE|HAS_ADDRESS|PAYS_WITH|HAS_PHONE|HAS_EMAIL|USES_IP]-(o:Subscriber)
         WHERE o <> s
       } AS shared_with,
       COLLECT {
         MATCH (identifier)<-[:USES_DEVICE|HAS_ADDRESS|PAYS_WITH|HAS_PHONE|HAS_EMAIL|USES_IP]-(o:Subscriber)
         WHERE o <> s
         WITH o ORDER BY o.id LIMIT 20
         RETURN o.id + coalesce(' (' + o.ring_id + ')', '')
       } AS others,
       link.first_seen AS first_seen, link.last_seen AS last_seen, link.count AS times
ORDER BY hub, shared_with DESC, kind, identifier
