-- Hardening, second round (issue 27).
-- Every revocation in the order the database numbered it: instances
-- re-read it by sequence number, not by time, so an instance whose clock
-- runs behind (or ahead) cannot hide a revocation from the others when
-- its broadcast is lost. Triggers fill it from every place a session ends.
-- (Numbers are taken at insert and may commit out of order: readers wait
-- a while for a gap to fill; see auth::revocation_sync.)
CREATE TABLE revocation_log (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id TEXT NOT NULL,
    revoked_at BIGINT NOT NULL
);
CREATE INDEX revocation_log_revoked_at ON revocation_log (revoked_at);

CREATE FUNCTION wxauth_log_revocation() RETURNS trigger AS $$
BEGIN
    IF TG_TABLE_NAME = 'sessions' THEN
        INSERT INTO revocation_log (session_id, revoked_at) VALUES (NEW.id, NEW.revoked_at);
    ELSE
        INSERT INTO revocation_log (session_id, revoked_at) VALUES (NEW.session_id, NEW.revoked_at);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER sessions_revoked_into_log AFTER UPDATE OF revoked_at ON sessions
FOR EACH ROW WHEN (NEW.revoked_at IS NOT NULL AND OLD.revoked_at IS NULL)
EXECUTE FUNCTION wxauth_log_revocation();

CREATE TRIGGER tombstones_into_log AFTER INSERT OR UPDATE OF revoked_at ON session_tombstones
FOR EACH ROW EXECUTE FUNCTION wxauth_log_revocation();
