// ringwatch graph schema. Applied idempotently by `ringwatch db migrate` and on service start.
// One statement per `;`. Every statement must be safe to repeat (IF NOT EXISTS).

// --- Identities -------------------------------------------------------------------------------
CREATE CONSTRAINT subscriber_id IF NOT EXISTS FOR (n:Subscriber) REQUIRE n.id IS UNIQUE;

// Identifier nodes: `id` is the normalised value, or its keyed hash when PII hashing is on.
CREATE CONSTRAINT device_id IF NOT EXISTS FOR (n:Device) REQUIRE n.id IS UNIQUE;
CREATE CONSTRAINT address_id IF NOT EXISTS FOR (n:Address) REQUIRE n.id IS UNIQUE;
CREATE CONSTRAINT payment_method_id IF NOT EXISTS FOR (n:PaymentMethod) REQUIRE n.id IS UNIQUE;
CREATE CONSTRAINT phone_id IF NOT EXISTS FOR (n:Phone) REQUIRE n.id IS UNIQUE;
CREATE CONSTRAINT email_id IF NOT EXISTS FOR (n:Email) REQUIRE n.id IS UNIQUE;
CREATE CONSTRAINT ip_id IF NOT EXISTS FOR (n:IP) REQUIRE n.id IS UNIQUE;

// --- Activity ---------------------------------------------------------------------------------
CREATE CONSTRAINT transaction_id IF NOT EXISTS FOR (n:Transaction) REQUIRE n.id IS UNIQUE;
// Counterparties that are not subscribers: merchants and outside phone numbers.
CREATE CONSTRAINT merchant_id IF NOT EXISTS FOR (n:Merchant) REQUIRE n.id IS UNIQUE;
// Hour and day usage buckets behind the usage/velocity windows.
CREATE CONSTRAINT usage_bucket_id IF NOT EXISTS FOR (n:UsageBucket) REQUIRE n.id IS UNIQUE;
// One node per identity event ever stored: what makes redelivery change nothing.
CREATE CONSTRAINT ingested_event_id IF NOT EXISTS FOR (n:IngestedEvent) REQUIRE n.id IS UNIQUE;

// --- Findings ---------------------------------------------------------------------------------
CREATE CONSTRAINT ring_id IF NOT EXISTS FOR (n:Ring) REQUIRE n.id IS UNIQUE;
CREATE CONSTRAINT ring_event_id IF NOT EXISTS FOR (n:RingEvent) REQUIRE n.id IS UNIQUE;
CREATE CONSTRAINT alert_id IF NOT EXISTS FOR (n:Alert) REQUIRE n.id IS UNIQUE;
CREATE CONSTRAINT label_id IF NOT EXISTS FOR (n:Label) REQUIRE n.id IS UNIQUE;
// A sample of each scoring run's risk scores, for drift monitoring.
CREATE CONSTRAINT score_snapshot_id IF NOT EXISTS FOR (n:ScoreSnapshot) REQUIRE n.id IS UNIQUE;
// Counters behind readable ids (ring R-12).
CREATE CONSTRAINT sequence_id IF NOT EXISTS FOR (n:Sequence) REQUIRE n.id IS UNIQUE;

// --- Operations -------------------------------------------------------------------------------
CREATE CONSTRAINT api_key_id IF NOT EXISTS FOR (n:ApiKey) REQUIRE n.id IS UNIQUE;

// --- Lookups the API and the analytics make -----------------------------------------------------
CREATE INDEX subscriber_status IF NOT EXISTS FOR (n:Subscriber) ON (n.status);
CREATE INDEX subscriber_risk IF NOT EXISTS FOR (n:Subscriber) ON (n.risk);
CREATE INDEX subscriber_created_at IF NOT EXISTS FOR (n:Subscriber) ON (n.created_at);
// The analytics read the subscribers labelled fraud on every run (closeness to fraud).
CREATE INDEX subscriber_label IF NOT EXISTS FOR (n:Subscriber) ON (n.label);
CREATE INDEX device_hub IF NOT EXISTS FOR (n:Device) ON (n.hub);
CREATE INDEX address_hub IF NOT EXISTS FOR (n:Address) ON (n.hub);
CREATE INDEX payment_method_hub IF NOT EXISTS FOR (n:PaymentMethod) ON (n.hub);
CREATE INDEX phone_hub IF NOT EXISTS FOR (n:Phone) ON (n.hub);
CREATE INDEX email_hub IF NOT EXISTS FOR (n:Email) ON (n.hub);
CREATE INDEX ip_hub IF NOT EXISTS FOR (n:IP) ON (n.hub);
CREATE INDEX transaction_ts IF NOT EXISTS FOR (n:Transaction) ON (n.ts);
// The 1 h and 24 h usage windows read a subscriber's recent transactions.
CREATE INDEX transaction_subscriber_ts IF NOT EXISTS FOR (n:Transaction) ON (n.subscriber_id, n.ts);
CREATE INDEX usage_bucket_window IF NOT EXISTS FOR (n:UsageBucket) ON (n.subscriber_id, n.grain, n.start);
CREATE INDEX ring_risk IF NOT EXISTS FOR (n:Ring) ON (n.risk);
CREATE INDEX ring_status IF NOT EXISTS FOR (n:Ring) ON (n.status);
CREATE INDEX alert_status_created IF NOT EXISTS FOR (n:Alert) ON (n.status, n.created_at);
CREATE INDEX alert_priority IF NOT EXISTS FOR (n:Alert) ON (n.priority);
CREATE INDEX alert_dedup_key IF NOT EXISTS FOR (n:Alert) ON (n.dedup_key);
// What was alerted for one subscriber or ring (deduplication before raising).
CREATE INDEX alert_entity IF NOT EXISTS FOR (n:Alert) ON (n.entity_id);
// Outboxes: pending Kafka publications, and webhook deliveries that are due.
CREATE INDEX alert_published IF NOT EXISTS FOR (n:Alert) ON (n.published);
CREATE INDEX alert_delivery_due IF NOT EXISTS FOR (n:Alert) ON (n.delivery, n.delivery_next_at);
CREATE INDEX ring_event_published IF NOT EXISTS FOR (n:RingEvent) ON (n.published);
CREATE INDEX api_key_prefix IF NOT EXISTS FOR (n:ApiKey) ON (n.prefix);
