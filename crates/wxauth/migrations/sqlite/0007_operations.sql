-- Operations (issue 13).
-- Who did what, when, to whom: every admin call, CLI command and account
-- deletion. Never a secret, never personal data beyond ids.
CREATE TABLE audit_log (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     INTEGER NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    status INTEGER NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_target ON audit_log (target, id);

-- Sessions of deleted users: their rows are gone, but an access token of
-- theirs must stay refused until it expires, on every instance and after
-- restarts. Only the (random) session id is kept, never the user's.
CREATE TABLE session_tombstones (
    session_id TEXT PRIMARY KEY,
    revoked_at INTEGER NOT NULL
);
CREATE INDEX session_tombstones_at ON session_tombstones (revoked_at);

-- A keyed hash of the bound phone number (see auth::seal), so an operator
-- can find a user by phone without decrypting every row.
ALTER TABLE users ADD COLUMN phone_lookup BLOB;
CREATE INDEX users_phone_lookup ON users (appid, phone_lookup) WHERE phone_lookup IS NOT NULL;
CREATE INDEX users_unionid ON users (unionid) WHERE unionid IS NOT NULL;
