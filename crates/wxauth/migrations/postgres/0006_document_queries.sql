-- Queries (issue 12). Each document records its owner's app, so a shared
-- collection (every user of one app reads it) is one indexed range, and
-- the default order is by creation time with the id breaking ties.
ALTER TABLE documents ADD COLUMN appid TEXT;
UPDATE documents SET appid = (SELECT users.appid FROM users WHERE users.id = documents.user_id);
DROP INDEX documents_owner;
CREATE INDEX documents_owner ON documents (user_id, collection, created_at, id);
-- The document as jsonb, kept by PostgreSQL beside the text it came as
-- (which is what the API returns, byte for byte): queries read paths from
-- it without parsing the text again for every row and every expression.
-- jsonb cannot hold U+0000: its escape becomes U+FFFD here (always valid
-- JSON, whatever precedes it), so such a string compares as if it held
-- U+FFFD in PostgreSQL queries. The document itself is kept as sent.
ALTER TABLE documents ADD COLUMN data_json jsonb
    GENERATED ALWAYS AS (replace(data, '\u0000', '\ufffd')::jsonb) STORED;
