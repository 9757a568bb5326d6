-- Users, keyed by (appid, openid); session_key and phone encrypted at rest.
CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    appid           TEXT NOT NULL,
    openid          TEXT NOT NULL,
    unionid         TEXT,
    session_key_enc BLOB NOT NULL,
    phone_enc       BLOB,
    profile         TEXT NOT NULL DEFAULT '{}',
    profile_version INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    last_login_at   INTEGER NOT NULL,
    UNIQUE (appid, openid)
);

-- One row per login; access tokens carry its id, refresh tokens belong to it.
CREATE TABLE sessions (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users (id),
    appid          TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    revoked_at     INTEGER,
    revoked_reason TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_revoked ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;

-- Refresh tokens, stored only as SHA-256 hashes. A used one stays (used_at
-- set) so presenting it again is recognised as reuse.
CREATE TABLE refresh_tokens (
    hash       BLOB PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions (id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);
