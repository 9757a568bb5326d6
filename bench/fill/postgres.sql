-- Fills a migrated wxauth PostgreSQL schema with @USERS@ users of the bench
-- app, each with one session, one refresh token and @DOCS@ documents in
-- the collection "bench" (bench/run.sh ONLY=million). Rows are shaped as
-- wxauth writes them; sealed fields are random bytes (never opened here).
SET synchronous_commit = off;
BEGIN;
INSERT INTO users (id, appid, openid, session_key_enc, profile, created_at, last_login_at)
SELECT '00000000-0000-7000-8000-' || lpad(i::text, 12, '0'), 'wx1111111111111111',
       'o-fill-' || i, decode(md5(i::text) || md5((-i)::text), 'hex'), '{}', 0, 0
FROM generate_series(1, @USERS@) AS i;
INSERT INTO sessions (id, user_id, appid, created_at)
SELECT '00000000-0000-7000-9000-' || lpad(i::text, 12, '0'), '00000000-0000-7000-8000-' || lpad(i::text, 12, '0'),
       'wx1111111111111111', 0
FROM generate_series(1, @USERS@) AS i;
INSERT INTO refresh_tokens (hash, session_id, created_at, expires_at)
SELECT sha256(('fill-' || i)::bytea), '00000000-0000-7000-9000-' || lpad(i::text, 12, '0'), 0, 0
FROM generate_series(1, @USERS@) AS i;
INSERT INTO documents (id, user_id, collection, data, version, created_at, updated_at, size, appid)
SELECT '00000000-0000-7000-a000-' || lpad(i::text, 12, '0'),
       '00000000-0000-7000-8000-' || lpad((i / @DOCS@ + 1)::text, 12, '0'),
       'bench', '{"name":"filled","n":' || i || '}', 1, 0, 0, 28, 'wx1111111111111111'
FROM generate_series(0, @USERS@ * @DOCS@ - 1) AS i;
INSERT INTO collection_counts (user_id, collection, documents)
SELECT '00000000-0000-7000-8000-' || lpad(i::text, 12, '0'), 'bench', @DOCS@
FROM generate_series(1, @USERS@) AS i;
INSERT INTO user_usage (user_id, collections, bytes)
SELECT '00000000-0000-7000-8000-' || lpad(i::text, 12, '0'), 1, 28 * @DOCS@
FROM generate_series(1, @USERS@) AS i;
COMMIT;
ANALYZE;
