-- The change log without secondary indexes (issue 31): an index on
-- user_id took a random page of its b-tree per write, and cost creates a
-- fifth of their throughput. The table is now clustered on its key
-- (WITHOUT ROWID: one b-tree, rows of a collection appended in order);
-- trimming walks each collection's positions, and a deleted account's
-- past changes are scrubbed in the background from change_scrubs.
CREATE TABLE changes_clustered (
    appid        TEXT NOT NULL,
    collection   TEXT NOT NULL,
    position     BIGINT NOT NULL,
    doc_id       TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    op           TEXT NOT NULL,
    data         TEXT,
    fields       TEXT,
    version      BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    committed_at BIGINT NOT NULL,
    PRIMARY KEY (appid, collection, position)
) WITHOUT ROWID;
INSERT INTO changes_clustered SELECT appid, collection, position, doc_id, user_id, op, data,
    fields, version, created_at, updated_at, committed_at FROM changes;
DROP TABLE changes;
ALTER TABLE changes_clustered RENAME TO changes;
-- Deleted accounts whose past changes (their documents' data) are still
-- to be scrubbed from the log; a row goes once its scrub is done.
CREATE TABLE change_scrubs (
    user_id      TEXT PRIMARY KEY,
    requested_at BIGINT NOT NULL
);
