-- Realtime (issue 31): every committed document write, numbered in commit
-- order per collection of an app, so watches on any instance see each
-- change once and in order, and a watcher that reconnects resumes after
-- the last position it saw. A batch takes its collections' next positions
-- (change_positions, locked in key order) just before it commits, so a
-- position is visible only once every smaller one is: no gap to wait on.
CREATE TABLE change_positions (
    appid      TEXT NOT NULL,
    collection TEXT NOT NULL,
    position   BIGINT NOT NULL,
    PRIMARY KEY (appid, collection)
);
-- op: create, replace or delete. data: the document after the write
-- (NULL for a delete); fields: for a replace, the top-level fields set
-- and removed ({"updated": [...], "removed": [...]}). Trimmed by age
-- (realtime.history_secs); emptied with the user's other rows when their
-- account is deleted.
CREATE TABLE changes (
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
);
CREATE INDEX changes_committed ON changes (committed_at);
CREATE INDEX changes_user ON changes (user_id);
