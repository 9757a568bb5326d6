-- Each user's own documents, per collection. Ids are UUIDv7 (time-ordered),
-- so "newest first" is id order and pagination is keyset on the id.
CREATE TABLE documents (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id),
    collection TEXT NOT NULL,
    data       TEXT NOT NULL,
    version    BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX documents_owner ON documents (user_id, collection, id);

-- Documents per (user, collection), so the limit is checked and kept with
-- one conditional UPDATE instead of a COUNT.
CREATE TABLE collection_counts (
    user_id    TEXT NOT NULL REFERENCES users (id),
    collection TEXT NOT NULL,
    documents  BIGINT NOT NULL,
    PRIMARY KEY (user_id, collection)
);

-- Idempotency keys of creates: the first answer, replayed for a retry.
CREATE TABLE idempotency_keys (
    user_id      TEXT NOT NULL REFERENCES users (id),
    idem_key     TEXT NOT NULL,
    request_hash BYTEA NOT NULL,
    response     TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (user_id, idem_key)
);
CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);
