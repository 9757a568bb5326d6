-- A replay is now rebuilt from the document id and time the key keeps
-- (with the request's data, which the request hash proves the same);
-- the rendered answer in `response` is no longer read. Keys from before
-- the document_id column cannot be rebuilt: they are dropped (keys only
-- live a day).
DELETE FROM idempotency_keys WHERE document_id IS NULL;
