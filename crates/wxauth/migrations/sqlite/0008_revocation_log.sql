-- Hardening, second round (issue 27).
-- Every revocation in the order the database took it: instances re-read
-- it by sequence number, not by time, so an instance whose clock runs
-- behind (or ahead) cannot hide a revocation from the others when its
-- broadcast is lost. Triggers fill it from every place a session ends.
CREATE TABLE revocation_log (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    revoked_at INTEGER NOT NULL
);
CREATE INDEX revocation_log_revoked_at ON revocation_log (revoked_at);

CREATE TRIGGER sessions_revoked_into_log AFTER UPDATE OF revoked_at ON sessions
WHEN NEW.revoked_at IS NOT NULL AND OLD.revoked_at IS NULL
BEGIN
    INSERT INTO revocation_log (session_id, revoked_at) VALUES (NEW.id, NEW.revoked_at);
END;

CREATE TRIGGER tombstones_into_log AFTER INSERT ON session_tombstones
BEGIN
    INSERT INTO revocation_log (session_id, revoked_at) VALUES (NEW.session_id, NEW.revoked_at);
END;

CREATE TRIGGER tombstones_renewed_into_log AFTER UPDATE OF revoked_at ON session_tombstones
BEGIN
    INSERT INTO revocation_log (session_id, revoked_at) VALUES (NEW.session_id, NEW.revoked_at);
END;
