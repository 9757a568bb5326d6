-- The change log without secondary indexes (issue 31): each index cost
-- every write another page to change; trimming walks each collection's
-- positions, and a deleted account's past changes are scrubbed in the
-- background from change_scrubs.
DROP INDEX changes_user;
DROP INDEX changes_committed;
-- Deleted accounts whose past changes (their documents' data) are still
-- to be scrubbed from the log; a row goes once its scrub is done.
CREATE TABLE change_scrubs (
    user_id      TEXT PRIMARY KEY,
    requested_at BIGINT NOT NULL
);
