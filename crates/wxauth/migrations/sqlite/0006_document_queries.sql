-- Queries (issue 12). Each document records its owner's app, so a shared
-- collection (every user of one app reads it) is one indexed range, and
-- the default order is by creation time with the id breaking ties.
ALTER TABLE documents ADD COLUMN appid TEXT;
UPDATE documents SET appid = (SELECT users.appid FROM users WHERE users.id = documents.user_id);
DROP INDEX documents_owner;
CREATE INDEX documents_owner ON documents (user_id, collection, created_at, id);
