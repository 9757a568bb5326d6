-- Fills a migrated wxauth SQLite database with @USERS@ users of the bench
-- app, each with one session, one refresh token and @DOCS@ documents in
-- the collection "bench" (bench/run.sh ONLY=million). Rows are shaped as
-- wxauth writes them; sealed fields are random bytes (never opened here).
PRAGMA journal_mode = WAL;
PRAGMA synchronous = OFF;
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < @USERS@)
INSERT INTO users (id, appid, openid, session_key_enc, profile, created_at, last_login_at)
SELECT printf('00000000-0000-7000-8000-%012d', i), 'wx1111111111111111',
       printf('o-fill-%d', i), randomblob(40), '{}', 0, 0 FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < @USERS@)
INSERT INTO sessions (id, user_id, appid, created_at)
SELECT printf('00000000-0000-7000-9000-%012d', i), printf('00000000-0000-7000-8000-%012d', i),
       'wx1111111111111111', 0 FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < @USERS@)
INSERT INTO refresh_tokens (hash, session_id, created_at, expires_at)
SELECT randomblob(32), printf('00000000-0000-7000-9000-%012d', i), 0, 0 FROM n;
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < @USERS@ * @DOCS@ - 1)
INSERT INTO documents (id, user_id, collection, data, version, created_at, updated_at, size, appid)
SELECT printf('00000000-0000-7000-a000-%012d', i), printf('00000000-0000-7000-8000-%012d', i / @DOCS@ + 1),
       'bench', '{"name":"filled","n":' || i || '}', 1, 0, 0, 28, 'wx1111111111111111' FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < @USERS@)
INSERT INTO collection_counts (user_id, collection, documents)
SELECT printf('00000000-0000-7000-8000-%012d', i), 'bench', @DOCS@ FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < @USERS@)
INSERT INTO user_usage (user_id, collections, bytes)
SELECT printf('00000000-0000-7000-8000-%012d', i), 1, 28 * @DOCS@ FROM n;
COMMIT;
ANALYZE;
