-- Fills a migrated wxauth SQLite database for bench/run.sh ONLY=query:
-- @USERS@ users of the bench app (openid o-fill-N, so the code fill-N logs
-- in as user N); @SHARED@ documents in the shared collection "posts"
-- (status s0..s49, score 0..996, spread over the users); and @TODOS@
-- documents in user 1's private collection "todos" (done 1 in 2,
-- priority 0..4).
PRAGMA journal_mode = WAL;
PRAGMA synchronous = OFF;
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < @USERS@)
INSERT INTO users (id, appid, openid, session_key_enc, profile, created_at, last_login_at)
SELECT printf('00000000-0000-7000-8000-%012d', i), 'wx1111111111111111',
       printf('o-fill-%d', i), randomblob(40), '{}', 0, 0 FROM n;
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < @SHARED@ - 1)
INSERT INTO documents (id, user_id, collection, data, version, created_at, updated_at, size, appid)
SELECT printf('00000000-0000-7000-a000-%012d', i), printf('00000000-0000-7000-8000-%012d', i % @USERS@ + 1),
       'posts', '{"status":"s' || (i % 50) || '","score":' || (i % 997) || ',"title":"post ' || i || '"}',
       1, i, i, 48, 'wx1111111111111111' FROM n;
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < @TODOS@ - 1)
INSERT INTO documents (id, user_id, collection, data, version, created_at, updated_at, size, appid)
SELECT printf('00000000-0000-7000-b000-%012d', i), '00000000-0000-7000-8000-000000000001',
       'todos', '{"title":"todo ' || i || '","done":' || (CASE WHEN i % 2 = 0 THEN 'true' ELSE 'false' END) || ',"priority":' || (i % 5) || '}',
       1, i, i, 48, 'wx1111111111111111' FROM n;
INSERT INTO collection_counts (user_id, collection, documents)
VALUES ('00000000-0000-7000-8000-000000000001', 'todos', @TODOS@);
COMMIT;
ANALYZE;
