-- The PostgreSQL twin of query-sqlite.sql (bench/run.sh ONLY=query).
BEGIN;
INSERT INTO users (id, appid, openid, session_key_enc, profile, created_at, last_login_at)
SELECT '00000000-0000-7000-8000-' || lpad(i::text, 12, '0'), 'wx1111111111111111',
       'o-fill-' || i, gen_random_uuid()::text::bytea, '{}', 0, 0
FROM generate_series(1, @USERS@) AS i;
INSERT INTO documents (id, user_id, collection, data, version, created_at, updated_at, size, appid)
SELECT '00000000-0000-7000-a000-' || lpad(i::text, 12, '0'),
       '00000000-0000-7000-8000-' || lpad((i % @USERS@ + 1)::text, 12, '0'),
       'posts', '{"status":"s' || (i % 50) || '","score":' || (i % 997) || ',"title":"post ' || i || '"}',
       1, i, i, 48, 'wx1111111111111111'
FROM generate_series(0, @SHARED@ - 1) AS i;
INSERT INTO documents (id, user_id, collection, data, version, created_at, updated_at, size, appid)
SELECT '00000000-0000-7000-b000-' || lpad(i::text, 12, '0'), '00000000-0000-7000-8000-000000000001',
       'todos', '{"title":"todo ' || i || '","done":' || (CASE WHEN i % 2 = 0 THEN 'true' ELSE 'false' END) || ',"priority":' || (i % 5) || '}',
       1, i, i, 48, 'wx1111111111111111'
FROM generate_series(0, @TODOS@ - 1) AS i;
INSERT INTO collection_counts (user_id, collection, documents)
VALUES ('00000000-0000-7000-8000-000000000001', 'todos', @TODOS@);
COMMIT;
ANALYZE;
