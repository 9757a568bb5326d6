-- Each user's own documents, per collection. Ids are UUIDv7 (time-ordered),
-- so "newest first" is id order and pagination is keyset on the id.
CREATE TABLE documents (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id),
    collection TEXT NOT NULL,
    data       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX documents_owner ON documents (user_id, collection, id);

-- Documents per (user, collection), so the limit is checked and kept with
-- one conditional UPDATE instead of a COUNT.
CREATE TABLE collection_counts (
    user_id    TEXT NOT NULL REFERENCES users (id),
    collection TEXT NOT NULL,
    documents  INTEGER NOT NULL,
    PRIMARY KEY (user_id, collection)
);

-- Idempotency keys of creates: the first answer, replayed for a retry.
CREATE TABLE idempotency_keys (
    user_id      TEXT NOT NULL REFERENCES users (id),
    idem_key     TEXT NOT NULL,
    request_hash BLOB NOT NULL,
    response     TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (user_id, idem_key)
);
CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);
