-- Imports from other platforms (issue 30): which user each of their user
-- ids became, so rows pointing at a user resolve in any file order and
-- across runs (an import killed half-way finishes when run again).
-- Emptied with the user's other rows when the account is deleted.
CREATE TABLE import_user_map (
    platform  TEXT NOT NULL,
    appid     TEXT NOT NULL,
    legacy_id TEXT NOT NULL,
    user_id   TEXT NOT NULL REFERENCES users (id),
    PRIMARY KEY (platform, appid, legacy_id)
);
CREATE INDEX import_user_map_user ON import_user_map (user_id);
