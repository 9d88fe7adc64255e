// Labels of a subscriber.
// Confirmed outcomes recorded for the subscriber (chargebacks, analyst decisions), newest first,
// and the label the subscriber carries now (the newest wins). Run it after labelling a
// subscriber through the API (POST /v1/labels) to see the label arrive.
// Shows a table.
:param subscriberId => 'sub-000123';

MATCH (s:Subscriber {id: $subscriberId})
OPTIONAL MATCH (l:Label)-[:ABOUT]->(s)
RETURN s.id AS subscriber, s.label AS current_label, l.ts AS at, l.label AS label,
       l.source AS source, l.analyst AS analyst, l.reason AS reason, l.ring_id AS ring
ORDER BY at DESC
