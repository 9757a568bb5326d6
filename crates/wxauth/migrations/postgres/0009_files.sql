-- Files (issue 29): what each uploaded file is; its bytes live in the file
-- store (a folder or an object store) under the file's id. A row exists
-- only once every byte is stored, so a half-done upload is never visible.
CREATE TABLE files (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id),
    appid        TEXT NOT NULL,
    purpose      TEXT NOT NULL,
    public       BIGINT NOT NULL,
    content_type TEXT NOT NULL,
    size         BIGINT NOT NULL,
    sha256       TEXT NOT NULL,
    filename     TEXT NOT NULL,
    status       TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX files_by_owner ON files (user_id, created_at, id);
-- Bytes each user keeps in files, so the per-user quota is one
-- conditional upsert in the same commit as the file's row.
CREATE TABLE file_usage (
    user_id TEXT PRIMARY KEY REFERENCES users (id),
    bytes   BIGINT NOT NULL
);
