// Why a ring is risky.
// The ring's risk, priority and decision with the evidence the score was built from: reason
// codes, the identifier types and number of identifiers shared, how densely the members are
// linked, the share of new accounts and of signups in one burst, labelled members and the
// members' mean usage risk. `reasons` holds each reason's sentence, weight and evidence (JSON).
// Shows a table (one row).
:param ringId => 'R-1';

MATCH (r:Ring {id: $ringId})
RETURN r.id AS ring, r.status AS status, r.size AS size, round(r.risk, 3) AS risk,
       r.priority AS priority, r.decision AS decision, r.reason_codes AS reason_codes,
       r.identifier_types AS shared_types, r.shared_identifiers AS shared_identifiers,
       round(r.density, 3) AS density, round(r.new_account_share, 2) AS new_accounts,
       round(r.signup_burst_share, 2) AS signup_burst, r.labelled_fraud AS labelled_fraud,
       r.labelled_legitimate AS labelled_legitimate,
       round(r.mean_usage_risk, 3) AS mean_usage_risk, r.reasons AS reasons
