-- The id of the document an idempotency key created, so a replay can name
-- it (Location) without parsing the stored answer again. NULL on keys
-- stored before this migration.
ALTER TABLE idempotency_keys ADD COLUMN document_id TEXT;
