-- Users, keyed by (appid, openid); session_key and phone encrypted at rest.
CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    appid           TEXT NOT NULL,
    openid          TEXT NOT NULL,
    unionid         TEXT,
    session_key_enc BYTEA NOT NULL,
    phone_enc       BYTEA,
    profile         TEXT NOT NULL DEFAULT '{}',
    profile_version BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    last_login_at   BIGINT NOT NULL,
    UNIQUE (appid, openid)
);

-- One row per login; access tokens carry its id, refresh tokens belong to it.
CREATE TABLE sessions (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users (id),
    appid          TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    revoked_at     BIGINT,
    revoked_reason TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_revoked ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;

-- Refresh tokens, stored only as SHA-256 hashes. A used one stays (used_at
-- set) so presenting it again is recognised as reuse.
CREATE TABLE refresh_tokens (
    hash       BYTEA PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);
