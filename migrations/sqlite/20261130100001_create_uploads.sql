-- The standalone schema (`kiln serve`): the same tables and columns as the Postgres migrations
-- in ../postgres, after all of them, in SQLite's types. Ids are UUIDs as 16-byte BLOBs (sqlx's
-- encoding; UUIDv7 bytes sort by time), timestamps are RFC 3339 TEXT in UTC (sqlx's encoding of
-- `DateTime<Utc>`, which sorts as text), metadata is JSON TEXT.
CREATE TABLE uploads (
    id               BLOB    PRIMARY KEY,
    owner            TEXT    NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('pending', 'uploaded', 'processing', 'ready', 'failed', 'expired')),
    filename         TEXT    NOT NULL,
    content_type     TEXT    NOT NULL,
    byte_size        INTEGER NOT NULL CHECK (byte_size > 0),
    method           TEXT    NOT NULL CHECK (method IN ('put', 'post')),
    temp_key         TEXT    NOT NULL UNIQUE,
    final_key        TEXT,
    sha256           TEXT,
    metadata         TEXT,
    error_code       TEXT,
    error_message    TEXT,
    error_detail     TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    replays          INTEGER NOT NULL DEFAULT 0,
    job_generation   INTEGER NOT NULL DEFAULT 0,
    expires_at       TEXT    NOT NULL,
    created_at       TEXT    NOT NULL,
    updated_at       TEXT    NOT NULL,
    completed_at     TEXT,
    ready_at         TEXT
);

CREATE INDEX uploads_owner_created_idx ON uploads (owner, created_at DESC, id DESC);
CREATE INDEX uploads_state_idx ON uploads (state, updated_at);
CREATE INDEX uploads_failed_idx ON uploads (updated_at DESC) WHERE state = 'failed';
CREATE INDEX uploads_ready_id_idx ON uploads (id) WHERE state = 'ready';

CREATE TABLE derivatives (
    upload_id        BLOB    NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
    rendition        TEXT    NOT NULL,
    object_key       TEXT    NOT NULL,
    format           TEXT    NOT NULL,
    width            INTEGER NOT NULL,
    height           INTEGER NOT NULL,
    byte_size        INTEGER NOT NULL,
    recipe_version   INTEGER NOT NULL,
    recipe_hash      TEXT,
    created_at       TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (upload_id, rendition)
);
