-- event-ingest PostgreSQL schema. Replace event_ingest with the schema you configure
-- (storage.schema). event-ingest runs exactly these statements on start unless createSchema is
-- false; with createSchema: false, an owner role runs this file once and the app role needs only
-- USAGE on the schema and SELECT, INSERT, UPDATE, DELETE on its tables.
CREATE SCHEMA IF NOT EXISTS event_ingest;

-- One row per stored event, for SQL. The primary key is the dedupe: a batch inserts its events
-- with ON CONFLICT (id_key) in the transaction that writes its record and outbox entry, and takes
-- a row over only once its dedupe_until has passed (the dedupe window). id_key is the id encoded
-- exactly (hex of its UTF-8, or a SHA-256 past 100 bytes): ids that text would merge stay apart.
CREATE TABLE IF NOT EXISTS event_ingest.events (
  id_key text COLLATE "C" PRIMARY KEY,
  id text NOT NULL,
  name text NOT NULL,
  source text NOT NULL,
  occurred_at timestamptz NOT NULL,
  received_at timestamptz NOT NULL,
  company_id text,
  subject_id text,
  payload jsonb NOT NULL,
  batch_key text NOT NULL,
  dedupe_until timestamptz NOT NULL
);
-- Listing newest first, by name or alone; retention by batch.
CREATE INDEX IF NOT EXISTS events_id_idx ON event_ingest.events (id);
CREATE INDEX IF NOT EXISTS events_received_at_idx ON event_ingest.events (received_at DESC);
CREATE INDEX IF NOT EXISTS events_name_received_at_idx ON event_ingest.events (name, received_at DESC);
CREATE INDEX IF NOT EXISTS events_batch_key_idx ON event_ingest.events (batch_key);

-- Everything else the log keeps (batch records, outbox entries, the hour index, stats buckets,
-- leases, dead letters), by key. C collation so that key prefixes are index range scans.
CREATE TABLE IF NOT EXISTS event_ingest.kv (
  key text COLLATE "C" PRIMARY KEY,
  value text NOT NULL
);
