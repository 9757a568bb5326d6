-- What each user stores in all: collections holding a document, and bytes
-- of document JSON, so a per-user quota is one conditional UPDATE.
ALTER TABLE documents ADD COLUMN size BIGINT NOT NULL DEFAULT 0;
UPDATE documents SET size = octet_length(data);
CREATE TABLE user_usage (
    user_id     TEXT PRIMARY KEY REFERENCES users (id),
    collections BIGINT NOT NULL,
    bytes       BIGINT NOT NULL
);
INSERT INTO user_usage (user_id, collections, bytes)
    SELECT user_id, COUNT(DISTINCT collection), SUM(size) FROM documents GROUP BY user_id;
